"""Selecting runs and grouping them by fields; a group's repeated seeds are aggregated with
`sslsteal.core.stats.mean_interval` (mean and Student-t interval).

A group is every selected run with the same values of the grouping fields and of every other configuration
param (`attack.*`, `evaluate.*`, `defense.*`) but the attacker seed, so its runs differ only by their seed and
the interval says how much the result moves with the seed; a param that varies among the runs without being a
grouping field becomes one (`confounders`), instead of passing different configurations off as seeds. One run
gives no interval.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from sslsteal.core.stats import Estimate, mean_interval
from sslsteal.dashboards.fields import as_number, bounds, same_value, value
from sslsteal.dashboards.spec import Borrow, members
from sslsteal.orchestration.records import RunRecord

SEED = "attack.seed"
CONFIG_SECTIONS = ("attack.", "evaluate.", "defense.")
"""Param prefixes of a trial's resolved configuration (its sweep's searchable sections)."""
NEUTRAL = ("evaluate.save_encoder", "evaluate.monitor_images")
"""Configuration params that change no metric (an artifact saved, a per-epoch monitor): never a confounder."""


def numbers(records: Iterable[RunRecord], field: str) -> list[float]:
    """The field's numeric values over `records` (absent or non-numeric values left out)."""
    out = [as_number(value(r, field)) for r in records]
    return [v for v in out if v is not None]


def estimate(records: Iterable[RunRecord], field: str, confidence: float) -> Estimate | None:
    """The field's mean over `records` with its interval, kept within the field's range (`fields.bounds`)."""
    return mean_interval(numbers(records, field), confidence, bounds(field))


def configuration(record: RunRecord) -> tuple[tuple[str, str], ...]:
    """The run's resolved configuration with its seed (every config param but the `NEUTRAL` ones): what makes two
    runs the same cell."""
    return tuple(sorted((k, v) for k, v in record.params.items() if k.startswith(CONFIG_SECTIONS) and k not in NEUTRAL))


def section_runs(records: Iterable[RunRecord], section: str, borrowed: Sequence[Borrow] = ()) -> list[RunRecord]:
    """The runs of a page section: those of its experiments (each experiment of an `a+b` section), then the finished
    trials it borrows (`spec.Borrow`) whose configuration and seed none of its own finished trials has."""
    records = list(records)
    own = [r for r in records if r.experiment in members(section)]
    taken = {configuration(r) for r in own if r.kind == "trial" and r.status == "FINISHED"}
    extra: dict[str, RunRecord] = {}
    for b in borrowed:
        for r in records:
            lent = r.experiment == b.experiment and r.kind == "trial" and r.status == "FINISHED" and matches(r, b.filters)
            if lent and configuration(r) not in taken:
                extra[r.run_id] = r
    return own + list(extra.values())


def lenders(runs: Iterable[RunRecord], section: str) -> Counter[str]:
    """How many of a section's runs (`section_runs`) each experiment outside it lent, in the order first met."""
    names = members(section)
    return Counter(r.experiment for r in runs if r.experiment not in names)


def select(runs: Iterable[RunRecord], kind: str, statuses: Sequence[str], filters: Mapping[str, object]) -> list[RunRecord]:
    """The runs (of one section: `section_runs`) of `kind` (`any`: every kind) in one of `statuses`, matching every
    filter (a value or a list of allowed values)."""
    return [r for r in runs if (kind == "any" or r.kind == kind) and r.status in statuses and matches(r, filters)]


def matches(record: RunRecord, conditions: Mapping[str, object]) -> bool:
    """Whether the run has, for every field of `conditions`, its value or one of its list of allowed values."""
    for name, wanted in conditions.items():
        allowed = wanted if isinstance(wanted, list) else [wanted]
        if not any(same_value(value(record, name), a) for a in allowed):
            return False
    return True


