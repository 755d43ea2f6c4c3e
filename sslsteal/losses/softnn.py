"""Soft nearest neighbour loss (Frosst, Papernot & Hinton 2019) on squared Euclidean distances between the
2N stolen and victim points, where each point's only positive is its partner (the other encoder's output for
the same image). Distances are measured in units of the victim batch's spread, so the temperature means
the same thing whatever the encoder's dimension and output scale."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from sslsteal.specs.losses import LOSSES

from .checks import check_pair
from .infonce import partners


def victim_spread(victim: Tensor) -> Tensor:
    """Mean squared distance between two victim rows drawn independently from the batch: 2 * sum_d Var(v_d)
    (biased variance), floored at the dtype's eps so a batch without spread (N = 1) still divides."""
    centred = victim - victim.mean(0)
    return (2 * centred.pow(2).sum(1).mean()).clamp_min(torch.finfo(victim.dtype).eps)


@LOSSES.implements("softnn")
def softnn(stolen: Tensor, victim: Tensor, *, temperature: float = 0.1, relative: bool = True) -> Tensor:
    """-mean_i log( exp(-d_ip(i) / t) / sum_{k != i} exp(-d_ik / t) ), d = squared Euclidean distances over
    x = concat(stolen, victim), t = temperature * victim_spread(victim) (relative) or temperature (raw)."""
    check_pair(stolen, victim)
    victim = victim.detach()
    # Distances do not change under a common shift; centring on the victim mean shrinks the norms in the
    # |a|^2 + |b|^2 - 2<a, b> expansion and with them its cancellation error.
    x = torch.cat([stolen, victim]) - victim.mean(0)
    sq_norm = x.pow(2).sum(1)
    sq_dist = (sq_norm[:, None] + sq_norm[None, :] - 2 * x @ x.T).clamp_min(0)
    scale = temperature * victim_spread(victim) if relative else temperature
    self_mask = torch.eye(len(x), dtype=torch.bool, device=x.device)
    logits = (-sq_dist / scale).masked_fill(self_mask, float("-inf"))
    return F.cross_entropy(logits, partners(len(stolen), x.device))  # log-softmax: log-sum-exp, stable
