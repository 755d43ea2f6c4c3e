"""Run a sweep on Ray Tune: one shared victim actor, one attacker account per trial attempt, one MLflow child run per trial.

The driver resolves the victim (training it on the cluster when needed), shares its checkpoint, the references
encoder and the datasets through the object store, opens a parent MLflow run and starts the actor; each trial
steals through the actor, evaluates, runs the ownership tests and reports. `resume=True` continues the newest
interrupted run of the sweep with `Tuner.restore`, reusing its parent run and its trials' child runs.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sslsteal.orchestration.driver import Driver
from sslsteal.specs.sweep import SweepPlan

VICTIM_STATE = "victim-accounts"
"""The victim actor's account state, inside Tune's experiment folder: a restarted actor (or a resumed sweep) keeps every account."""
STATE_FILE = "sslsteal-sweep.json"
"""Written into Tune's experiment folder: which parent MLflow run a resumed sweep continues."""


def _latest_state(root: Path, name: str) -> Path | None:
    """The newest experiment folder of sweep `name` under `root` that this tool wrote."""
    found = sorted(root.glob(f"{name}-*/{STATE_FILE}"), key=lambda p: p.parent.name)
    return found[-1].parent if found else None


@dataclass(frozen=True)
class SweepResult:
    """Tune's ResultGrid and the dataset whose figures the closing summary shows (the sweep's first downstream one)."""

    grid: Any
    first_downstream: str


def run_sweep(
    plan: SweepPlan,
    *,
    address: str | None = None,
    tracking_uri: str | None = None,
    storage: str | None = None,
    resume: bool = False,
    progress: bool = True,
) -> SweepResult:
    """Run one Tune trial per configuration against the shared victim."""
    from ray import tune

    from sslsteal.orchestration.tune_run import fit, new_tuner
    from sslsteal.orchestration.tune_space import to_param_space
    from sslsteal.specs.base import ConfigError

    spec = plan.spec
    root = Path(storage or "~/ray_results").expanduser().resolve()
    previous = _latest_state(root, spec.name) if resume else None
    if resume and (previous is None or not tune.Tuner.can_restore(str(previous))):
        raise ConfigError([f"--resume: no interrupted run of sweep {spec.name!r} under {root}"], plan.source)
    if previous is not None:
        experiment = previous
        state = json.loads((previous / STATE_FILE).read_text())
    else:
        experiment = root / f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        state = {"parent_key": str(experiment), "sweep_file": plan.source}
    driver = Driver.start(plan, address=address, tracking_uri=tracking_uri, state_dir=experiment / VICTIM_STATE)
    tracker = driver.tracker
    try:
        parent = tracker.start_parent(
            spec.name,
            experiment.name,
            kind="sweep",
            params={"trials": plan.trials, "victim": driver.victim.spec.key},
            tags=driver.placement(),
            key=state["parent_key"],
        )
        experiment.mkdir(parents=True, exist_ok=True)
        (experiment / STATE_FILE).write_text(json.dumps(state | {"parent_run": parent}, indent=2))
        trainable = driver.trainable(parent)
        param_space = to_param_space(plan.tree, plan.spaces)
        if previous is not None:
            tuner = tune.Tuner.restore(str(experiment), trainable, resume_errored=True, param_space=param_space)
        else:
            tuner = new_tuner(
                trainable,
                param_space=param_space,
                folder=experiment,
                run=spec.run,
                num_samples=spec.run.num_samples,
                tracker=tracker,
                parent=parent,
                progress=progress,
            )
        results = fit(tuner, tracker, parent)
        first = driver.first_downstream()
    finally:
        driver.stop()
    done = completed(results)
    tracker.log_metrics(parent, {"trials.completed": float(done), "trials.failed": float(results.num_errors)})
    tracker.finish(parent, "FAILED" if results.num_errors else "FINISHED" if done == plan.trials else "KILLED")
    return SweepResult(results, first)


def completed(results: Any) -> int:
    """Trials of a ResultGrid that ran to their final report (an interrupted sweep has fewer than planned)."""
    return sum(r.error is None and "queries_used" in (r.metrics or {}) for r in results)
