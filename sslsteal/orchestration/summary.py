"""A sweep's closing summary: one line per configuration, its repeated attacker seeds aggregated as mean and 95% interval.

Across seeds the interval is Student's t on the per-seed values (how much the attack varies with its seed);
a configuration run with one seed shows the Wilson interval of its accuracy on the scored test images instead,
and its gain recovered over that same interval, so a copy a few tenths above its victim reads as the tie it is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sslsteal.core.stats import Estimate, mean_interval

SEED_KEY = "attack.seed"


@dataclass
class ConfigSummary:
    """One configuration (everything but the attacker seed) and the metrics of each of its seeds."""

    label: str
    config: dict[str, str]
    seeds: list[str] = field(default_factory=list)
    runs: list[Mapping[str, float]] = field(default_factory=list)

    def aggregate(self, metric: str) -> Estimate | None:
        """Mean and t-interval of `metric` over the seeds that logged it; a single seed's `acc.*` or `gain_recovered.*`
        gets the interval of its accuracy on the scored images (`single_run_interval`) where the run logged one."""
        estimate = mean_interval(float(m[metric]) for m in self.runs if metric in m)
        if estimate is None or estimate.n > 1 or len(self.runs) > 1:
            return estimate
        bounds = single_run_interval(self.runs[0], metric)
        return Estimate(1, estimate.mean, *bounds) if bounds else estimate


def single_run_interval(metrics: Mapping[str, float], metric: str) -> tuple[float, float] | None:
    """One run's interval of `acc.<ds>` (the Wilson bounds it logged as `.lo`/`.hi`) or of `gain_recovered.<ds>`
    (those bounds through (acc - random) / (victim - random), the victim and the random floor as measured)."""
    kind, _, dataset = metric.partition(".")
    lo, hi = metrics.get(f"acc.{dataset}.lo"), metrics.get(f"acc.{dataset}.hi")
    if lo is None or hi is None:
        return None
    if kind == "acc":
        return float(lo), float(hi)
    victim, random = metrics.get(f"victim_acc.{dataset}"), metrics.get(f"random_acc.{dataset}")
    if kind != "gain_recovered" or victim is None or random is None or victim == random:
        return None
    low, high = (lo - random) / (victim - random), (hi - random) / (victim - random)
    return min(low, high), max(low, high)


def group_by_config(trials: Iterable[tuple[Mapping[str, Any], Mapping[str, float]]], label: Any = None) -> list[ConfigSummary]:
    """Group (config, metrics) pairs by their flattened config minus the attacker seed, in first-seen order."""
    from sslsteal.orchestration.tracking import flatten

    groups: dict[tuple[tuple[str, str], ...], ConfigSummary] = {}
    for config, metrics in trials:
        flat = flatten(config)
        seed = flat.pop(SEED_KEY, "0")
        key = tuple(sorted(flat.items()))
        if key not in groups:
            groups[key] = ConfigSummary(label(config) if label else ",".join(f"{k}={v}" for k, v in key), flat)
        groups[key].seeds.append(seed)
        groups[key].runs.append(metrics)
    out = list(groups.values())
    for name in {g.label for g in out}:  # a label shared by several configurations: add what tells them apart
        same = [g for g in out if g.label == name]
        varying = sorted(k for k in {k for g in same for k in g.config} if len({g.config.get(k) for g in same}) > 1)
        for g in same if len(same) > 1 else []:
            g.label += " " + ",".join(f"{k.split('.')[-1]}={g.config.get(k)}" for k in varying)
    return out


def _cell(value: Estimate | None, digits: int) -> str:
    """`mean [low, high]`, the mean alone where there is no interval, `-` where no seed logged the metric."""
    if value is None:
        return "-"
    if value.lo is None or value.hi is None:
        return f"{value.mean:.{digits}f}"
    return f"{value.mean:.{digits}f} [{value.lo:.{digits}f}, {value.hi:.{digits}f}]"


def _ownership_cell(runs: list[Mapping[str, float]], test: str) -> str:
    """The largest p-value over the seeds whose test was conclusive, and how many seeds were inconclusive."""
    key = f"ownership.{test}."
    logged = [m for m in runs if key + "inconclusive" in m]
    p_values = [float(m[key + "p_value"]) for m in logged if key + "p_value" in m and not float(m[key + "inconclusive"])]
    if not p_values:
        return "inconclusive" if logged else "-"
    cell = f"{max(p_values):.3g}"
    return cell if len(p_values) == len(logged) else f"{cell} ({len(logged) - len(p_values)}/{len(logged)} inconclusive)"


def summary_table(groups: list[ConfigSummary], dataset: str) -> str:
    """Plain-text table: configuration, seeds, accuracy, gain recovered and fidelity (mean [95% interval]), worst p-value per test."""
    tests = sorted({k.split(".")[1] for g in groups for m in g.runs for k in m if k.startswith("ownership.") and k.endswith(".inconclusive")})
    header = ["configuration", "seeds", f"acc.{dataset}", f"gain_recovered.{dataset}", "fidelity.cosine"] + [f"max p {t}" for t in tests]
    rows = []
    for g in groups:
        rows.append(
            [
                g.label,
                str(len(g.runs)),
                _cell(g.aggregate(f"acc.{dataset}"), 2),
                _cell(g.aggregate(f"gain_recovered.{dataset}"), 3),
                _cell(g.aggregate("fidelity.cosine"), 3),
            ]
            + [_ownership_cell(g.runs, t) for t in tests]
        )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in [header, *rows]]
    notes = [
        "mean [95% interval]: Student's t over the seeds; one seed: Wilson's on its scored test images (its gain through the same bounds)",
        "gain recovered: 1 is the victim's accuracy, 0 a random encoder's; an interval that holds 1 is a tie with the victim",
    ]
    return "\n".join([*lines, *notes])
