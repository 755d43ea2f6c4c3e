"""Supervised contrastive loss (Khosla et al. 2020) with stolen rows as anchors and victim rows
plus the other stolen rows as candidates; same label = positive (own victim row always is)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from sslsteal.specs.losses import LOSSES

from .checks import check_pair


@LOSSES.implements("supcon")
def supcon(stolen: Tensor, victim: Tensor, *, labels: Tensor | None = None, temperature: float = 0.1) -> Tensor:
    """mean_i -1/|P(i)| sum_{p in P(i)} log softmax_{a != i}(s_i.c_a / T)[p]; labels=None makes
    every image its own class (one positive per anchor: its victim row)."""
    check_pair(stolen, victim)
    n = len(stolen)
    if labels is None:
        labels = torch.arange(n, device=stolen.device)
    elif labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), got {tuple(labels.shape)}")
    s = F.normalize(stolen, dim=1)
    candidates = torch.cat([F.normalize(victim.detach(), dim=1), s])
    self_mask = torch.zeros(n, 2 * n, dtype=torch.bool, device=s.device)
    self_mask[:, n:].fill_diagonal_(True)
    logits = (s @ candidates.T / temperature).masked_fill(self_mask, float("-inf"))
    log_prob = logits.log_softmax(dim=1).masked_fill(self_mask, 0)
    same = labels[:, None] == labels.repeat(2)[None, :]
    positives = (same & ~self_mask).to(log_prob.dtype)
    return -((positives * log_prob).sum(1) / positives.sum(1)).mean()
