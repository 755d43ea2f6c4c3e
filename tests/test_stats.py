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
