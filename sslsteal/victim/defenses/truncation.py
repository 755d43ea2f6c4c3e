"""Output truncation (Cont-Steal's output defenses): rounding and top-k sparsification cut the bits each answer leaks."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from sslsteal.specs.defenses import DEFENSES, RoundParams, TopKParams
from sslsteal.victim.defenses.base import Defense, no_flags


@DEFENSES.implements("round")
class RoundDefense(Defense):
    """Rounds every coordinate to `decimals` decimal places."""

    params: RoundParams

    def apply(self, state: dict[str, Any], out: Tensor, rep: Tensor, head: Tensor) -> tuple[Tensor, Tensor]:
        state["queries"] += out.shape[0]
        return torch.round(out.float(), decimals=self.params.decimals), no_flags(out)


@DEFENSES.implements("topk")
class TopKDefense(Defense):
    """Keeps the `k` largest-magnitude coordinates of each answer and zeroes the rest."""

    params: TopKParams

    def apply(self, state: dict[str, Any], out: Tensor, rep: Tensor, head: Tensor) -> tuple[Tensor, Tensor]:
        state["queries"] += out.shape[0]
        out = out.float()
        idx = out.abs().topk(min(self.params.k, out.shape[-1]), dim=-1).indices
        return torch.zeros_like(out).scatter(-1, idx, out.gather(-1, idx)), no_flags(out)
