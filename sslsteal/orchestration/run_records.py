"""Runs and Optuna studies as the plain records dashboards consume, read through public APIs only:
`MlflowClient.search_experiments` / `search_runs` (every page) and `optuna.load_study` on the storage each study
run of `sslsteal optimize` names (its `storage` and `study` params)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Any, cast

from sslsteal.core.urls import sqlite_file
from sslsteal.orchestration.records import BestTrial, RunRecord, StudyRecord
from sslsteal.orchestration.report import importances

LOSS_PARAM = "attack/loss"
"""The Optuna parameter of the loss when a study searches it (`sslsteal optimize` names parameters by key path)."""


def _time(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


def experiment_names(uri: str) -> list[str]:
    """Every active experiment of the store (none for a SQLite file that does not exist: it is not created)."""
    path = sqlite_file(uri)
    if path is not None and not path.exists():
        return []
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    names, token = [], None
    while True:
        page = client.search_experiments(page_token=token)
        names += [e.name for e in page]
        token = page.token
        if not token:
            return names


def fetch_records(uri: str, experiments: Iterable[str]) -> list[RunRecord]:
    """Every active run of the named experiments that exist (others are skipped), with latest metric values."""
    wanted = list(dict.fromkeys(experiments))
    if not set(wanted) & set(experiment_names(uri)):
        return []
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    records = []
    for name in wanted:
        found = client.get_experiment_by_name(name)
        if found is None or found.lifecycle_stage != "active":
            continue
        token = None
        while True:
            page = client.search_runs([found.experiment_id], max_results=1000, page_token=token)
            records += [_record(run, name) for run in page]
            token = page.token
            if not token:
                break
    return records


def _record(run: Any, experiment: str) -> RunRecord:
    info, data = run.info, run.data
    return RunRecord(
        run_id=info.run_id,
        experiment=experiment,
        status=info.status,
        params=dict(data.params),
        metrics={k: float(v) for k, v in data.metrics.items()},
        tags=dict(data.tags),
        start_time=_time(info.start_time),
        end_time=_time(info.end_time),
    )


def read_studies(records: Sequence[RunRecord], storage: str | None = None, *, beside: str | None = None) -> list[StudyRecord]:
    """The Optuna study of every study run (`sslsteal.kind=study`) among `records`, from the storage its `storage`
    param names (or `storage` when given, e.g. a moved file). A recorded SQLite file that is gone is looked for
    beside the tracking store `beside` under the same name (a store moved with its Optuna file, e.g. a checkout of
    results/cpu/). A study that cannot be read gives a record with `error` set instead of failing the build."""
    out = []
    for r in records:
        if r.kind != "study" or "study" not in r.params:
            continue
        url = storage or _moved(r.params.get("storage", ""), beside)
        out.append(_study(r.experiment, r.params["study"], url, r.params.get("objective", "objective"), _budget(r.params.get("budget"))))
    return out


def _moved(url: str, beside: str | None) -> str:
    """`url`, or the file of the same name beside the tracking store `beside` when `url`'s SQLite file is gone."""
    recorded, store = sqlite_file(url), sqlite_file(beside or "")
    if recorded is None or recorded.exists() or store is None:
        return url
    moved = store.resolve().parent / recorded.name
    return f"sqlite:///{moved}" if moved.exists() else url


def _budget(raw: str | None) -> int | None:
    return int(raw) if raw is not None and raw.isdigit() else None


def _study(experiment: str, name: str, url: str, objective: str, budget: int | None) -> StudyRecord:
    import optuna

    record = StudyRecord(
        experiment=experiment, name=name, budget=budget, objective=objective, direction="", states={}, best=None, best_per_loss={}, importances={}, error=None
    )
    if "***" in url:
        return record | {"error": f"its storage {url} hides a password: pass the storage URL to read it"}
    path = sqlite_file(url)
    if path is not None and not path.exists():
        return record | {"error": f"storage {url} does not exist"}
    try:
        study = optuna.load_study(study_name=name, storage=url)
    except (KeyError, ValueError, ImportError, optuna.exceptions.OptunaError) as exc:  # no such study, bad URL, missing driver
        return record | {"error": f"cannot read it from {url}: {exc}"}
    return cast("StudyRecord", record | summarize_study(study))


def summarize_study(study: Any) -> dict[str, Any]:
    """Trial counts by state, the best complete trial, the best value of each loss, and parameter importances."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None and math.isfinite(t.value)]
    maximize = study.direction.name == "MAXIMIZE"
    better = max if maximize else min
    per_loss: dict[str, float] = {}
    for t in complete:
        loss = str(t.params.get(LOSS_PARAM, "—"))
        per_loss[loss] = better(per_loss.get(loss, t.value), t.value)
    best: BestTrial | None = None
    if complete:
        top = better(complete, key=lambda t: t.value)
        params = {k: v for k, v in top.params.items() if k != LOSS_PARAM}
        best = BestTrial(number=top.number, value=top.value, loss=top.params.get(LOSS_PARAM), params=params)
    states: dict[str, int] = {}
    for t in trials:
        states[t.state.name] = states.get(t.state.name, 0) + 1
    budget = study.user_attrs.get("sslsteal.budget")
    extra = {"budget": int(budget)} if isinstance(budget, int) else {}
    return {
        "direction": study.direction.name.lower(),
        "states": states,
        "best": best,
        "best_per_loss": per_loss,
        "importances": importances(study),
    } | extra
