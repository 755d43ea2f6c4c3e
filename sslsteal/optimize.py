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

import csv
import io
import logging
import math
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sslsteal.specs.base import ConfigError
from sslsteal.specs.optimize import LOSS, OptimizePlan, cover_points, mask_url, param_name

log = logging.getLogger(__name__)

MONITOR = "val.knn_acc"
"""The per-epoch metric trials report when evaluate.monitor_images > 0 (sslsteal.sweep.trial): ASHA prunes on it."""
KEPT_METRICS = ("acc.", "val_acc.", "eval.", "acc_ratio.", "gain_recovered.", "victim_acc.", "random_acc.", "fidelity.", "queries_used", "time.", MONITOR)
"""Final-report metrics stored on each Optuna trial (user attribute `metrics`), so the table needs only the storage."""


def make_searcher(plan: OptimizePlan, budget: int, objective: str, storage: Any, seed: int) -> Any:
    """The Tune searcher of the study of `budget`: the stored study (created when new) with the plan's seeded sampler."""
    import optuna

    o = plan.optimize
    if o.sampler.name == "tpe":
        sampler = optuna.samplers.TPESampler(n_startup_trials=o.sampler.n_startup_trials, seed=seed)
    else:
        sampler = optuna.samplers.RandomSampler(seed=seed)
    study = optuna.create_study(
        storage=storage,
        study_name=plan.study_name(budget),
        direction=o.resolved_direction,
        sampler=sampler,
        pruner=optuna.pruners.NopPruner(),  # Tune's scheduler prunes; nothing asks the study's pruner
        load_if_exists=True,
    )
    return study_search(plan, study, objective)


def study_search(plan: OptimizePlan, study: Any, objective: str) -> Any:
    """A `ray.tune.search.Searcher` that drives `study` through Optuna's ask/tell API (built here: Ray is imported late).

    Each Tune trial is one `study.ask()` drawn by the plan's define-by-run space; its per-epoch k-NN accuracy becomes
    the Optuna trial's intermediate value, its final metrics and Tune trial id user attributes, and `study.tell`
    ends it: COMPLETE with the objective of the final report; FAIL when the trial errored or finished without the
    objective; PRUNED when Tune's scheduler stopped it before its final report. The searcher sets no Tune metric:
    Tune requires a searcher's metric in every result, and the objective comes with the final report only."""
    from optuna.trial import TrialState
    from ray.tune.search import Searcher

    class StudySearch(Searcher):
        def __init__(self) -> None:
            super().__init__()
            self.study = study
            self.trials: dict[str, Any] = {}  # live Tune trial id -> Optuna trial
            self.reported: dict[str, set[int]] = {}  # epochs already reported per live trial

        def suggest(self, trial_id: str) -> dict[str, Any]:
            trial = self.study.ask()
            config = plan.space(trial)
            trial.set_user_attr("tune_trial_id", trial_id)
            self.trials[trial_id], self.reported[trial_id] = trial, set()
            return config | {"optuna": {"study": self.study.study_name, "trial": trial.number}}

        def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
            trial = self.trials.get(trial_id)
            if trial is not None and MONITOR in result and "queries_used" not in result:
                step = int(result.get("epoch", result["training_iteration"]))
                if step not in self.reported[trial_id]:
                    self.reported[trial_id].add(step)
                    trial.report(float(result[MONITOR]), step)

        def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
            if trial_id not in self.trials:  # not ours, or told already
                return
            result = result or {}
            self.on_trial_result(trial_id, result)  # the result the scheduler stopped on, which Tune did not pass on
            trial = self.trials.pop(trial_id)
            del self.reported[trial_id]
            kept = {k: float(v) for k, v in result.items() if k.startswith(KEPT_METRICS) and isinstance(v, (int, float))}
            if kept:
                trial.set_user_attr("metrics", kept)
            if error:
                self.study.tell(trial, state=TrialState.FAIL)
            elif objective in result:
                self.study.tell(trial, float(result[objective]))
            elif "queries_used" in result:
                log.warning("trial %s finished without the objective %s: counted as failed", trial_id, objective)
                self.study.tell(trial, state=TrialState.FAIL)
            else:
                self.study.tell(trial, state=TrialState.PRUNED)

        def save(self, checkpoint_path: str) -> None:
            """Tune checkpoints its searcher with the experiment; the study itself is in its storage."""
            Path(checkpoint_path).write_bytes(pickle.dumps(self.__dict__))

        def restore(self, checkpoint_path: str) -> None:
            self.__dict__.update(pickle.loads(Path(checkpoint_path).read_bytes()))

    return StudySearch()


