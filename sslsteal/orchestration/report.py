"""The best-attack-per-budget table of `sslsteal optimize`, read from the studies alone: the best trial, the best
value per loss and the parameter importances of each study, as CSV and Markdown."""

from __future__ import annotations

import csv
import io
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sslsteal.specs.optimize import LOSS, OptimizePlan, param_name

log = logging.getLogger(__name__)


@dataclass
class StudySummary:
    """One row of the table: a study's best trial, the best value per loss and the parameter importances."""

    budget: int
    study: str
    objective: str
    complete: int
    pruned: int
    failed: int
    best_loss: str | None = None
    best_value: float | None = None
    best_number: int | None = None
    best_params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    per_loss: dict[str, float | None] = field(default_factory=dict)
    importances: dict[str, float] = field(default_factory=dict)


def _loss_of(trial: Any, plan: OptimizePlan) -> str:
    return str(trial.params.get(param_name(LOSS), plan.space.selectors["loss"]))


def importances(study: Any) -> dict[str, float]:
    """Optuna's parameter importances (its default evaluator, PED-ANOVA) over the parameters it can assess: ones that
    varied, and conditional ones (temperature) only when at least 2 complete trials have and 2 lack them; {} if none."""
    import optuna
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))

    def assessable(name: str) -> bool:  # varied, and (when conditional) at least 2 trials with and 2 without it
        values = [repr(t.params[name]) for t in complete if name in t.params]
        return len(set(values)) > 1 and (len(complete) - len(values)) in (0, *range(2, len(complete)))

    params = sorted(name for name in {n for t in complete for n in t.params} if assessable(name))
    if len(complete) < 2 or not params:
        return {}
    try:
        return dict(optuna.importance.get_param_importances(study, params=params))
    except (ValueError, RuntimeError) as exc:  # e.g. every objective value equal
        log.warning("study %s: no parameter importances: %s", study.study_name, exc)
        return {}


def summarize(study: Any, plan: OptimizePlan, budget: int, objective: str) -> StudySummary:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None and math.isfinite(t.value)]
    row = StudySummary(
        budget,
        study.study_name,
        objective,
        complete=len(complete),
        pruned=sum(t.state == TrialState.PRUNED for t in trials),
        failed=sum(t.state == TrialState.FAIL for t in trials),
    )
    better = max if plan.optimize.mode == "max" else min
    for loss in plan.losses():
        values = [t.value for t in complete if _loss_of(t, plan) == loss]
        row.per_loss[loss] = better(values) if values else None
    if complete:
        best = better(complete, key=lambda t: t.value)
        row.best_loss, row.best_value, row.best_number = _loss_of(best, plan), best.value, best.number
        row.best_params = {k: v for k, v in best.params.items() if k != param_name(LOSS)}
        row.metrics = dict(best.user_attrs.get("metrics", {}))
    row.importances = importances(study)
    return row


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _short(name: str) -> str:
    """`attack/loss_params/temperature` -> `temperature`, `attack/lr` -> `lr`, `defense/sigma` -> `defense.sigma`."""
    parts = name.split("/")
    return parts[-1] if parts[0] == "attack" else ".".join(parts)


def table_rows(rows: list[StudySummary], plan: OptimizePlan, first: str) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the per-budget table (the CSV and the Markdown show the same cells)."""
    losses = plan.losses()
    header = [
        "budget",
        "best loss",
        f"best {rows[0].objective if rows else plan.optimize.objective}",
        f"stolen acc.{first}",
        f"victim acc.{first}",
        "ratio",
        "params",
    ]
    header += [f"best {loss}" for loss in losses] + ["trials (complete/pruned/failed)"]
    cells = []
    for r in rows:
        params = ", ".join(f"{_short(k)}={_fmt(v)}" for k, v in sorted(r.best_params.items()))
        line = [str(r.budget), r.best_loss or "—", _fmt(r.best_value), _fmt(r.metrics.get(f"acc.{first}")), _fmt(r.metrics.get(f"victim_acc.{first}"))]
        line += [_fmt(r.metrics.get(f"acc_ratio.{first}")), params or "—"] + [_fmt(r.per_loss.get(loss)) for loss in losses]
        cells.append([*line, f"{r.complete}/{r.pruned}/{r.failed}"])
    return header, cells


def markdown(header: list[str], cells: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" if i in (1, 6) else "---:" for i in range(len(header))) + " |"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
    return "\n".join(lines)


def importance_rows(rows: list[StudySummary]) -> list[list[str]]:
    return [[str(r.budget), _short(name), f"{value:.3f}"] for r in rows for name, value in sorted(r.importances.items(), key=lambda kv: -kv[1])]


def write_tables(rows: list[StudySummary], plan: OptimizePlan, first: str, folder: Path) -> tuple[str, list[Path]]:
    """best_per_budget.csv, importances.csv and best_per_budget.md (both tables) in `folder`; returns the Markdown."""
    folder.mkdir(parents=True, exist_ok=True)
    header, cells = table_rows(rows, plan, first)
    imp = importance_rows(rows)
    paths = [folder / "best_per_budget.csv", folder / "importances.csv", folder / "best_per_budget.md"]
    for path, head, body in ((paths[0], header, cells), (paths[1], ["budget", "param", "importance"], imp)):
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(head)
        writer.writerows(body)
        path.write_text(buffer.getvalue())
    o = plan.optimize
    text = [f"## {plan.name}: best attack per query budget", "", f"Objective `{rows[0].objective if rows else o.objective}` ({o.resolved_direction}), "
            f"{o.trials_per_budget} finished trials per budget, sampler {o.sampler.name}, pruner {o.pruner.name}.", "", markdown(header, cells)]  # fmt: skip
    if imp:
        text += [
            "",
            "Parameter importances (Optuna, per budget):",
            "",
            markdown(["budget", "param", "importance"], imp).replace("| --- | ---: |", "| --- | --- |", 1),
        ]
    out = "\n".join(text) + "\n"
    paths[2].write_text(out)
    return out, paths
