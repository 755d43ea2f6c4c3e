"""Optuna driving Ray Tune through public APIs only: a `Searcher` that asks and tells one study, and the Tune
scheduler (ASHA or the median stopping rule) that prunes on the per-epoch k-NN accuracy."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

from sslsteal.specs.optimize import OptimizePlan

log = logging.getLogger(__name__)

MONITOR = "val.knn_acc"
"""The per-epoch metric trials report when evaluate.monitor_images > 0 (sslsteal.orchestration.trial): the schedulers prune on it."""
KEPT_METRICS = ("acc.", "val_acc.", "eval.", "acc_ratio.", "gain_recovered.", "victim_acc.", "random_acc.", "fidelity.", "queries_used", "time.", MONITOR)
"""Final-report metrics stored on each Optuna trial (user attribute `metrics`), so the table needs only the storage."""


def make_searcher(plan: OptimizePlan, budget: int, objective: str, storage: Any, seed: int) -> Any:
    """The Tune searcher of the study of `budget`: the stored study (created when new) with the plan's seeded sampler."""
    import optuna

    o = plan.optimize
    sampler: optuna.samplers.BaseSampler
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
            """Tune checkpoints its searcher with the experiment: the live trials' numbers (the study is in its storage)."""
            live = {tune_id: trial.number for tune_id, trial in self.trials.items()}
            Path(checkpoint_path).write_text(json.dumps({"study": self.study.study_name, "live_trials": live}))

        def restore(self, checkpoint_path: str) -> None:
            """Studies continue from their storage, not from a Tune experiment: `sslsteal optimize` again resumes them."""
            raise NotImplementedError(f"study {self.study.study_name} continues from its Optuna storage: run `sslsteal optimize` again")

    return StudySearch()


def most_epochs(plan: OptimizePlan) -> int:
    """A bound on the epochs any trial of the plan trains (an epoch is at least one optimizer step)."""
    from sslsteal.specs.attack import AttackSpec

    fixed = [int(e) for e in plan.sweep.values("attack", "epochs")]
    epochs = fixed or [AttackSpec.model_fields["epochs"].default]
    epochs += [int(s) for s in plan.sweep.values("attack", "steps") if s]
    if not fixed:  # the default length: `epochs`, raised to `min_steps` steps
        epochs += [int(m) for m in plan.sweep.values("attack", "min_steps")] or [AttackSpec.model_fields["min_steps"].default]
    return max(epochs)


def make_scheduler(plan: OptimizePlan) -> Any:
    """The Tune scheduler that prunes on the per-epoch k-NN accuracy: ASHA, the median stopping rule, or FIFO (none).

    Both count time in `training_iteration`: per-epoch report i is epoch i, the final report is epochs + 1 (so a
    finished trial's final report never enters another's comparison at an epoch, and ASHA's max_t comes after it).
    The median rule compares a trial from epoch `grace_period` on, once `startup_trials` other trials have reached
    that epoch; it never pauses a trial to let waiting ones run (min_time_slice beyond any run): a trial keeps no checkpoint."""
    from ray import tune

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
            min_time_slice=sys.maxsize,  # never pause a trial to let another run: trials keep no checkpoint
        )
    return tune.schedulers.ASHAScheduler(
        time_attr="training_iteration",
        metric=MONITOR,
        mode="max",
        max_t=most_epochs(plan) + 1,
        grace_period=pruner.grace_period,
        reduction_factor=pruner.reduction_factor,
    )