def label(raw: float | str | None) -> str:
    """A grouping value as shown: numbers without a needless `.0`, a missing value as `—`."""
    if raw is None:
        return "—"
    if isinstance(raw, float):
        return f"{raw:g}"
    return raw


def sort_key(text: str) -> tuple[int, float, str]:
    """Numbers in numeric order first, then words, then missing values."""
    number = as_number(text)
    if text == "—":
        return (2, 0.0, "")
    return (0, number, "") if number is not None and not math.isnan(number) else (1, 0.0, text)


@dataclass(frozen=True)
class Group:
    """Runs sharing the values of the grouping fields (`values`: field -> shown value)."""

    values: dict[str, str]
    records: list[RunRecord]

    @property
    def seeds(self) -> list[str]:
        """The distinct attacker seeds of the group's runs, in numeric order."""
        return sorted({r.params[SEED] for r in self.records if SEED in r.params}, key=sort_key)


def confounders(records: Sequence[RunRecord], fields: Sequence[str]) -> list[str]:
    """Configuration params, other than the attacker seed and `fields`, whose value differs between runs."""
    named = {f.removeprefix("params.") for f in fields if f.startswith("params.")}
    keys = sorted({k for r in records for k in r.params if k.startswith(CONFIG_SECTIONS)} - named - {SEED, *NEUTRAL})
    # two logged values differ; a param only some runs logged (older runs, before the option existed) does not split
    return [f"params.{k}" for k in keys if len({r.params[k] for r in records if k in r.params}) > 1]


def group(records: Sequence[RunRecord], fields: Sequence[str], *, pooled: bool = False, within: Sequence[str] = ()) -> list[Group]:
    """Group runs by the values of `fields` and of their `confounders` other than the fields meant to vary `within` a
    group (a plot's x); `pooled`: by `fields` alone, whatever the configuration. Groups in natural order."""
    keys = [*fields, *([] if pooled else confounders(records, [*fields, *within]))]
    groups: dict[tuple[str, ...], list[RunRecord]] = {}
    for r in records:
        groups.setdefault(tuple(label(value(r, f)) for f in keys), []).append(r)
    ordered = sorted(groups, key=lambda key: [sort_key(v) for v in key])
    return [Group(dict(zip(keys, key, strict=True)), groups[key]) for key in ordered]


@dataclass(frozen=True)
class Progress:
    """How far an experiment's trials got: planned (from the sweep or optimize runs) and by run status."""

    experiment: str
    planned: int
    statuses: dict[str, int]

    @property
    def total(self) -> int:
        return max(self.planned, sum(self.statuses.values()))

    @property
    def finished(self) -> int:
        return self.statuses.get("FINISHED", 0)

    def text(self) -> str:
        """`no trial runs yet`, `3 of 10 trials finished (1 failed, 2 running)` or `4 of 4 trials finished`."""
        if not self.total:
            return "no trial runs yet"
        others = [f"{n} {status.lower()}" for status, n in sorted(self.statuses.items()) if status != "FINISHED" and n]
        return f"{self.finished} of {self.total} trials finished" + (f" ({', '.join(others)})" if others else "")


def progress(records: Iterable[RunRecord], experiment: str) -> Progress:
    """Trial runs of `experiment` by status, and the trials its sweep runs (`params.trials`) or optimize run
    (`sslsteal.trials_per_budget` per budget) planned."""
    runs = [r for r in records if r.experiment in members(experiment)]
    planned = 0
    for r in runs:
        if r.kind == "sweep":
            planned += int(as_number(r.params.get("trials")) or 0)
        elif r.kind == "optimize":
            budgets = [b for b in r.tags.get("sslsteal.budgets", "").split(",") if b]
            planned += int(as_number(r.tags.get("sslsteal.trials_per_budget")) or 0) * len(budgets)
    statuses: dict[str, int] = {}
    for r in runs:
        if r.kind == "trial":
            statuses[r.status] = statuses.get(r.status, 0) + 1
    return Progress(experiment, planned, statuses)
