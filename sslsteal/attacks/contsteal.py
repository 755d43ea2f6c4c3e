"""`contsteal` (Sha et al., CVPR 2023): the victim answers SimCLR views of each image, every view paid; the copy
embeds the same view, and NT-Xent over the 2N victim and copy embeddings treats (victim_i, copy_i) as the positive
pair and every other entry, copy-copy included, as a negative."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sslsteal.attacks.base import AttackContext, StolenModel
from sslsteal.attacks.matching import fit, in_victim_space, new_encoder, pay, width_adapter
from sslsteal.data.augment import SimCLRAugment, to_float
from sslsteal.specs.methods import METHODS, ContSteal

VIEWS = SimCLRAugment()
"""The views the victim answers: SimCLR's augmentation, as their code's data loader applies it."""


def contsteal_loss(victim: torch.Tensor, copy: torch.Tensor, *, temperature: float) -> torch.Tensor:
    """NT-Xent on cosine similarities over the 2N rows [victim; copy]: row i's positive is its counterpart, its
    negatives every other row but itself; the mean over the 2N rows."""
    z = F.normalize(torch.cat([victim, copy]), dim=1)
    n = len(victim)
    logits = (z @ z.T) / temperature
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    positives = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, positives)


@METHODS.implements("contsteal")
def contsteal(ctx: AttackContext) -> StolenModel:
    """`views` paid views per image; the copy trains on exactly the views the victim answered."""
    options = ctx.spec.options
    assert isinstance(options, ContSteal)
    paid = pay(ctx, per=options.views, augment=VIEWS)
    encoder = new_encoder(ctx)
    adapter = width_adapter(ctx, encoder, paid.answers.shape[1])
    answers = paid.answers.to(ctx.device)
    features = in_victim_space(encoder, adapter)

    def step(idx: torch.Tensor) -> torch.Tensor:
        out = features(to_float(paid.sent[idx]).to(ctx.device))
        return contsteal_loss(answers[idx.to(ctx.device)], out, temperature=options.temperature)

    history = fit(ctx, encoder, [adapter], step, len(paid.sent))
    return StolenModel(encoder, adapter, paid.queries_used, history)