def make_scheduler(plan: OptimizePlan) -> Any:
    """The Tune scheduler that prunes on the per-epoch k-NN accuracy: ASHA, the median stopping rule, or FIFO (none).

    Both count time in `training_iteration`: per-epoch report i is epoch i, the final report is epochs + 1 (so a
    finished trial's final report never enters another's comparison at an epoch, and ASHA's max_t comes after it).
    The median rule compares a trial from epoch `grace_period` on, once `startup_trials` other trials have reached
    that epoch; it never pauses a trial to let waiting ones run (min_time_slice=inf): a trial keeps no checkpoint."""
    from ray import tune

    from sslsteal.specs.attack import AttackSpec

    pruner = plan.optimize.pruner
    if pruner.name == "none":
        return tune.schedulers.FIFOScheduler()
    if pruner.name == "median":
        return tune.schedulers.MedianStoppingRule(
            time_attr="training_iteration",
            metric=MONITOR,
            mode="max",
            grace_period=pruner.grace_period,
            min_samples_required=pruner.startup_trials,
            min_time_slice=math.inf,
        )
    epochs = [int(e) for e in plan.sweep.values("attack", "epochs")] or [AttackSpec.model_fields["epochs"].default]
    return tune.schedulers.ASHAScheduler(
        time_attr="training_iteration",
        metric=MONITOR,
        mode="max",
        max_t=max(epochs) + 1,
        grace_period=pruner.grace_period,
        reduction_factor=pruner.reduction_factor,
    )


# --- studies in the Optuna storage --------------------------------------------------------------------------------


def open_storage(url: str) -> Any:
    """An Optuna RDBStorage (tables created on first use; a SQLite file's folder is created)."""
    import optuna

    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.RDBStorage(url)


def load_studies(plan: OptimizePlan, storage: Any) -> dict[int, tuple[Any, int]]:
    """Create or load the study of every budget: {budget: (study, trials it held)}. A stored study made from a
    different sweep (attack/defense/evaluate, objective, direction) or budget is refused before anything runs."""
    import optuna

    out = {}
    for budget in plan.optimize.budgets:
        name = plan.study_name(budget)
        study = optuna.create_study(storage=storage, study_name=name, direction=plan.optimize.resolved_direction, load_if_exists=True)
        _refuse_mismatch(plan, study, {"sslsteal.fingerprint": plan.fingerprint(), "sslsteal.budget": budget})
        if study.direction.name.lower() != plan.optimize.resolved_direction:
            _refuse_mismatch(plan, study, {"direction": plan.optimize.resolved_direction})
        out[budget] = (study, len(study.trials))
    return out


def _refuse_mismatch(plan: OptimizePlan, study: Any, wanted: dict[str, Any]) -> None:
    stored = study.user_attrs
    differ = [k.removeprefix("sslsteal.") for k, v in wanted.items() if k == "direction" or (k in stored and stored[k] != v)]
    if differ:
        raise ConfigError(
            [f"optimize: study {study.study_name} in {mask_url(plan.optimize.storage_url())} was made with a different "
             f"{', '.join(differ)}; rename the sweep or use another optimize.storage to start afresh"],
            plan.sweep.source,
        )  # fmt: skip


def prepare_study(plan: OptimizePlan, study: Any, budget: int, victim_key: str) -> None:
    """Refuse a study made against another victim; record what the study was made from; mark trials an interrupted
    invocation left RUNNING as failed (one driver per study at a time); enqueue the `cover` points not tried yet."""
    from optuna.trial import TrialState

    wanted = {"sslsteal.fingerprint": plan.fingerprint(), "sslsteal.victim": victim_key, "sslsteal.budget": budget}
    _refuse_mismatch(plan, study, wanted)
    for key, value in wanted.items():
        if study.user_attrs.get(key) != value:
            study.set_user_attr(key, value)
    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for t in stale:
        study.tell(t.number, state=TrialState.FAIL)
    if stale:
        log.warning("study %s: %d trials left running by an interrupted invocation marked failed", study.study_name, len(stale))
    live = [t for t in study.get_trials(deepcopy=False) if t.state != TrialState.FAIL]
    for point in cover_points(plan):
        if not any(all(t.system_attrs.get("fixed_params", t.params).get(k) == v for k, v in point.items()) for t in live):
            study.enqueue_trial(point)


def finished_trials(study: Any) -> list[Any]:
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))


# --- the summary table --------------------------------------------------------------------------------------------


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


@dataclass
class OptimizeResult:
    """What `run_optimize` leaves: one summary per study, the table files and whether it ran to the end."""

    rows: list[StudySummary]
    markdown: str
    files: list[Path]
    interrupted: bool
    first_downstream: str


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


# --- the run ------------------------------------------------------------------------------------------------------


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

    from sslsteal.sweep import Driver, close_trial_runs
    from sslsteal.tracking import PARENT_RUN_ID

    if not progress:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec, o = plan.sweep.spec, plan.optimize
    url = o.storage_url()
    shown = mask_url(url)
    ostorage = open_storage(url)
    studies = load_studies(plan, ostorage)  # a mismatched study is refused before Ray starts
    root = Path(storage or "~/ray_results").expanduser().resolve()
    folder = Path(output) if output else root / f"{spec.name}-optimize"
    driver = Driver.start(plan.sweep, address=address, tracking_uri=tracking_uri)
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
