"""Symmetric cross-encoder InfoNCE: each stolen row must pick its own victim row out of the victim rows of
the batch, and each victim row its own stolen row. Negatives come from the other encoder only (this was
`infonce` before it became the paper's NT-Xent over all 2N points)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from sslsteal.specs.losses import LOSSES

from .checks import check_pair


@LOSSES.implements("infonce_cross")
def infonce_cross(stolen: Tensor, victim: Tensor, *, temperature: float = 0.1) -> Tensor:
    """Average of the stolen->victim and victim->stolen cross-entropies of <s_i, v_j> / T."""
    check_pair(stolen, victim)
    s = F.normalize(stolen, dim=1)
    v = F.normalize(victim.detach(), dim=1)
    logits = s @ v.T / temperature
    target = torch.arange(len(s), device=s.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
