"""`recreate_head` (Algorithm 2): a head is first trained on the victim's outputs of two views of each image
(NT-Xent, as SimCLR trains its head), then frozen; stolen and victim outputs are compared through it."""

from __future__ import annotations

import torch
from torch import nn

from sslsteal.attacks.base import AttackContext, StolenModel
from sslsteal.attacks.matching import Answers, match_answers, new_encoder, pay
from sslsteal.attacks.training import train
from sslsteal.core.seeding import seeded
from sslsteal.models import ProjectionHead
from sslsteal.specs.methods import METHODS


def recreate(ctx: AttackContext, paid: Answers) -> nn.Module:
    """Train a head on the victim's outputs of two views of each image with NT-Xent; returned frozen."""
    from sslsteal.victim.train import nt_xent

    spec, answers = ctx.spec, paid.answers
    with seeded(spec.seed, "attacker.head_init"):
        head = ProjectionHead(answers.shape[1], spec.head_hidden, spec.head_dim).to(ctx.device)
    order = torch.argsort(paid.source, stable=True)
    pairs = answers[order].view(-1, spec.views, answers.shape[1])[:, :2].to(ctx.device)  # (images, 2, dim)

    def step(idx: torch.Tensor) -> torch.Tensor:
        z = head(pairs[idx].flatten(0, 1)).view(len(idx), 2, -1)
        return nt_xent(z[:, 0], z[:, 1], temperature=0.5)

    train(
        params=list(head.parameters()),
        modules=[head],
        step=step,
        items=len(pairs),
        epochs=spec.head_epochs,
        spec=spec,
        role="attacker.head_order",
        desc="recreate head",
        progress=ctx.progress,
    )
    head.eval()
    for p in head.parameters():
        p.requires_grad_(False)
    return head


@METHODS.implements("recreate_head")
def recreate_head(ctx: AttackContext) -> StolenModel:
    """Recreate the victim's head from paired views, then match the copy's outputs to the answers through it."""
    paid = pay(ctx)
    encoder = new_encoder(ctx)
    head = recreate(ctx, paid)
    return match_answers(ctx, paid, encoder, head=head, frozen_head=True, dim=ctx.spec.head_dim)
