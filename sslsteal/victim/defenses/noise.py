"""Gaussian output noise (paper Tables 10 and 11): every answer is perturbed, honest or not."""

from __future__ import annotations

from typing import Any

from pydantic import Field
from torch import Tensor

from sslsteal.config import StrictModel
from sslsteal.victim.defenses.base import DEFENSES, Defense, no_flags, standard_normal


@DEFENSES.register("noise")
class NoiseDefense(Defense):
    """Adds N(mean, sigma) to every coordinate of every answer."""

    class Params(StrictModel):
        """Noise options; the paper's grid is mean 0 (Table 11) or 10 (Table 10), sigma 0..4."""

        mean: float = Field(0.0, allow_inf_nan=False, description="mean of the added noise")
        sigma: float = Field(1.0, ge=0, allow_inf_nan=False, description="standard deviation of the added noise")

    params: Params

    def apply(self, state: dict[str, Any], out: Tensor, rep: Tensor, head: Tensor) -> tuple[Tensor, Tensor]:
        state["queries"] += out.shape[0]
        noise = standard_normal(state, tuple(out.shape), out.device) * self.params.sigma + self.params.mean
        return out.float() + noise, no_flags(out)
