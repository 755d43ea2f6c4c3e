"""The defense interface and `build_defense` (defenses and their options are declared in `sslsteal.specs.defenses`); per-account state lives in plain dicts the service persists."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import Tensor

from sslsteal.specs.base import StrictModel
from sslsteal.specs.defenses import DEFENSES, defense_params


class Defense(ABC):
    """One output defense; per-account state lives outside the object so the service can persist it."""

    def __init__(self, params: StrictModel, seed: int = 0) -> None:
        self.params = params
        self.seed = seed

    def init_state(self, account: str) -> dict[str, Any]:
        """Fresh state for one account: a query counter and the account's own noise generator (picklable)."""
        return {"queries": 0, "rng": seeded_generator(self.seed, account, "noise").get_state()}

    @abstractmethod
    def apply(self, state: dict[str, Any], out: Tensor, rep: Tensor, head: Tensor) -> tuple[Tensor, Tensor]:
        """(answers shaped like `out`, float32; bool (N,) mask of flagged queries), updating `state` in place."""

    def answer_width(self, width: int) -> int:
        """The width of the answers to outputs of `width` (a defense that pads them answers wider ones)."""
        return width

    def pow_bits(self, state: dict[str, Any]) -> int:
        """Proof-of-work difficulty of the account's next request; only the `pow` defense charges any."""
        return 0


def account_seed(seed: int, account: str, purpose: str = "") -> int:
    """A 63-bit seed fixed by (seed, account[, purpose]), so restarts rebuild the same per-account randomness."""
    key = f"{seed}:{account}" + (f":{purpose}" if purpose else "")
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") >> 1


def seeded_generator(seed: int, account: str, purpose: str = "") -> torch.Generator:
    """A CPU generator seeded by `account_seed`."""
    return torch.Generator().manual_seed(account_seed(seed, account, purpose))


def standard_normal(state: dict[str, Any], shape: tuple[int, ...], device: torch.device) -> Tensor:
    """N(0, 1) draws from the account's persisted generator (advancing it), so noise is reproducible across restarts."""
    gen = torch.Generator().set_state(state["rng"])
    draws = torch.randn(shape, generator=gen)
    state["rng"] = gen.get_state()
    return draws.to(device)


def no_flags(out: Tensor) -> Tensor:
    """The all-False flag mask for a batch."""
    return torch.zeros(out.shape[0], dtype=torch.bool, device=out.device)


@DEFENSES.implements("none")
class NoDefense(Defense):
    """Identity: the honest API the paper attacks."""

    def apply(self, state: dict[str, Any], out: Tensor, rep: Tensor, head: Tensor) -> tuple[Tensor, Tensor]:
        state["queries"] += out.shape[0]
        return out.float(), no_flags(out)


def build_defense(config: dict[str, Any] | None, seed: int = 0) -> Defense:
    """A defense from `{"name": ..., **options}` (None -> `none`); problems raise ConfigError lines `defense.<key>: ...`."""
    name, params = defense_params(config)
    return DEFENSES.implementation(name)(params, seed)
