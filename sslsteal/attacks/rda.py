"""`rda` (Wu et al., ECCV 2024): the victim answers P mild views of each image and the mean of those answers,
each L2-normalised, is the image's prototype (N images cost N x P answers); the copy's embeddings of several stronger local views, never
queried, are pulled to their image's prototype by InfoNCE against the other prototypes and the other copies' views,
plus an alignment term."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sslsteal.attacks.base import AttackContext, StolenModel
from sslsteal.attacks.matching import fit, in_victim_space, new_encoder, pay, width_adapter
from sslsteal.core.seeding import generator
from sslsteal.data.augment import SimCLRAugment, to_float
from sslsteal.specs.methods import METHODS, RDA

PROTOTYPE_VIEWS = SimCLRAugment(crop_scale=(0.9, 0.9), crop_ratio=(1.0, 1.0), hue=0.2, blur_p=0.1, solarize_p=0.1)
"""Their code's prototype views for CIFAR-size images: a 90% crop, flip, colour jitter, grayscale, blur, solarise."""
TRAIN_VIEWS = SimCLRAugment(crop_scale=(0.75, 0.75), crop_ratio=(1.0, 1.0), hue=0.2, blur_p=0.1, solarize_p=0.1)
"""Their code's training views: the same with a 75% crop (stronger)."""
PDIST_FLOOR = 1e-8
"""L_align divides by ||s - p||^2, unbounded below as a copy reaches its prototype; their code has no floor."""


def prototypes(answers: torch.Tensor, source: torch.Tensor, images: int) -> torch.Tensor:
    """Each image's prototype: the mean of its views' L2-normalised answers (not normalised again, as their code)."""
    unit = F.normalize(answers, dim=1)
    total = torch.zeros(images, unit.shape[1], dtype=unit.dtype).index_add_(0, source, unit)
    counts = torch.bincount(source, minlength=images).clamp(min=1).unsqueeze(1)
    return total / counts


def rda_loss(copy: torch.Tensor, protos: torch.Tensor, *, temperature: float, contrast_weight: float = 1.0, align_weight: float = 1.0) -> torch.Tensor:
    """contrast_weight * L_contrast + align_weight * L_align for copies s (normalised here) and their prototypes p.

    L_contrast = -log(exp(s_i.p_i / t) / (sum_{j != i} exp(s_i.p_j / t) + sum_{j != i} exp(s_i.s_j / t))): the positive
    is not in the denominator, as in their code. L_align = -log((cos(s_i, p_i) + 1) / ||s_i - p_i||^2)."""
    s = F.normalize(copy, dim=1)
    n = len(s)
    off = ~torch.eye(n, dtype=torch.bool, device=s.device)
    to_protos = (s @ protos.T / temperature)[off].view(n, n - 1)
    to_copies = (s @ s.T / temperature)[off].view(n, n - 1)
    positive = (s * protos).sum(1) / temperature
    contrast = (torch.logsumexp(torch.cat([to_protos, to_copies], dim=1), dim=1) - positive).mean()
    pdist = (s - protos).pow(2).sum(1).clamp(min=PDIST_FLOOR)
    align = (pdist.log() - torch.log(F.cosine_similarity(s, protos, dim=1) + 1)).mean()
    return contrast_weight * contrast + align_weight * align


@METHODS.implements("rda")
def rda(ctx: AttackContext) -> StolenModel:
    """Prototypes from `prototype_views` paid views per image, then `train_views` free views per image and step."""
    options = ctx.spec.options
    assert isinstance(options, RDA)
    paid = pay(ctx, per=options.prototype_views, augment=PROTOTYPE_VIEWS)
    protos = prototypes(paid.answers, paid.source, len(ctx.images)).to(ctx.device)
    encoder = new_encoder(ctx)
    adapter = width_adapter(ctx, encoder, protos.shape[1])
    views_gen = generator(ctx.spec.seed, "attacker.augment", ctx.device)
    features = in_victim_space(encoder, adapter)

    def step(idx: torch.Tensor) -> torch.Tensor:
        x = to_float(ctx.images[idx]).to(ctx.device)
        target = protos[idx.to(ctx.device)]
        losses = []
        for _ in range(options.train_views):
            out = features(TRAIN_VIEWS(x, views_gen))
            losses.append(rda_loss(out, target, temperature=options.temperature, contrast_weight=options.contrast_weight, align_weight=options.align_weight))
        return torch.stack(losses).mean()

    history = fit(ctx, encoder, [adapter], step, len(ctx.images))
    return StolenModel(encoder, adapter, paid.queries_used, history)
