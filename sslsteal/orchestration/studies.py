"""The Optuna studies of `sslsteal optimize` in their RDB storage: opened, checked against the plan, prepared, read."""

from __future__ import annotations

import logging
from typing import Any

from sslsteal.core.urls import masked, sqlite_file
from sslsteal.specs.base import ConfigError
from sslsteal.specs.optimize import OptimizePlan, cover_points

log = logging.getLogger(__name__)

COVER = "sslsteal.cover"
"""User attribute of a trial enqueued for a `cover` point: the point, so an interrupted attempt is enqueued again."""


def open_storage(url: str) -> Any:
    """An Optuna RDBStorage (tables created on first use; a SQLite file's folder is created)."""
    import optuna

    database = sqlite_file(url)
    if database is not None:
        database.absolute().parent.mkdir(parents=True, exist_ok=True)
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
            [f"optimize: study {study.study_name} in {masked(plan.optimize.storage_url())} was made with a different "
             f"{', '.join(differ)}; rename the sweep or use another optimize.storage to start afresh"],
            plan.sweep.source,
        )  # fmt: skip


def prepare_study(plan: OptimizePlan, study: Any, budget: int, victim_key: str) -> None:
    """Refuse a study made against another victim; record what the study was made from; mark trials an interrupted
    invocation left RUNNING as failed (one driver per study at a time) and enqueue again the cover points among
    them; enqueue the `cover` points the study never held."""
    from optuna.trial import TrialState

    wanted = {"sslsteal.fingerprint": plan.fingerprint(), "sslsteal.victim": victim_key, "sslsteal.budget": budget}
    _refuse_mismatch(plan, study, wanted)
    for key, value in wanted.items():
        if study.user_attrs.get(key) != value:
            study.set_user_attr(key, value)
    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for t in stale:
        study.tell(t.number, state=TrialState.FAIL)
        if COVER in t.user_attrs:  # skip_if_exists below would count the failed attempt as the point's trial
            study.enqueue_trial(t.user_attrs[COVER], user_attrs={COVER: t.user_attrs[COVER]})
    if stale:
        log.warning("study %s: %d trials left running by an interrupted invocation marked failed", study.study_name, len(stale))
    for point in cover_points(plan):  # Optuna skips a point an earlier trial was enqueued with, whatever its state
        study.enqueue_trial(point, user_attrs={COVER: point}, skip_if_exists=True)


def finished_trials(study: Any) -> list[Any]:
    """The study's trials that ended COMPLETE or PRUNED: the ones `optimize.trials_per_budget` counts."""
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
