"""`direct` (Algorithm 1): the stolen encoder's representation is matched to the victim's answers."""

from __future__ import annotations

from sslsteal.attacks.base import AttackContext, StolenModel
from sslsteal.attacks.matching import match_answers, new_encoder, pay, width_adapter
from sslsteal.specs.methods import METHODS


@METHODS.implements("direct")
def direct(ctx: AttackContext) -> StolenModel:
    """Match representations; a copy of another width gets a linear adapter into the victim's space."""
    paid = pay(ctx)
    encoder = new_encoder(ctx)
    dim = paid.answers.shape[1]
    return match_answers(ctx, paid, encoder, head=width_adapter(ctx, encoder, dim), frozen_head=False, dim=dim)
