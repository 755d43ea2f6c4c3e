"""The output defenses a spec may name, each with its options as a pydantic model (unknown keys are errors).
The defenses themselves live in `sslsteal.victim.defenses`, one file per family."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

from sslsteal.core.registry import Registry, unknown_name
from sslsteal.specs.base import ConfigError, StrictModel, errors_of

TAIL_SIGMAS = 8.0
"""Gaussian noise is taken never to fall this many standard deviations below its mean (probability 6e-16 per draw):
noise of mean >= TAIL_SIGMAS * sigma keeps a non-negative answer non-negative."""


class DefenseParams(StrictModel):
    """A defense's options; `signs` says whether the defense can turn the victim's non-negative output negative."""

    def signs(self) -> str | None:
        """What makes this defense's answers signed though the victim's output is not (quoted in validation errors,
        where a loss needs non-negative answers); None when a non-negative output stays non-negative."""
        return None

    def moves_answers(self) -> str | None:
        """What puts this defense's answers outside the victim's representation space (so the victim's own head
        cannot read them); None when answers stay in that space, perturbed or not."""
        return None


DEFENSES: Registry[type[DefenseParams]] = Registry("defense")
"""Defense name -> its options model; the defense class attaches with `@DEFENSES.implements(name)`."""


def defense_params(config: dict[str, Any] | None) -> tuple[str, DefenseParams]:
    """(name, validated options) of `{"name": ..., **options}` (None -> `none`); ConfigError lines `defense.<key>: ...`."""
    config = dict(config or {"name": "none"})
    name = config.pop("name", None)
    if name is None:
        raise ConfigError(["defense.name: required key is missing"])
    if not isinstance(name, str) or name not in DEFENSES:
        raise ConfigError([f"defense.name: {unknown_name('defense', name, DEFENSES)}"])
    try:
        return name, DEFENSES[name].model_validate(config)
    except ValidationError as exc:
        raise ConfigError(errors_of(exc, "defense.")) from None


@DEFENSES.register("none")
class NoneParams(DefenseParams):
    """Identity: the honest API the paper attacks. No options."""


@DEFENSES.register("noise")
class NoiseParams(DefenseParams):
    """Gaussian output noise on every answer; the paper's grid is mean 0 (Table 11) or 10 (Table 10), sigma 0..4."""

    mean: float = Field(0.0, allow_inf_nan=False, description="mean of the added noise")
    sigma: float = Field(1.0, ge=0, allow_inf_nan=False, description="standard deviation of the added noise")

    def signs(self) -> str | None:
        return f"mean {self.mean:g}, sigma {self.sigma:g}" if self.mean < TAIL_SIGMAS * self.sigma else None


class DetectorParams(DefenseParams):
    """Options of the similar-query detector."""

    space: Literal["head", "rep"] = Field("head", description="compare head outputs g(f(x)) (paper's choice) or representations f(x)")
    metric: Literal["cosine", "l2"] = Field("cosine", description="cosine: similarity > threshold flags; l2: distance < threshold flags")
    threshold: float | None = Field(None, allow_inf_nan=False, description="flagging threshold; null takes the paper's value for (space, metric)")
    max_history: int = Field(100_000, ge=1, description="earlier queries remembered per account; the oldest are dropped")


@DEFENSES.register("similarity")
class SimilarityParams(DetectorParams):
    """Detector options plus the noise that replaces a flagged answer; Table 12 uses mean 1000 and sigma 0..60."""

    mean_big: float = Field(1000.0, allow_inf_nan=False, description="mean of the noise that replaces a flagged answer")
    sigma: float = Field(1.0, ge=0, allow_inf_nan=False, description="standard deviation of that noise")

    def signs(self) -> str | None:
        if self.mean_big < TAIL_SIGMAS * self.sigma:
            return f"flagged answers are noise of mean_big {self.mean_big:g}, sigma {self.sigma:g}"
        return None


