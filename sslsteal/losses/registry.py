"""Registry of stealing losses: the `register_loss` decorator, the entries it records and the
small value checks each loss declares for its hyperparameters."""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

KINDS = ("quadratic", "symmetrized", "contrastive", "supervised-contrastive", "distributional")


@dataclass(frozen=True)
class Check:
    """A hyperparameter check: `ok(value)` is True for acceptable values, `expected` says which."""

    expected: str
    ok: Callable[[Any], bool]


def _is_real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


positive = Check("a positive finite number", lambda v: _is_real(v) and v > 0)
non_negative = Check("a non-negative finite number", lambda v: _is_real(v) and v >= 0)
positive_int = Check("a positive integer", lambda v: isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0)
boolean = Check("a bool", lambda v: isinstance(v, bool))


@dataclass(frozen=True)
class LossEntry:
    """One registered loss: a function `fn(stolen, victim, **hp)` or an nn.Module class `fn(dim, **hp)`."""

    name: str
    fn: Callable[..., Any]
    kind: str
    description: str
    checks: Mapping[str, Check]
    needs_labels: bool = False
    call_args: tuple[str, ...] = ()

    @property
    def is_module(self) -> bool:
        return isinstance(self.fn, type) and issubclass(self.fn, nn.Module)

    @property
    def hparams(self) -> dict[str, Any]:
        """Hyperparameter names and their defaults, in signature order."""
        return {n: p.default for n, p in _keyword_params(self.fn).items() if n in self.checks}


LOSSES: dict[str, LossEntry] = {}


def _keyword_params(fn: Callable[..., Any]) -> dict[str, inspect.Parameter]:
    target = fn.__init__ if isinstance(fn, type) else fn
    params = inspect.signature(target).parameters.values()
    return {p.name: p for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


def register_loss(
    name: str,
    *,
    kind: str,
    description: str,
    checks: Mapping[str, Check] | None = None,
    needs_labels: bool = False,
    call_args: tuple[str, ...] = (),
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Record a loss in LOSSES. Every keyword-only parameter must be a checked hyperparameter or
    a per-call argument (`labels` when needs_labels, or one listed in call_args)."""
    checks = dict(checks or {})
    per_call = tuple(call_args) + (("labels",) if needs_labels else ())

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in LOSSES:
            raise ValueError(f"loss {name!r} is already registered")
        if kind not in KINDS:
            raise ValueError(f"loss {name!r}: kind must be one of {', '.join(KINDS)}, got {kind!r}")
        declared = set(_keyword_params(fn))
        if declared != set(checks) | set(per_call):
            raise TypeError(
                f"loss {name!r}: keyword-only parameters {sorted(declared)} must equal checked "
                f"hyperparameters {sorted(checks)} plus per-call arguments {sorted(per_call)}"
            )
        LOSSES[name] = LossEntry(name, fn, kind, description, checks, needs_labels, per_call)
        return fn

    return decorate


def check_pair(stolen: Tensor, victim: Tensor) -> None:
    """Raise ValueError unless stolen and victim are matching (batch, dim) tensors."""
    if stolen.ndim != 2 or stolen.shape != victim.shape:
        raise ValueError(f"stolen and victim must both be (batch, dim) with the same shape, got {tuple(stolen.shape)} and {tuple(victim.shape)}")
