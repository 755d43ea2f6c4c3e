"""`stolenencoder` (Liu et al., CCS 2022): the victim answers each image once; the copy's L2-normalised features of
the image and of k local views (flip, colour jitter, grayscale: no crop, so a view keeps the image's content) are
all pulled to that one answer, so the views cost nothing."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sslsteal.attacks.base import AttackContext, StolenModel
from sslsteal.attacks.matching import fit, in_victim_space, new_encoder, pay, width_adapter
from sslsteal.core.seeding import generator
from sslsteal.data.augment import SimCLRAugment, to_float
from sslsteal.specs.methods import METHODS, StolenEncoder

LOCAL_VIEWS = SimCLRAugment(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), hue=0.1)
"""Their code's views: flip 0.5, colour jitter (0.4, 0.4, 0.4, 0.1) with p 0.8, grayscale 0.2, no crop."""


def distance(a: torch.Tensor, b: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-row distance between L2-normalised rows: Euclidean (`l2`), Manhattan (`l1`) or negative cosine."""
    a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    if kind == "l2":
        return (a - b).norm(dim=1)
    if kind == "l1":
        return (a - b).abs().sum(dim=1)
    return -(a * b).sum(dim=1)


def stolenencoder_loss(raw: torch.Tensor, views: list[torch.Tensor], answer: torch.Tensor, *, weight: float, kind: str = "l2") -> torch.Tensor:
    """d(f(x), h(x)) + (weight / k) * sum_j d(f(A_j(x)), h(x)), averaged over the batch (their code sums over it,
    which only rescales the learning rate)."""
    loss = distance(raw, answer, kind)
    if views:
        loss = loss + (weight / len(views)) * torch.stack([distance(v, answer, kind) for v in views]).sum(0)
    return loss.mean()


@METHODS.implements("stolenencoder")
def stolenencoder(ctx: AttackContext) -> StolenModel:
    """One answer per image, k free local views per image and step."""
    options = ctx.spec.options
    assert isinstance(options, StolenEncoder)
    paid = pay(ctx)
    encoder = new_encoder(ctx)
    adapter = width_adapter(ctx, encoder, paid.answers.shape[1])
    answers = paid.answers.to(ctx.device)
    views_gen = generator(ctx.spec.seed, "attacker.augment", ctx.device)

    features = in_victim_space(encoder, adapter)

    def step(idx: torch.Tensor) -> torch.Tensor:
        x = to_float(paid.sent[idx]).to(ctx.device)
        views = [features(LOCAL_VIEWS(x, views_gen)) for _ in range(options.views)]
        return stolenencoder_loss(features(x), views, answers[idx.to(ctx.device)], weight=options.weight, kind=options.distance)

    history = fit(ctx, encoder, [adapter], step, len(paid.sent))
    return StolenModel(encoder, adapter, paid.queries_used, history)
