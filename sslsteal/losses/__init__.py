"""Stealing losses: compare the stolen encoder's outputs with the victim's on the same images.

Declared, with their hyperparameters, in `sslsteal.specs.losses`; one file per loss here. `make_loss(name, dim,
**hparams)` returns a callable `loss(stolen, victim) -> scalar`. When the implementation is an nn.Module
(`is_module(name)`, e.g. simsiam) the caller must add `loss.parameters()` to its optimizer; when
`LOSSES[name].needs_labels` (supcon) the caller passes `labels=` with each call.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from sslsteal.specs.losses import KINDS, LOSSES, loss_params

from . import (  # noqa: F401  (attach the implementations)
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

__all__ = ["KINDS", "LOSSES", "is_module", "make_loss"]


def is_module(name: str) -> bool:
    """Whether loss `name` is an nn.Module with parameters of its own (trained with the stolen encoder)."""
    impl = LOSSES.implementation(name)
    return isinstance(impl, type) and issubclass(impl, nn.Module)


def make_loss(name: str, dim: int, **hparams: Any) -> Callable[..., Tensor]:
    """Build the loss `name` for `dim`-dimensional representations, validating its hyperparameters."""
    params = loss_params(name, hparams).model_dump()
    if isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0:
        raise ValueError(f"loss {name!r}: dim must be a positive integer, got {dim!r}")
    impl = LOSSES.implementation(name)
    return impl(dim, **params) if is_module(name) else functools.partial(impl, **params)
