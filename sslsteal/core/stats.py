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


def mean_interval(values: Iterable[float], confidence: float = 0.95, bounds: tuple[float, float] | None = None) -> Estimate | None:
    """Mean of the non-NaN `values` with the two-sided Student-t interval of that mean (n - 1 degrees of freedom),
    cut to `bounds` when given (a p-value's interval never leaves [0, 1]); values that all agree give a zero-width
    interval; None when there are no values."""
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
    if bounds is not None:
        lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
    return Estimate(len(kept), mean, float(lo), float(hi))


def wilson_interval(acc: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval (percent) of an accuracy (percent) measured on `n` images."""
    from scipy.stats import binomtest

    ci = binomtest(round(acc * n / 100), n).proportion_ci(confidence_level=confidence, method="wilson")
    return 100.0 * ci.low, 100.0 * ci.high


def difference_interval(a: Iterable[float], b: Iterable[float], *, paired: bool, confidence: float = 0.95) -> Estimate | None:
    """The mean difference a - b with its interval: Student's t over the pairwise differences when `paired` (a[i]
    and b[i] share a seed), else Welch's t for two independent samples. A single value per side gives no interval;
    None when a side is empty."""
    from scipy import stats

    xs, ys = [float(v) for v in a], [float(v) for v in b]
    if not xs or not ys:
        return None
    if paired:
        if len(xs) != len(ys):
            raise ValueError(f"paired samples need equal sizes, got {len(xs)} and {len(ys)}")
        return mean_interval([x - y for x, y in zip(xs, ys, strict=True)], confidence)
    mean = statistics.fmean(xs) - statistics.fmean(ys)
    if len(xs) < 2 or len(ys) < 2:
        return Estimate(min(len(xs), len(ys)), mean)
    if statistics.pvariance(xs) == statistics.pvariance(ys) == 0:
        return Estimate(min(len(xs), len(ys)), mean, mean, mean)
    ci = stats.ttest_ind(xs, ys, equal_var=False).confidence_interval(confidence)
    return Estimate(min(len(xs), len(ys)), mean, float(ci.low), float(ci.high))
