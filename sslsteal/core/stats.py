"""The intervals every report uses, computed by scipy: Student's t for the mean of repeated runs (the closing
summary, the dashboards) and Wilson's for an accuracy measured on n images (each run's probe).

scipy is imported inside the functions: `core` stays cheap to import for the layers that never report.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Estimate:
    """The mean of n values and its confidence interval (lo, hi); None for a single value, which has no spread."""

    n: int
    mean: float
    lo: float | None = None
    hi: float | None = None


def mean_interval(values: Iterable[float], confidence: float = 0.95) -> Estimate | None:
    """Mean of the non-NaN `values` with the two-sided Student-t interval of that mean (n - 1 degrees of freedom);
    values that all agree give a zero-width interval; None when there are no values."""
    from scipy import stats

    kept = [float(v) for v in values if not math.isnan(v)]
    if not kept:
        return None
    mean = statistics.fmean(kept)
    if len(kept) == 1:
        return Estimate(1, mean)
    sem = float(stats.sem(kept))
    if sem == 0:  # scipy's interval needs a positive scale; seeds that tie have no spread at all
        return Estimate(len(kept), mean, mean, mean)
    lo, hi = stats.t.interval(confidence, len(kept) - 1, loc=mean, scale=sem)
    return Estimate(len(kept), mean, float(lo), float(hi))


def wilson_interval(acc: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval (percent) of an accuracy (percent) measured on `n` images."""
    from scipy.stats import binomtest

    ci = binomtest(round(acc * n / 100), n).proportion_ci(confidence_level=confidence, method="wilson")
    return 100.0 * ci.low, 100.0 * ci.high
