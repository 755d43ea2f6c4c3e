"""Copy every run of older MLflow stores into the one results store (issue 24: one store for every table).

Each run keeps its experiment, status, start and end times, params, tags (the parent link remapped to the copy's
parent) and the last value of each metric (per-epoch histories are not copied); it gains the tag
`sslsteal.copied_from` naming the store it came from. Runs of those stores predate the commit tag, so none is
invented for them. Idempotent: a run already copied (same source store and run id) is skipped.

    python results/merge_stores.py results/cpu/mlflow.db docs/results/recipe.db ...
"""

from __future__ import annotations

import sys
from pathlib import Path

from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

COPIED_FROM, COPIED_RUN = "sslsteal.copied_from", "sslsteal.copied_run"
PARENT = "mlflow.parentRunId"


def _runs(client: MlflowClient, experiment_id: str) -> list:
    out, token = [], None
    while True:
        page = client.search_runs([experiment_id], run_view_type=3, max_results=1000, page_token=token)
        out += list(page)
        token = page.token
        if not token:
            return out


def merge(target: str, source: Path) -> int:
    """Copy the runs of `source` into `target`; returns how many were copied."""
    src, dst = MlflowClient(f"sqlite:///{source}"), MlflowClient(target)
    label = source.as_posix()
    done = {(r.data.tags.get(COPIED_FROM), r.data.tags.get(COPIED_RUN)) for e in dst.search_experiments() for r in _runs(dst, e.experiment_id)}
    copied = 0
    for experiment in src.search_experiments():
        runs = [r for r in _runs(src, experiment.experiment_id) if (label, r.info.run_id) not in done]
        if not runs:
            continue
        found = dst.get_experiment_by_name(experiment.name)
        exp_id = found.experiment_id if found else dst.create_experiment(experiment.name)
        new_ids: dict[str, str] = {}
        for run in sorted(runs, key=lambda r: PARENT in r.data.tags):  # parents first
            tags = dict(run.data.tags) | {COPIED_FROM: label, COPIED_RUN: run.info.run_id}
            if PARENT in tags:
                tags[PARENT] = new_ids.get(tags[PARENT], tags[PARENT])
            new = dst.create_run(exp_id, start_time=run.info.start_time, tags=tags)
            new_ids[run.info.run_id] = new.info.run_id
            params = [Param(k, v) for k, v in run.data.params.items()]
            metrics = [Metric(k, v, run.info.end_time or run.info.start_time, 0) for k, v in run.data.metrics.items()]
            for i in range(0, max(len(params), len(metrics)), 100):
                dst.log_batch(new.info.run_id, metrics=metrics[i : i + 100], params=params[i : i + 100])
            dst.set_terminated(new.info.run_id, run.info.status, end_time=run.info.end_time)
            copied += 1
    return copied


if __name__ == "__main__":
    target = f"sqlite:///{Path(sys.argv[1]).resolve()}"
    for path in sys.argv[2:]:
        print(f"{path}: {merge(target, Path(path))} runs copied into {sys.argv[1]}")
