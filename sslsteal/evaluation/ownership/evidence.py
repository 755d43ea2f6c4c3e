"""What ownership tests look at (`Evidence`), what each test computes per encoder (`Score`), and what it concludes
(`OwnershipResult`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import torch

from sslsteal.evaluation.probe import extract_features
from sslsteal.models import Embed

if TYPE_CHECKING:
    from sslsteal.victim.checkpoint import Victim

Verdict = Literal["stolen", "not stolen", "inconclusive"]


@dataclass
class Evidence:
    """The victim, the suspect, independently trained references and two image sets, plus the level of the verdicts.

    Images are uint8 (or [0,1] float) batches of shape (N, 3, H, W): `private` are victim training images, `public`
    images neither the victim trained on nor the attacker queried. Encoders are functions of float images (modules
    work). The references are honest encoders (the victim's recipe, other seeds): their scores calibrate every test.
    """

    victim: Victim
    suspect: Embed
    references: Sequence[Embed]
    private: torch.Tensor
    public: torch.Tensor
    seed: int = 0
    batch_size: int = 256
    alpha: float = 0.05
    _cache: dict[tuple[Any, ...], Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for name in ("private", "public"):
            images = getattr(self, name)
            if images.ndim != 4 or len(images) < 4:
                raise ValueError(f"evidence.{name} must be an (N, C, H, W) image batch with N >= 4, got shape {tuple(images.shape)}")
        if not 0 < self.alpha < 1:
            raise ValueError(f"evidence.alpha must be in (0, 1), got {self.alpha}")

    def reps(self, encoder: Embed, which: Literal["private", "public"]) -> torch.Tensor:
        """Float32 CPU representations of the private or public images, computed once per encoder."""
        key = ("reps", id(encoder), which)
        if key not in self._cache:
            self._cache[key] = features(encoder, getattr(self, which), self.batch_size)
        return self._cache[key]

    def once(self, key: str, make: Callable[[], Any]) -> Any:
        """A value every encoder's score shares (e.g. a density fitted to the victim), made on first use."""
        if ("once", key) not in self._cache:
            self._cache[("once", key)] = make()
        return self._cache[("once", key)]


def features(encoder: Embed, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Float32 CPU representations, batched, without gradients (eval mode for modules)."""
    with torch.no_grad():
        return torch.from_numpy(extract_features(encoder, images, batch_size))


@dataclass(frozen=True)
class Score:
    """One encoder summarised by a test: its value, an exact p-value against chance where one exists, and details."""

    value: float
    details: dict[str, float] = field(default_factory=dict)
    chance_p: float | None = None


@dataclass(frozen=True)
class OwnershipResult:
    """One test's conclusion about the suspect, calibrated on the references.

    `p_value` is None when the verdict is `inconclusive` (`reason` says why): the test could not separate honest
    from stolen models on this victim, so no p-value is reported. `statistic` is the suspect's prediction-interval
    t against the references (None when it has none: undecided, or references that do not vary); `effect` the suspect's score minus the references' mean, signed so that positive
    points to "stolen".
    """

    test: str
    verdict: Verdict
    p_value: float | None
    statistic: float | None
    effect: float
    reason: str = ""
    details: dict[str, float] = field(default_factory=dict)

    @property
    def stolen(self) -> bool:
        """Whether the test rejects "not stolen" (at the evidence's level alpha)."""
        return self.verdict == "stolen"

    @property
    def inconclusive(self) -> bool:
        return self.verdict == "inconclusive"

    def metrics(self) -> dict[str, float]:
        """Flat MLflow metrics `ownership.<test>.<key>`: p_value (only when conclusive), statistic (when there is one),
        effect, stolen and inconclusive (0/1), and every detail."""
        prefix = f"ownership.{self.test}."
        out = {
            prefix + "effect": self.effect,
            prefix + "stolen": float(self.stolen),
            prefix + "inconclusive": float(self.inconclusive),
        }
        if self.p_value is not None:
            out[prefix + "p_value"] = self.p_value
        if self.statistic is not None:
            out[prefix + "statistic"] = self.statistic
        out.update({prefix + k: float(v) for k, v in self.details.items()})
        return out
