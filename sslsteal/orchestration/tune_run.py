"""The Ray Tune run that `sslsteal sweep` and `sslsteal optimize` share: one Tuner set-up (trial workers reused, failed
trials retried, every trial's MLflow child run closed) and one fit that ends the parent run KILLED when interrupted."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ray.tune import ResultGrid, Tuner

    from sslsteal.orchestration.tracking import Tracker
    from sslsteal.specs.sweep import RunSettings


def new_tuner(
    trainable: Any,
    *,
    param_space: dict[str, Any],
    folder: Path,
    run: RunSettings,
    num_samples: int,
    tracker: Tracker,
    parent: str,
    progress: bool,
    search_alg: Any = None,
    scheduler: Any = None,
) -> Tuner:
    """A Tuner writing to Tune's experiment `folder`, with the sweep's concurrency and retries, whose trials log
    under MLflow run `parent`; `search_alg` and `scheduler` default to Tune's (the grid, FIFO)."""
    from ray import tune

    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            search_alg=search_alg,
            scheduler=scheduler,
            num_samples=num_samples,
            max_concurrent_trials=run.max_concurrent_trials,
            reuse_actors=True,  # one worker process per slot: imports and checkpoints loaded once, not per trial
        ),
        run_config=tune.RunConfig(
            name=folder.name,
            storage_path=str(folder.parent),
            failure_config=tune.FailureConfig(max_failures=run.max_failures),
            callbacks=[close_trial_runs(tracker.uri, parent)],
            verbose=1 if progress else 0,  # Ray 2.60's output engine ignores a ProgressReporter (and warns)
        ),
    )


def fit(tuner: Tuner, tracker: Tracker, parent: str) -> ResultGrid:
    """Run the trials; when the run is interrupted or fails, MLflow run `parent` ends KILLED before the error propagates."""
    with tracker.killed_if_raised(parent):
        results = tuner.fit()
    return results


def close_trial_runs(tracking_uri: str, parent: str) -> Any:
    """A Tune callback (driver side) that ends a trial's child run left RUNNING: KILLED when Tune stopped the trial
    early (a scheduler's pruning), FAILED when it failed for good; runs the trial finished itself are left alone."""
    from ray import tune

    from sslsteal.orchestration.tracking import Tracker

    class CloseTrialRuns(tune.Callback):
        def _close(self, trial: Any, status: str) -> None:
            tracker = Tracker(tracking_uri)
            run = tracker.find_child(parent, trial.trial_id)
            if run is not None and run.info.status == "RUNNING":
                tracker.finish(run.info.run_id, status)

        def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            self._close(trial, "KILLED")

        def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            self._close(trial, "FAILED")

    return CloseTrialRuns()
