"""Gaussian output noise (paper Tables 10 and 11): every answer is perturbed, honest or not."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from sslsteal.specs.defenses import DEFENSES, NoiseParams
from sslsteal.victim.defenses.base import Defense, no_flags, standard_normal


@DEFENSES.implements("noise")
class NoiseDefense(Defense):
    """Adds N(mean, sigma) to every coordinate of every answer."""

    params: NoiseParams

    def apply(self, state: dict[str, Any], out: Tensor, rep: Tensor, head: Tensor) -> tuple[Tensor, Tensor]:
        state["queries"] += out.shape[0]
        noise = standard_normal(state, tuple(out.shape), out.device) * self.params.sigma + self.params.mean
        return out.float() + noise, no_flags(out)
