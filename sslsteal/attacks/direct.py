"""`direct` (Algorithm 1): the stolen encoder's representation is matched to the victim's answers."""

from __future__ import annotations

from torch import nn

from sslsteal.attacks.base import AttackContext, StolenModel
from sslsteal.attacks.matching import match_answers, new_encoder, pay
from sslsteal.core.seeding import seeded
from sslsteal.specs.attack import METHODS


@METHODS.implements("direct")
def direct(ctx: AttackContext) -> StolenModel:
    """Match representations; a copy of another width gets a linear adapter into the victim's space."""
    paid = pay(ctx)
    encoder = new_encoder(ctx)
    dim = paid.answers.shape[1]
    adapter = None
    if encoder.dim != dim:
        with seeded(ctx.spec.seed, "attacker.head_init"):
            adapter = nn.Linear(encoder.dim, dim).to(ctx.device)
    return match_answers(ctx, paid, encoder, head=adapter, frozen_head=False, dim=dim)
