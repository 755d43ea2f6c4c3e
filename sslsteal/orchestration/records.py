"""What the tracker writes and the dashboards read: the tags that name a run's role and identity, and one MLflow run
or one Optuna study as plain data (no MLflow or Optuna objects, so the dashboards import neither)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypedDict

KIND = "sslsteal.kind"
"""The tag naming a run's role: trial, sweep, victim, optimize or study."""
SWEEP, TRIAL_KEY, PARENT_KEY, VICTIM_KEY = "sslsteal.sweep", "sslsteal.trial_key", "sslsteal.parent_key", "sslsteal.victim_key"
PARENT_RUN_ID, RUN_NAME = "mlflow.parentRunId", "mlflow.runName"
GIT_COMMIT, SOURCE_DIRTY = "mlflow.source.git.commit", "sslsteal.source_dirty"
"""The commit of the sslsteal source that made a run (MLflow's own tag for it), and whether that source had
uncommitted changes: a figure regenerates only from a clean commit."""


@dataclass(frozen=True)
class RunRecord:
    """One run: its id, experiment, status, flat params, latest metric values, tags and start/end times (UTC)."""

    run_id: str
    experiment: str
    status: str
    params: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    start_time: datetime | None = None
    end_time: datetime | None = None

    @property
    def kind(self) -> str | None:
        """trial, sweep, victim, optimize or study; None for a run sslsteal did not create."""
        return self.tags.get(KIND)

    @property
    def name(self) -> str:
        return self.tags.get(RUN_NAME, self.run_id)


class BestTrial(TypedDict):
    """The best complete trial of a study."""

    number: int
    value: float
    loss: str | None
    params: dict[str, object]


class StudyRecord(TypedDict):
    """One Optuna study (one query budget) as a plain dict: trial counts by state, the best trial, the best value of
    each loss and Optuna's parameter importances."""

    experiment: str
    name: str
    budget: int | None
    objective: str
    direction: str
    states: dict[str, int]
    best: BestTrial | None
    best_per_loss: dict[str, float]
    importances: dict[str, float]
    error: str | None
