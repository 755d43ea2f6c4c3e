"""Soft nearest neighbour loss (Frosst et al. 2019) over stolen and victim rows together, where
each point's only positive is its partner from the other encoder (same image)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .registry import boolean, check_pair, positive, register_loss


@register_loss(
    "softnn",
    kind="contrastive",
    description="soft nearest neighbour loss on the 2N stolen+victim points, partner = positive",
    checks={"temperature": positive, "normalize": boolean},
)
def softnn(stolen: Tensor, victim: Tensor, *, temperature: float = 0.2, normalize: bool = True) -> Tensor:
    """-mean_i log softmax_{k != i}(-||x_i - x_k||^2 / T)[partner(i)] over x = concat(stolen, victim)."""
    check_pair(stolen, victim)
    x = torch.cat([stolen, victim.detach()])
    if normalize:
        x = F.normalize(x, dim=1)
    sq_norm = x.pow(2).sum(1)
    sq_dist = (sq_norm[:, None] + sq_norm[None, :] - 2 * x @ x.T).clamp_min(0)
    logits = (-sq_dist / temperature).fill_diagonal_(float("-inf"))
    n = len(stolen)
    partner = torch.arange(2 * n, device=x.device).roll(n)
    return F.cross_entropy(logits, partner)
