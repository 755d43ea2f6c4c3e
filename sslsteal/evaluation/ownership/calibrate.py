"""Turning per-encoder scores into verdicts: the references are the honest population, the encoder the unit.

Per-image tests against one reference count every image as a replicate, so any systematic gap between two
honest models looks "significant" (pseudo-replication). Here each encoder gives one score; K independently
trained references estimate the honest mean and spread, and the suspect is tested as a new draw from them:
t = (s - mean) / (sd * sqrt(1 + 1/K)) with K - 1 degrees of freedom (a one-sided prediction-interval test).
A test whose references disagree among themselves, or (where it applies) that cannot tell the victim itself
from its references, is `inconclusive` instead of printing a p-value.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from sslsteal.evaluation.ownership.evidence import Evidence, OwnershipResult, Score
from sslsteal.models import Embed
from sslsteal.specs.evaluate import OWNERSHIP_TESTS

MIN_REFERENCES = 3
Side = Literal["greater", "less"]
Scorer = Callable[[Evidence, Embed], Score]


@dataclass(frozen=True)
class OwnershipTest:
    """A registered test: how it scores one encoder, which side of the honest scores points to "stolen", and
    whether the victim itself must stand out from its references (the positive control) for any verdict."""

    name: str
    score: Scorer
    stolen_if: Side
    victim_control: bool


def ownership_test(name: str, *, stolen_if: Side, victim_control: bool) -> Callable[[Scorer], Scorer]:
    """Attach a score function as the implementation of the declared ownership test `name`."""

    def decorate(score: Scorer) -> Scorer:
        OWNERSHIP_TESTS.implements(name)(OwnershipTest(name, score, stolen_if, victim_control))
        return score

    return decorate


def prediction_t(value: float, controls: list[float], side: Side) -> tuple[float, float]:
    """(t, one-sided p) of `value` as a new draw from the population the `controls` sample; NaN when they do not vary."""
    from scipy import stats

    c = np.asarray(controls, dtype=np.float64)
    sd = float(c.std(ddof=1))
    if not sd > 0:
        return math.nan, math.nan
    t = (value - float(c.mean())) / (sd * math.sqrt(1 + 1 / len(c)))
    p = stats.t.sf(t, len(c) - 1) if side == "greater" else stats.t.cdf(t, len(c) - 1)
    return t, float(p)


def _flag_p(score: Score, controls: list[float], side: Side) -> tuple[float, float]:
    """(t, p) for "this encoder is not honest": the prediction test, and also beating chance where the test has one
    (an intersection-union test, so the larger p counts). Controls that do not vary leave only the chance test
    (e.g. references the victim's watermark predictor cannot read at all score exactly 1/2); t is then NaN."""
    t, p = prediction_t(score.value, controls, side)
    if score.chance_p is None:
        return t, p
    return t, score.chance_p if math.isnan(p) else max(p, score.chance_p)


def run_test(test: OwnershipTest, evidence: Evidence) -> OwnershipResult:
    """Score the suspect, the references and the victim, then decide: stolen, not stolen or inconclusive."""
    references = [test.score(evidence, ref) for ref in evidence.references]
    suspect = test.score(evidence, evidence.suspect)
    victim = test.score(evidence, evidence.victim.encoder)
    honest = [r.value for r in references]
    sign = 1.0 if test.stolen_if == "greater" else -1.0
    mean = float(np.mean(honest)) if honest else math.nan
    details = suspect.details | {
        "score": suspect.value,
        "victim_score": victim.value,
        "reference_mean": mean,
        "reference_sd": float(np.std(honest, ddof=1)) if len(honest) > 1 else math.nan,
        "references": float(len(honest)),
    }
    details = {k: v for k, v in details.items() if math.isfinite(v)}
    effect = sign * (suspect.value - mean) if honest else 0.0

    def inconclusive(reason: str, statistic: float | None = None) -> OwnershipResult:
        return OwnershipResult(test.name, "inconclusive", None, statistic, effect, reason, details)

    if len(honest) < MIN_REFERENCES:
        return inconclusive(f"needs at least {MIN_REFERENCES} independently trained references, got {len(honest)}")
    t, p = _flag_p(suspect, honest, test.stolen_if)
    if math.isnan(p):
        return inconclusive("the references' scores do not vary: there is no honest spread to calibrate against")
    for i, ref in enumerate(references):
        _, p_ref = _flag_p(ref, honest[:i] + honest[i + 1 :], test.stolen_if)
        if p_ref < evidence.alpha:
            details["flagged_reference"] = float(i + 1)
            return inconclusive(f"honest reference {i + 1} is flagged against the others (p = {p_ref:.3g}): the test is not specific here")
    if test.victim_control:
        _, p_victim = _flag_p(victim, honest, test.stolen_if)
        details["victim_p"] = p_victim
        if not p_victim < evidence.alpha:
            return inconclusive(f"the victim itself is not told apart from its references (p = {p_victim:.3g}): the test has no power here")
    statistic = None if math.isnan(t) else t
    return OwnershipResult(test.name, "stolen" if p < evidence.alpha else "not stolen", p, statistic, effect, "", details)


def run_tests(names: list[str], evidence: Evidence) -> dict[str, OwnershipResult]:
    """Run the named tests (every name is checked before any runs) and return their results by name."""
    tests = [OWNERSHIP_TESTS.implementation(name) for name in OWNERSHIP_TESTS.check_all(names)]
    return {test.name: run_test(test, evidence) for test in tests}
