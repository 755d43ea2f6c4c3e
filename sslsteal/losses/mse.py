"""Mean squared error between stolen and victim representations: the plain quadratic loss."""

from __future__ import annotations

from torch import Tensor

from sslsteal.specs.losses import LOSSES

from .checks import check_pair


@LOSSES.implements("mse")
def mse(stolen: Tensor, victim: Tensor) -> Tensor:
    """mean_{i,d} (stolen_id - victim_id)^2; the victim side is a constant."""
    check_pair(stolen, victim)
    return (stolen - victim.detach()).pow(2).mean()
