"""Squared sliced 2-Wasserstein distance between the batch distributions of stolen and victim outputs.
Unpaired: it ignores which stolen row belongs to which victim row (this was `wasserstein` before it
became the paper's per-pair 1-Wasserstein distance between representations as distributions)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from sslsteal.specs.losses import LOSSES

from .checks import check_pair


@LOSSES.implements("sliced_wasserstein")
def sliced_wasserstein(stolen: Tensor, victim: Tensor, *, num_projections: int = 128, projections: Tensor | None = None) -> Tensor:
    """Mean over K unit directions and sorted batch positions of (sort(s.u) - sort(v.u))^2.

    Directions are drawn per call from torch's global RNG, or taken from `projections` (K, dim),
    whose rows are normalised to unit length (then num_projections is ignored)."""
    check_pair(stolen, victim)
    if projections is None:
        projections = torch.randn(num_projections, stolen.shape[1], device=stolen.device, dtype=stolen.dtype)
    elif projections.ndim != 2 or projections.shape[1] != stolen.shape[1]:
        raise ValueError(f"projections must be (K, {stolen.shape[1]}), got {tuple(projections.shape)}")
    directions = F.normalize(projections.to(stolen), dim=1).T
    s_sorted = (stolen @ directions).sort(dim=0).values
    v_sorted = (victim.detach() @ directions).sort(dim=0).values
    return (s_sorted - v_sorted).pow(2).mean()
