"""A sweep's closing summary: one line per configuration, its repeated attacker seeds aggregated as mean and 95% interval.

Across seeds the interval is Student's t on the per-seed values (how much the attack varies with its seed);
a configuration run with one seed shows the Wilson interval of its accuracy on the scored test images instead.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

SEED_KEY = "attack.seed"


def t_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) of the mean of `values` under Student's t; low = high = mean for a single value."""
    from scipy.stats import t

    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, mean, mean
    half = t.ppf(0.5 + confidence / 2, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return mean, mean - half, mean + half


@dataclass
class ConfigSummary:
    """One configuration (everything but the attacker seed) and the metrics of each of its seeds."""

    label: str
    config: dict[str, str]
    seeds: list[str] = field(default_factory=list)
    runs: list[Mapping[str, float]] = field(default_factory=list)

    def aggregate(self, metric: str) -> tuple[float, float, float] | None:
        """(mean, low, high) of `metric` over the seeds that logged it (Wilson bounds for a single `acc.*` run)."""
        values = [float(m[metric]) for m in self.runs if metric in m and not math.isnan(float(m[metric]))]
        if not values:
            return None
        if len(values) == 1 and f"{metric}.lo" in self.runs[0]:
            return values[0], float(self.runs[0][f"{metric}.lo"]), float(self.runs[0][f"{metric}.hi"])
        return t_interval(values)


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


def _cell(value: tuple[float, float, float] | None, digits: int, seeds: int) -> str:
    """Mean and interval; the mean alone only for one seed without a Wilson interval (seeds that tie show [m, m])."""
    if value is None:
        return "-"
    mean, lo, hi = value
    return f"{mean:.{digits}f}" if seeds < 2 and lo == hi else f"{mean:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


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
                _cell(g.aggregate(f"acc.{dataset}"), 2, len(g.runs)),
                _cell(g.aggregate(f"gain_recovered.{dataset}"), 3, len(g.runs)),
                _cell(g.aggregate("fidelity.cosine"), 3, len(g.runs)),
            ]
            + [_ownership_cell(g.runs, t) for t in tests]
        )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in [header, *rows]]
    note = "mean [95% t-interval over seeds]; one seed: Wilson interval of the accuracy on the scored test images"
    return "\n".join([*lines, note])
