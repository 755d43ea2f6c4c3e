"""Input checks shared by the loss functions."""

from __future__ import annotations

from torch import Tensor


def check_pair(stolen: Tensor, victim: Tensor) -> None:
    """Raise ValueError unless stolen and victim are matching (batch, dim) tensors."""
    if stolen.ndim != 2 or stolen.shape != victim.shape:
        raise ValueError(f"stolen and victim must both be (batch, dim) with the same shape, got {tuple(stolen.shape)} and {tuple(victim.shape)}")