@DEFENSES.register("pow")
class PowParams(DetectorParams):
    """Detector options (as `similarity`) plus the proof-of-work difficulty calibration, in leading zero bits."""

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


@DEFENSES.register("round")
class RoundParams(DefenseParams):
    """Rounding of every coordinate."""

    decimals: int = Field(1, description="decimal places kept (negative rounds to tens, hundreds, ...)")


@DEFENSES.register("topk")
class TopKParams(DefenseParams):
    """Only the k largest-magnitude coordinates of each answer are kept."""

    k: int = Field(10, ge=1, description="coordinates kept per answer (all when k >= dim)")


B4B_TRANSFORMS = ("affine_pad_shuffle", "affine", "pad_shuffle", "rotation", "none")
B4B_DEFAULTS = {"exponential": {"alpha": 1.0, "beta": 80.0}, "polynomial": {"alpha": 4.0, "beta": 2.0}}
"""alpha and beta of each calibration: the authors' scripts' (exponential) and ours (polynomial)."""


@DEFENSES.register("b4b")
class B4BParams(DefenseParams):
    """Coverage estimate (LSH buckets), noise calibration and the secret per-account transformation. The defaults are
    the authors' scripts' (Dubinski et al., NeurIPS 2023); `calibration: polynomial`, `projections: 1` and
    `transform: rotation` are ours (docs/defenses.md)."""

    space: Literal["rep", "head"] = Field("rep", description="vectors whose buckets measure coverage")
    n_planes: int = Field(12, ge=1, le=24, description="random hyperplanes per family; 2**n_planes buckets")
    projections: int = Field(20, ge=1, le=64, description="independent hyperplane families whose coverages are averaged (theirs: 20)")
    calibration: Literal["exponential", "polynomial"] = Field(
        "exponential",
        description="exponential: sigma = lam * (exp(ln(alpha / lam) * n / beta) - 1), n the % covered (theirs); polynomial: sigma0 + alpha * coverage**beta (ours)",
    )
    lam: float = Field(1e-7, gt=0, allow_inf_nan=False, description="exponential: the curve's scale (theirs: 1e-7)")
    alpha: float | None = Field(
        None, ge=0, allow_inf_nan=False, description="exponential: sigma at beta % (theirs: 1); polynomial: extra sigma at full coverage (4)"
    )
    beta: float | None = Field(
        None, gt=0, allow_inf_nan=False, description="exponential: % coverage where sigma reaches alpha (theirs: 80); polynomial: convexity (2)"
    )
    sigma0: float = Field(0.0, ge=0, allow_inf_nan=False, description="polynomial: sigma at zero coverage")
    transform: Literal["affine_pad_shuffle", "affine", "pad_shuffle", "rotation", "none"] = Field(
        "affine_pad_shuffle", description="the secret per-account map: their affine (scale and shift per dimension), pad-and-shuffle, both; our rotation; none"
    )
    pad_dim: int | None = Field(None, ge=1, description="pad_shuffle: random dimensions added (theirs: as many as the answer has)")

    @model_validator(mode="after")
    def _calibrated(self) -> B4BParams:
        other = "polynomial" if self.calibration == "exponential" else "exponential"
        misplaced = {"exponential": "sigma0", "polynomial": "lam"}[self.calibration]
        if misplaced in self.model_fields_set:
            raise ConfigError([f"{misplaced}: applies to calibration {other} only (this defense's is {self.calibration})"])
        if self.pad_dim is not None and "pad" not in self.transform:
            raise ConfigError([f"pad_dim: applies to transform pad_shuffle or affine_pad_shuffle, not {self.transform}"])
        for key, value in B4B_DEFAULTS[self.calibration].items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        return self

    def moves_answers(self) -> str | None:
        return f"the secret per-account {self.transform} transformation" if self.transform != "none" else None

    def signs(self) -> str | None:
        moved = self.moves_answers()
        if moved is not None:
            return moved
        if self.calibration == "exponential" or self.sigma0 + (self.alpha or 0.0) > 0:
            return "zero-mean noise that grows with coverage"
        return None
