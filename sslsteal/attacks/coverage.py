"""`coverage` (ours): direct extraction that chooses which images to pay for. The attacker embeds many pool images
with its copy's initial weights (its own computation, no query), picks the ones that cover that feature space best
by greedy k-center (Sener and Savarese, ICLR 2018), and queries only those; training is `direct`'s."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sslsteal.attacks.base import AttackContext, StolenModel
from sslsteal.attacks.matching import match_answers, new_encoder, pay, restrict_to, width_adapter
from sslsteal.core.seeding import generator
from sslsteal.models import encode
from sslsteal.specs.methods import METHODS


def k_center(features: torch.Tensor, k: int, first: int) -> torch.Tensor:
    """Indices of `k` rows chosen greedily: `first`, then each time the row farthest (in cosine distance) from every
    row chosen so far."""
    unit = F.normalize(features.float(), dim=1)
    chosen = [first]
    distance = 1 - unit @ unit[first]
    for _ in range(k - 1):
        nxt = int(distance.argmax())
        chosen.append(nxt)
        distance = torch.minimum(distance, 1 - unit @ unit[nxt])
    return torch.tensor(chosen)


@METHODS.implements("coverage")
def coverage(ctx: AttackContext) -> StolenModel:
    """Choose `images_needed` of the drawn candidates by k-center in the initial encoder's space, pay for them, train as `direct`."""
    encoder = new_encoder(ctx)
    needed = ctx.spec.images_needed
    first = int(torch.randint(len(ctx.images), (1,), generator=generator(ctx.spec.seed, "attacker.coverage")))
    chosen = k_center(encode(encoder, ctx.images, device=ctx.device), needed, first) if needed < len(ctx.images) else torch.arange(len(ctx.images))
    picked = restrict_to(ctx, chosen)
    paid = pay(picked)
    dim = paid.answers.shape[1]
    stolen = match_answers(picked, paid, encoder, head=width_adapter(ctx, encoder, dim), frozen_head=False, dim=dim)
    stolen.source_images = needed
    return stolen
