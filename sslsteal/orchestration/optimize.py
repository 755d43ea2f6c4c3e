"""`sslsteal optimize`: with B queries, what is the strongest attack? One Optuna study per budget, run on Ray Tune.

Each study (`<sweep>-q<budget>`) lives in an Optuna RDB storage (SQLite by default) and is driven through Optuna's
ask/tell API by a Ray Tune `Searcher` with a seeded sampler; trials are the sweep's trials (one attacker account
each, against the shared victim actor), run up to `run.max_concurrent_trials` at once and stopped early by Tune's
ASHA or median stopping rule on the per-epoch k-NN accuracy. Running the same file again continues the same studies: each runs only the trials it still lacks
to hold `optimize.trials_per_budget` finished ones. MLflow gets a top run (`sslsteal.kind=optimize`) holding the
final table, one run per study under it (`sslsteal.kind=study`, best value and parameters) and one child run
per trial under that.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sslsteal.core.urls import masked
from sslsteal.orchestration.report import StudySummary, summarize, write_tables
from sslsteal.orchestration.searcher import make_scheduler, make_searcher
from sslsteal.orchestration.studies import finished_trials, load_studies, open_storage, prepare_study
from sslsteal.specs.optimize import OptimizePlan


@dataclass
class OptimizeResult:
    """What `run_optimize` leaves: one summary per study, the table files and whether it ran to the end."""

    rows: list[StudySummary]
    markdown: str
    files: list[Path]
    interrupted: bool
    first_downstream: str


def run_optimize(
    plan: OptimizePlan,
    *,
    address: str | None = None,
    tracking_uri: str | None = None,
    storage: str | None = None,
    output: str | Path | None = None,
    progress: bool = True,
) -> OptimizeResult:
    """Run (or continue) every study of the plan, one after the other, then write and log the table."""
    import optuna
    from ray import tune

    from sslsteal.orchestration.driver import Driver
    from sslsteal.orchestration.records import PARENT_RUN_ID
    from sslsteal.orchestration.sweep import close_trial_runs

    if not progress:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec, o = plan.sweep.spec, plan.optimize
    url = o.storage_url()
    shown = masked(url)
    ostorage = open_storage(url)
    studies = load_studies(plan, ostorage)  # a mismatched study is refused before Ray starts
    root = Path(storage or "~/ray_results").expanduser().resolve()
    folder = Path(output) if output else root / f"{spec.name}-optimize"
    driver = Driver.start(plan.sweep, address=address, tracking_uri=tracking_uri, state_dir=folder / f"victim-accounts-{time.strftime('%Y%m%d-%H%M%S')}")
    tracker = driver.tracker
    first = driver.first_downstream()
    objective = o.resolve_objective(first)
    victim_key = driver.victim.spec.key
    rows: list[StudySummary] = []
    interrupted = False
    top = None
    try:
        for budget, (study, _) in studies.items():
            prepare_study(plan, study, budget, victim_key)
        top = tracker.start_parent(
            spec.name,
            f"{spec.name}-optimize",
            kind="optimize",
            params={"objective": objective, "direction": o.resolved_direction, "storage": shown, "victim": victim_key},
            tags={"sslsteal.budgets": ",".join(map(str, o.budgets)), "sslsteal.trials_per_budget": str(o.trials_per_budget)},
            key=f"optimize:{spec.name}@{shown}",
        )
        for budget, (study, existing) in studies.items():
            name = plan.study_name(budget)
            parent = tracker.start_parent(
                spec.name,
                name,
                kind="study",
                params={"budget": budget, "objective": objective, "direction": o.resolved_direction, "study": name, "storage": shown},
                tags={PARENT_RUN_ID: top, "sslsteal.study": name},
                key=f"{name}@{shown}",
            )
            remaining = o.trials_per_budget - len(finished_trials(study))
            if remaining > 0 and not interrupted:
                seed = (o.sampler.seed if o.sampler.seed is not None else spec.run.seed) + existing
                searcher = make_searcher(plan, budget, objective, ostorage, seed)
                tuner = tune.Tuner(
                    driver.trainable(parent),
                    param_space=plan.param_space(budget),
                    tune_config=tune.TuneConfig(
                        search_alg=searcher,
                        scheduler=make_scheduler(plan),
                        num_samples=remaining,
                        max_concurrent_trials=spec.run.max_concurrent_trials,
                        reuse_actors=True,  # one worker process per slot: imports and checkpoints loaded once
                    ),
                    run_config=tune.RunConfig(
                        name=f"{name}-{time.strftime('%Y%m%d-%H%M%S')}",
                        storage_path=str(root),
                        failure_config=tune.FailureConfig(max_failures=spec.run.max_failures),
                        callbacks=[close_trial_runs(tracker.uri, parent)],
                        verbose=1 if progress else 0,  # Ray 2.60's output engine ignores a ProgressReporter (and warns)
                    ),
                )
                try:
                    results = tuner.fit()
                except BaseException:
                    tracker.finish(parent, "KILLED")
                    raise
                interrupted = results.num_terminated + results.num_errors < remaining
            study = optuna.load_study(study_name=name, storage=ostorage)
            mark_trial_runs(tracker, parent, study)
            row = summarize(study, plan, budget, objective)
            rows.append(row)
            _log_study(tracker, parent, row)
            tracker.finish(parent, "FINISHED" if row.complete + row.pruned >= o.trials_per_budget else "KILLED")
    except BaseException:
        if top is not None:
            tracker.finish(top, "KILLED")
        raise
    finally:
        driver.stop()
    text, files = write_tables(rows, plan, first, folder)
    for path in files:
        tracker.log_artifact(top, path, "table")
    short = len(rows) < len(o.budgets) or any(r.complete + r.pruned < o.trials_per_budget for r in rows)
    tracker.finish(top, "KILLED" if interrupted or short else "FINISHED")
    return OptimizeResult(rows, text, files, interrupted, first)


def mark_trial_runs(tracker: Any, parent: str, study: Any) -> None:
    """Tag each trial's MLflow child run with its Optuna trial number and state; a pruned trial's run ends KILLED
    (the trial process, stopped by the scheduler, may have ended it FAILED on its way out)."""
    for t in study.get_trials(deepcopy=False):
        tune_id = t.user_attrs.get("tune_trial_id")
        run = tracker.find_child(parent, tune_id) if tune_id else None
        if run is None:
            continue
        tags = {"sslsteal.optuna_trial": str(t.number), "sslsteal.optuna_state": t.state.name}
        for key, value in tags.items():
            if run.data.tags.get(key) != value:
                tracker.client.set_tag(run.info.run_id, key, value)
        if t.state.name == "PRUNED" and run.info.status != "KILLED":
            tracker.finish(run.info.run_id, "KILLED")


def _log_study(tracker: Any, run_id: str, row: StudySummary) -> None:
    """The study's best value and trial counts as metrics, its best parameters as tags and a JSON artifact,
    its parameter importances as metrics (all mutable: a resumed study updates them)."""
    tracker.log_metrics(run_id, {"trials.complete": row.complete, "trials.pruned": row.pruned, "trials.failed": row.failed})
    if row.best_value is not None:
        tracker.log_metrics(run_id, {f"best.{row.objective}": row.best_value} | {f"importance.{k.replace('/', '.')}": v for k, v in row.importances.items()})
        tags = {"best.trial": str(row.best_number), "best.loss": str(row.best_loss)}
        tags |= {f"best.{k.replace('/', '.')}": str(v) for k, v in row.best_params.items()}
        for key, value in tags.items():
            tracker.client.set_tag(run_id, key, value)
        best = {"trial": row.best_number, "value": row.best_value, "loss": row.best_loss, "params": row.best_params, "metrics": row.metrics}
        tracker.log_dict(run_id, best, "best_trial.json")
