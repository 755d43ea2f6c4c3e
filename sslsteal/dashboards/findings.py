"""The paper's findings computed from runs: each side's value per attacker seed, the difference with its 95%
interval (paired by seed where both sides ran the same seeds, Welch's otherwise) and a verdict.

A verdict reads the interval, never the mean alone: **held** when the whole interval lies on the side the paper
found (inside the margin for a "close" finding), **not held** when it lies on the other side, **inconclusive** when
it spans both (a tie), **not measured** when a side has no finished run.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from sslsteal.core.stats import Estimate, difference_interval, mean_interval
from sslsteal.dashboards.aggregate import SEED, section_runs, select
from sslsteal.dashboards.fields import as_number, value
from sslsteal.dashboards.render import estimate_text
from sslsteal.dashboards.spec import Finding, FindingCell
from sslsteal.orchestration.records import RunRecord

HELD, NOT_HELD, INCONCLUSIVE, NOT_MEASURED = "held", "not held", "inconclusive", "not measured"


@dataclass(frozen=True)
class Side:
    """One side of a finding: its label, the mean value per seed (a run id where no seed was logged) and their mean
    with its interval."""

    label: str
    per_seed: dict[str, float]
    runs: int

    @property
    def estimate(self) -> Estimate | None:
        return mean_interval(self.per_seed.values())


@dataclass(frozen=True)
class Outcome:
    """A finding measured: both sides, the difference a - b (or a - value) with its interval, and the verdict."""

    finding: Finding
    a: Side
    b: Side | None
    difference: Estimate | None
    paired: bool
    verdict: str


def _run_value(record: RunRecord, metric: str, minus: str | None) -> float | None:
    x = as_number(value(record, metric))
    y = as_number(value(record, minus)) if minus else 0.0
    if x is None or y is None or math.isnan(x) or math.isnan(y):
        return None
    return x - y


def side(cell: FindingCell, finding: Finding, records: Sequence[RunRecord]) -> Side:
    """The cell's finished trials, their values averaged per seed (a cell spanning configurations, e.g. three losses,
    gives one value per seed)."""
    metric = cell.metric or finding.metric
    minus = cell.minus if cell.metric else (cell.minus or finding.minus)
    runs = select(section_runs(records, cell.experiment), "trial", ["FINISHED"], cell.filters)
    by_seed: dict[str, list[float]] = {}
    for r in runs:
        v = _run_value(r, metric, minus)
        if v is not None:
            by_seed.setdefault(r.params.get(SEED, r.run_id), []).append(v)
    return Side(cell.label, {seed: statistics.fmean(vs) for seed, vs in sorted(by_seed.items())}, len(runs))


def verdict(difference: Estimate | None, expect: str, margin: float = 0.0) -> str:
    """held / not held / inconclusive from where the interval of a - b lies (see the module's docstring)."""
    if difference is None:
        return NOT_MEASURED
    lo, hi = difference.lo, difference.hi
    if lo is None or hi is None:
        return INCONCLUSIVE  # one value per side: no interval to read
    if expect == "greater":
        return HELD if lo > 0 else NOT_HELD if hi < 0 else INCONCLUSIVE
    if expect == "less":
        return HELD if hi < 0 else NOT_HELD if lo > 0 else INCONCLUSIVE
    return HELD if -margin < lo and hi < margin else NOT_HELD if lo >= margin or hi <= -margin else INCONCLUSIVE


def measure(finding: Finding, records: Sequence[RunRecord]) -> Outcome:
    """Both sides of `finding` from `records`, the difference and the verdict."""
    a = side(finding.a, finding, records)
    if finding.b is None:
        assert finding.value is not None  # the spec requires one of b and value
        diff = mean_interval([v - finding.value for v in a.per_seed.values()])
        return Outcome(finding, a, None, diff, False, verdict(diff, finding.expect, finding.margin))
    b = side(finding.b, finding, records)
    seeds = sorted(a.per_seed)
    paired = len(seeds) >= 2 and seeds == sorted(b.per_seed) and all(s.lstrip("-").isdigit() for s in seeds)
    if paired:
        diff = difference_interval([a.per_seed[s] for s in seeds], [b.per_seed[s] for s in seeds], paired=True)
    else:
        diff = difference_interval(a.per_seed.values(), b.per_seed.values(), paired=False)
    return Outcome(finding, a, b, diff, paired, verdict(diff, finding.expect, finding.margin))


def _side_text(side: Side, fmt: str) -> str:
    seeds = len(side.per_seed)
    return f"{side.label}: {estimate_text(side.estimate, fmt)} ({seeds} {'seed' if seeds == 1 else 'seeds'})"


def findings_rows(outcomes: Sequence[Outcome]) -> list[list[str]]:
    """One row per finding: claim, paper, each side, the difference with its interval, the verdict."""
    rows = []
    for o in outcomes:
        f = o.finding
        other = _side_text(o.b, f.format) if o.b is not None else f"{f.value:g}"
        how = "paired by seed" if o.paired else "unpaired" if o.b is not None else "against the value"
        margin = f", margin ±{f.margin:g}" if f.expect == "close" else ""
        diff = f"{estimate_text(o.difference, f.format)} ({how}{margin})"
        rows.append([f.claim, f.paper, _side_text(o.a, f.format), other, diff, o.verdict])
    return rows


FINDINGS_HEADER = ["finding", "paper", "A", "B", "A - B [95% interval]", "verdict"]
