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
from typing import TYPE_CHECKING, Any

from sslsteal.core.urls import masked
from sslsteal.orchestration.records import PARENT_RUN_ID
from sslsteal.orchestration.report import StudySummary, summarize, write_tables
from sslsteal.orchestration.searcher import make_scheduler, make_searcher
from sslsteal.orchestration.studies import finished_trials, load_studies, open_storage, prepare_study
from sslsteal.specs.optimize import OptimizePlan

if TYPE_CHECKING:
    from sslsteal.orchestration.driver import Driver
    from sslsteal.orchestration.tracking import Tracker


@dataclass
class OptimizeResult:
    """What `run_optimize` leaves: one summary per study, the table files and whether it ran to the end."""

    rows: list[StudySummary]
    markdown: str
    files: list[Path]
    interrupted: bool
    first_downstream: str


@dataclass(frozen=True)
class _Invocation:
    """What the steps of one `sslsteal optimize` share: the plan, the running driver, the Optuna storage, the objective."""

    plan: OptimizePlan
    driver: Driver
    storage: Any
    """The Optuna RDBStorage holding every study of the plan."""
    tune_root: Path
    """Where Tune writes each study's experiment folder."""
    progress: bool

    @property
    def tracker(self) -> Tracker:
        return self.driver.tracker

    @property
    def first(self) -> str:
        """The dataset of the objective and of the table's accuracy columns."""
        return self.driver.first_downstream()

    @property
    def objective(self) -> str:
        return self.plan.optimize.resolve_objective(self.first)

    @property
    def shown(self) -> str:
        """The storage URL with its password masked, as MLflow records it."""
        return masked(self.plan.optimize.storage_url())


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
    from sslsteal.orchestration.driver import Driver

    ostorage, studies = _open_studies(plan, progress)  # a mismatched study is refused before Ray starts
    root = Path(storage or "~/ray_results").expanduser().resolve()
    folder = Path(output) if output else root / f"{plan.sweep.spec.name}-optimize"
    accounts = folder / f"victim-accounts-{time.strftime('%Y%m%d-%H%M%S')}"
    driver = Driver.start(plan.sweep, address=address, tracking_uri=tracking_uri, state_dir=accounts)
    run = _Invocation(plan, driver, ostorage, root, progress)
    try:
        for budget, (study, _) in studies.items():
            prepare_study(plan, study, budget, driver.victim.spec.key)
        top = _start_top_run(run)
        with run.tracker.killed_if_raised(top):
            rows, interrupted = _run_studies(run, top, studies)
    finally:
        driver.stop()
    text, files = _finish_top_run(run, top, rows, interrupted, folder)
    return OptimizeResult(rows, text, files, interrupted, run.first)


def _open_studies(plan: OptimizePlan, progress: bool) -> tuple[Any, dict[int, tuple[Any, int]]]:
    """The Optuna storage and the plan's studies in it, checked against the plan (Optuna's per-trial log is quiet
    without progress output)."""
    import optuna

    if not progress:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    ostorage = open_storage(plan.optimize.storage_url())
    return ostorage, load_studies(plan, ostorage)


def _start_top_run(run: _Invocation) -> str:
    """The MLflow run of the whole invocation (`sslsteal.kind=optimize`), reused by a later invocation on the same storage."""
    spec, o = run.plan.sweep.spec, run.plan.optimize
    return run.tracker.start_parent(
        spec.name,
        f"{spec.name}-optimize",
        kind="optimize",
        params={"objective": run.objective, "direction": o.resolved_direction, "storage": run.shown, "victim": run.driver.victim.spec.key},
        tags={"sslsteal.budgets": ",".join(map(str, o.budgets)), "sslsteal.trials_per_budget": str(o.trials_per_budget)},
        key=f"optimize:{spec.name}@{run.shown}",
    )


def _run_studies(run: _Invocation, top: str, studies: dict[int, tuple[Any, int]]) -> tuple[list[StudySummary], bool]:
    """Each study in turn: its MLflow run, the trials it still lacks (none after an interrupted study), its summary;
    returns the summaries and whether a study was interrupted."""
    rows: list[StudySummary] = []
    interrupted = False
    for budget, (study, existing) in studies.items():
        parent = _start_study_run(run, top, budget)
        remaining = run.plan.optimize.trials_per_budget - len(finished_trials(study))
        if remaining > 0 and not interrupted:
            interrupted = _run_trials(run, parent, budget, existing, remaining)
        rows.append(_close_study(run, parent, budget))
    return rows, interrupted


