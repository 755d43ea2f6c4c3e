"""Calibrated proof-of-work (Dziedzic et al., ICLR 2022; paper section 5.5): repeat-heavy accounts solve harder puzzles."""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationInfo, field_validator
from torch import Tensor

from sslsteal.victim.defenses.base import DEFENSES
from sslsteal.victim.defenses.similarity import DetectingDefense, DetectorParams


@DEFENSES.register("pow")
class PowDefense(DetectingDefense):
    """Answers truthfully but charges `base_bits + round(scale_bits * flagged share)` HashCash bits, capped at `max_bits`."""

    class Params(DetectorParams):
        """Detector options (as `similarity`) plus the difficulty calibration, in leading zero bits."""

        base_bits: int = Field(8, ge=0, le=64, description="difficulty charged to an account with no flagged query")
        scale_bits: int = Field(12, ge=0, le=64, description="extra bits when every query so far was flagged")
        max_bits: int = Field(24, ge=0, le=64, description="cap on the difficulty")

        @field_validator("max_bits")
        @classmethod
        def _cap_above_base(cls, v: int, info: ValidationInfo) -> int:
            base = info.data.get("base_bits")
            if base is not None and v < base:
                raise ValueError(f"max_bits ({v}) is below base_bits ({base})")
            return v

    params: Params

    def apply(self, state: dict[str, Any], out: Tensor, rep: Tensor, head: Tensor) -> tuple[Tensor, Tensor]:
        state["queries"] += out.shape[0]
        return out.float(), self.detector(state, rep, head).to(out.device)

    def pow_bits(self, state: dict[str, Any]) -> int:
        rate = state["detections"] / state["queries"] if state["queries"] else 0.0
        return min(self.params.max_bits, self.params.base_bits + round(self.params.scale_bits * rate))
