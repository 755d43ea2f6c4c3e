"""Stealing losses: compare the stolen encoder's outputs with the victim's on the same images.

`make_loss(name, dim, **hparams)` returns a callable `loss(stolen, victim) -> scalar`. When the
entry is an nn.Module (LOSSES[name].is_module, e.g. simsiam) the caller must add
`loss.parameters()` to its optimizer; when LOSSES[name].needs_labels (supcon) the caller passes
`labels=` with each call.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from torch import Tensor

from sslsteal.registry import unknown_name

from . import (  # noqa: F401  (register)
    barlow,
    cosine,
    infonce,
    infonce_cross,
    mse,
    simsiam,
    sliced_wasserstein,
    softnn,
    supcon,
    wasserstein,
)
from .registry import KINDS, LOSSES, LossEntry, positive_int, register_loss

__all__ = ["KINDS", "LOSSES", "LossEntry", "make_loss", "register_loss"]


def make_loss(name: str, dim: int, **hparams: Any) -> Callable[..., Tensor]:
    """Build the loss `name` for `dim`-dimensional representations, validating its hyperparameters."""
    entry = LOSSES.get(name)
    if entry is None:
        raise ValueError(unknown_name("loss", name, LOSSES))
    if not positive_int.ok(dim):
        raise ValueError(f"loss {name!r}: dim must be {positive_int.expected}, got {dim!r}")
    for key, value in hparams.items():
        check = entry.checks.get(key)
        if check is None:
            accepted = ", ".join(entry.hparams) or "(none)"
            raise ValueError(f"loss {name!r} has no hyperparameter {key!r}; accepted: {accepted}")
        if not check.ok(value):
            raise ValueError(f"loss {name!r}: {key} must be {check.expected}, got {value!r}")
    if entry.is_module:
        return entry.fn(dim, **hparams)
    return functools.partial(entry.fn, **hparams)
