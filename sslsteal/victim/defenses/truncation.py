"""Output truncation (Cont-Steal's output defenses): rounding and top-k sparsification cut the bits each answer leaks."""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field
from torch import Tensor

from sslsteal.config import StrictModel
from sslsteal.victim.defenses.base import DEFENSES, Defense, no_flags


@DEFENSES.register("round")
class RoundDefense(Defense):
    """Rounds every coordinate to `decimals` decimal places."""

    class Params(StrictModel):
        """Rounding options."""

        decimals: int = Field(1, description="decimal places kept (negative rounds to tens, hundreds, ...)")

    params: Params

    def apply(self, state: dict[str, Any], out: Tensor, rep: Tensor, head: Tensor) -> tuple[Tensor, Tensor]:
        state["queries"] += out.shape[0]
        return torch.round(out.float(), decimals=self.params.decimals), no_flags(out)


@DEFENSES.register("topk")
class TopKDefense(Defense):
    """Keeps the `k` largest-magnitude coordinates of each answer and zeroes the rest."""

    class Params(StrictModel):
        """Top-k options."""

        k: int = Field(10, ge=1, description="coordinates kept per answer (all when k >= dim)")

    params: Params

    def apply(self, state: dict[str, Any], out: Tensor, rep: Tensor, head: Tensor) -> tuple[Tensor, Tensor]:
        state["queries"] += out.shape[0]
        out = out.float()
        idx = out.abs().topk(min(self.params.k, out.shape[-1]), dim=-1).indices
        return torch.zeros_like(out).scatter(-1, idx, out.gather(-1, idx)), no_flags(out)
