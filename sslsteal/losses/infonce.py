"""NT-Xent (SimCLR's normalised-temperature cross-entropy) over the 2N stolen and victim points together,
as the paper's code computes InfoNCE for stealing: each point's positive is the other encoder's output for
the same image, and its negatives are the other 2N - 2 points, from both encoders."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from sslsteal.specs.losses import LOSSES

from .checks import check_pair


def partners(n: int, device: torch.device) -> Tensor:
    """Index of each point's partner in concat(stolen, victim): i <-> i + n."""
    return torch.arange(2 * n, device=device).roll(n)


@LOSSES.implements("infonce")
def infonce(stolen: Tensor, victim: Tensor, *, temperature: float = 0.07) -> Tensor:
    """-mean_i log softmax_{k != i}(<x_i, x_k> / T)[partner(i)] over x = L2-normalised concat(stolen, victim)."""
    check_pair(stolen, victim)
    x = F.normalize(torch.cat([stolen, victim.detach()]), dim=1)
    self_mask = torch.eye(len(x), dtype=torch.bool, device=x.device)
    logits = (x @ x.T / temperature).masked_fill(self_mask, float("-inf"))
    return F.cross_entropy(logits, partners(len(stolen), x.device))