def _start_study_run(run: _Invocation, top: str, budget: int) -> str:
    """The MLflow run of the study of `budget` (`sslsteal.kind=study`) under the top run, reused when the study continues."""
    o, name = run.plan.optimize, run.plan.study_name(budget)
    return run.tracker.start_parent(
        run.plan.sweep.spec.name,
        name,
        kind="study",
        params={"budget": budget, "objective": run.objective, "direction": o.resolved_direction, "study": name, "storage": run.shown},
        tags={PARENT_RUN_ID: top, "sslsteal.study": name},
        key=f"{name}@{run.shown}",
    )


def _run_trials(run: _Invocation, parent: str, budget: int, existing: int, remaining: int) -> bool:
    """Run `remaining` trials of the study of `budget` on Tune, drawn by its searcher and pruned by the plan's
    scheduler; the sampler's seed moves on by the trials the study held, so a resumed study draws new points.
    Returns whether the run was interrupted before every trial ended."""
    from sslsteal.orchestration.tune_run import fit, new_tuner

    plan, o = run.plan, run.plan.optimize
    seed = (o.sampler.seed if o.sampler.seed is not None else plan.sweep.spec.run.seed) + existing
    tuner = new_tuner(
        run.driver.trainable(parent),
        param_space=plan.param_space(budget),
        folder=run.tune_root / f"{plan.study_name(budget)}-{time.strftime('%Y%m%d-%H%M%S')}",
        run=plan.sweep.spec.run,
        num_samples=remaining,
        tracker=run.tracker,
        parent=parent,
        progress=run.progress,
        search_alg=make_searcher(plan, budget, run.objective, run.storage, seed),
        scheduler=make_scheduler(plan),
    )
    results = fit(tuner, run.tracker, parent)
    return bool(results.num_terminated + results.num_errors < remaining)


def _close_study(run: _Invocation, parent: str, budget: int) -> StudySummary:
    """Read the study back from its storage, tag its trials' runs, log its summary and end its run: FINISHED once
    it holds every trial it should, else KILLED."""
    import optuna

    study = optuna.load_study(study_name=run.plan.study_name(budget), storage=run.storage)
    mark_trial_runs(run.tracker, parent, study)
    row = summarize(study, run.plan, budget, run.objective)
    _log_study(run.tracker, parent, row)
    run.tracker.finish(parent, "FINISHED" if row.complete + row.pruned >= run.plan.optimize.trials_per_budget else "KILLED")
    return row


def _finish_top_run(run: _Invocation, top: str, rows: list[StudySummary], interrupted: bool, folder: Path) -> tuple[str, list[Path]]:
    """Write the table into `folder`, log it to the top run and end that run: FINISHED when every study is complete."""
    o = run.plan.optimize
    text, files = write_tables(rows, run.plan, run.first, folder)
    for path in files:
        run.tracker.log_artifact(top, path, "table")
    short = len(rows) < len(o.budgets) or any(r.complete + r.pruned < o.trials_per_budget for r in rows)
    run.tracker.finish(top, "KILLED" if interrupted or short else "FINISHED")
    return text, files


def mark_trial_runs(tracker: Tracker, parent: str, study: Any) -> None:
    """Tag each trial's MLflow child run with its Optuna trial number and state; a pruned trial's run ends KILLED
    (the trial process, stopped by the scheduler, may have ended it FAILED on its way out)."""
    for t in study.get_trials(deepcopy=False):
        tune_id = t.user_attrs.get("tune_trial_id")
        run = tracker.find_child(parent, tune_id) if tune_id else None
        if run is None:
            continue
        tracker.set_tags(run.info.run_id, {"sslsteal.optuna_trial": str(t.number), "sslsteal.optuna_state": t.state.name})
        if t.state.name == "PRUNED" and run.info.status != "KILLED":
            tracker.finish(run.info.run_id, "KILLED")


def _log_study(tracker: Tracker, run_id: str, row: StudySummary) -> None:
    """The study's best value and trial counts as metrics, its best parameters as tags and a JSON artifact,
    its parameter importances as metrics (all mutable: a resumed study updates them)."""
    tracker.log_metrics(run_id, {"trials.complete": row.complete, "trials.pruned": row.pruned, "trials.failed": row.failed})
    if row.best_value is not None:
        tracker.log_metrics(run_id, {f"best.{row.objective}": row.best_value} | {f"importance.{k.replace('/', '.')}": v for k, v in row.importances.items()})
        tags = {"best.trial": str(row.best_number), "best.loss": str(row.best_loss)}
        tags |= {f"best.{k.replace('/', '.')}": str(v) for k, v in row.best_params.items()}
        tracker.set_tags(run_id, tags)
        best = {"trial": row.best_number, "value": row.best_value, "loss": row.best_loss, "params": row.best_params, "metrics": row.metrics}
        tracker.log_dict(run_id, best, "best_trial.json")
