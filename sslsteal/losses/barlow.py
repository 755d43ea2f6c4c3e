"""Barlow Twins loss (Zbontar et al. 2021): the cross-correlation of the standardised stolen and
victim batches should be the identity (paired dims agree, other dims decorrelated)."""

from __future__ import annotations

import torch
from torch import Tensor

from sslsteal.specs.losses import LOSSES

from .checks import check_pair

EPS = 1e-5  # added to each dim's variance so constant dims standardise to zero instead of NaN


def _standardise(x: Tensor) -> Tensor:
    return (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + EPS)


@LOSSES.implements("barlow")
def barlow(stolen: Tensor, victim: Tensor, *, lambd: float = 5e-3) -> Tensor:
    """sum_i (1 - C_ii)^2 + lambd * sum_{i != j} C_ij^2 with C = S^T V / N over standardised S, V."""
    check_pair(stolen, victim)
    c = _standardise(stolen).T @ _standardise(victim.detach()) / len(stolen)
    on_diag = torch.diagonal(c)
    off_diag_sq = c.pow(2).sum() - on_diag.pow(2).sum()
    return (1 - on_diag).pow(2).sum() + lambd * off_diag_sq
