"""`access_head`: the victim answers its projection-head output z; the attacker trains its encoder plus its own
head to match z (paper section 3.2)."""

from __future__ import annotations

from sslsteal.attacks.base import AttackContext, StolenModel
from sslsteal.attacks.matching import match_answers, new_encoder, pay
from sslsteal.core.seeding import seeded
from sslsteal.models import ProjectionHead
from sslsteal.specs.methods import METHODS


@METHODS.implements("access_head")
def access_head(ctx: AttackContext) -> StolenModel:
    """Match the victim's head outputs through a head of the attacker's own, trained with the encoder."""
    paid = pay(ctx)
    encoder = new_encoder(ctx)
    dim = paid.answers.shape[1]
    with seeded(ctx.spec.seed, "attacker.head_init"):
        head = ProjectionHead(encoder.dim, ctx.spec.head_hidden, dim).to(ctx.device)
    return match_answers(ctx, paid, encoder, head=head, frozen_head=False, dim=dim)
