"""The one statistics module's t-interval of a mean, as scipy computes it, and none for one value (its Wilson
interval of an accuracy is checked against the formula in tests/test_evaluate.py)."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from sslsteal.core.stats import Estimate, mean_interval


def test_mean_interval_is_scipys_t_interval_and_a_single_value_has_none() -> None:
    values = [41.0, 44.5, 39.25]
    lo, hi = stats.t.interval(0.9, 2, loc=sum(values) / 3, scale=stats.sem(values))
    est = mean_interval(values, confidence=0.9)
    assert est is not None and est.n == 3 and est.mean == pytest.approx(sum(values) / 3)
    assert (est.lo, est.hi) == (pytest.approx(lo, rel=1e-12), pytest.approx(hi, rel=1e-12))
    assert mean_interval([52.0]) == Estimate(1, 52.0, None, None)
    assert mean_interval([44.45, 44.45]) == Estimate(2, 44.45, 44.45, 44.45)  # seeds that tie: zero width
    assert mean_interval([1.0, math.nan, 3.0]) == mean_interval([1.0, 3.0])  # NaN (e.g. an undefined gain) left out
    assert mean_interval([math.nan]) is None and mean_interval([]) is None


def test_bounds_cut_an_interval_that_leaves_the_range_and_leave_one_inside_untouched() -> None:
    p_values = [0.02, 0.47, 0.93]  # three seeds' p-values: the t-interval reaches below 0 and above 1
    free = mean_interval(p_values)
    assert free is not None and free.lo is not None and free.hi is not None and free.lo < 0 < 1 < free.hi
    cut = mean_interval(p_values, bounds=(0.0, 1.0))
    assert cut == Estimate(3, free.mean, 0.0, 1.0)
    inside = [0.40, 0.45, 0.50]
    assert mean_interval(inside, bounds=(0.0, 1.0)) == mean_interval(inside)
