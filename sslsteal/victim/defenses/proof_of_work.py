"""Calibrated proof-of-work (Dziedzic et al., ICLR 2022; paper section 5.5): repeat-heavy accounts solve harder puzzles."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from sslsteal.specs.defenses import DEFENSES, PowParams
from sslsteal.victim.defenses.similarity import DetectingDefense


@DEFENSES.implements("pow")
class PowDefense(DetectingDefense):
    """Answers truthfully but charges `base_bits + round(scale_bits * flagged share)` HashCash bits, capped at `max_bits`."""

    params: PowParams

    def apply(self, state: dict[str, Any], out: Tensor, rep: Tensor, head: Tensor) -> tuple[Tensor, Tensor]:
        state["queries"] += out.shape[0]
        return out.float(), self.detector(state, rep, head).to(out.device)

    def pow_bits(self, state: dict[str, Any]) -> int:
        rate = state["detections"] / state["queries"] if state["queries"] else 0.0
        return min(self.params.max_bits, self.params.base_bits + round(self.params.scale_bits * rate))
