"""MLflow helpers: experiments, a parent run per sweep, one idempotent child run per trial, the victim's run.

Everything goes through an `MlflowClient` with explicit run ids (never the fluent API's global active run),
so trials in several processes can log at once. MLflow is imported only when a `Tracker` is built.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sslsteal.core.urls import absolute, sqlite_file
from sslsteal.orchestration.records import GIT_COMMIT, KIND, PARENT_KEY, PARENT_RUN_ID, SOURCE_DIRTY, SWEEP, TRIAL_KEY, VICTIM_KEY

if TYPE_CHECKING:
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient
    from mlflow.utils.async_logging.run_operations import RunOperations

DEFAULT_URI_ENV = "SSLSTEAL_TRACKING_URI"
MAX_PARAM_VALUE_LENGTH = 6000  # mlflow.utils.validation.MAX_PARAM_VAL_LENGTH in mlflow 3.17 (checked by the tests)
TERMINAL_STATUSES = ("FINISHED", "FAILED", "KILLED")


def default_tracking_uri() -> str:
    """$SSLSTEAL_TRACKING_URI, else $MLFLOW_TRACKING_URI, else a SQLite file in the working directory."""
    return os.environ.get(DEFAULT_URI_ENV) or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config -> MLflow params: dotted keys, str values (None -> "null"), cut to MLflow's length limit."""
    out: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = ("null" if value is None else str(value))[:MAX_PARAM_VALUE_LENGTH]
    return out


def _literal(value: str) -> str:
    """A quoted string for an MLflow filter; refuses quotes rather than guessing the filter grammar's escaping."""
    if "'" in value or '"' in value:
        raise ValueError(f"tracking keys may not contain quotes: {value!r}")
    return f"'{value}'"


def _where(tags: Mapping[str, str]) -> str:
    """An MLflow search filter matching every tag exactly."""
    return " and ".join(f"tags.`{key}` = {_literal(value)}" for key, value in tags.items())


@functools.cache
def source_commit() -> dict[str, str]:
    """Tags naming the git commit of the sslsteal source this process runs and whether it had uncommitted changes
    (read once per process); none when the package is not in a git checkout (an installed wheel)."""
    package = Path(__file__).resolve().parents[1]

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(package), *args], capture_output=True, text=True, check=True, timeout=30).stdout.strip()

    try:
        head = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".") != ""
    except (OSError, subprocess.SubprocessError):
        return {}
    return {GIT_COMMIT: head, SOURCE_DIRTY: str(dirty).lower()}


def open_results(uri: str, experiment: str) -> list[str]:
    """How to open an experiment's results: the `sslsteal dashboard` command, and MLflow's runs table of the
    experiment (a server's page, or `mlflow ui` on a local store and the page it then serves)."""
    from mlflow.tracking import MlflowClient

    uri = absolute(uri)
    found = MlflowClient(tracking_uri=uri).get_experiment_by_name(experiment)
    page = f"#/experiments/{found.experiment_id}/runs" if found is not None else ""
    dashboard = f"sslsteal dashboard --experiment {shlex.quote(experiment)} --tracking-uri {shlex.quote(uri)}"
    if uri.startswith(("http://", "https://")):
        return [dashboard, f"{uri.rstrip('/')}/{page}"]
    return [dashboard, f"mlflow ui --backend-store-uri {shlex.quote(uri)}  then  http://127.0.0.1:5000/{page}"]


class Tracker:
    """Thin wrapper over MlflowClient for one tracking URI."""

    def __init__(self, uri: str | None = None) -> None:
        from mlflow.tracking import MlflowClient

        self.uri = absolute(uri or default_tracking_uri())
        self.client: MlflowClient = MlflowClient(tracking_uri=self.uri)

    def experiment(self, name: str) -> str:
        """The id of experiment `name`, created (or restored from deletion) if needed; safe when processes race."""
        from mlflow.exceptions import MlflowException

        found = self.client.get_experiment_by_name(name)
        if found is None:
            try:
                return self.client.create_experiment(name, artifact_location=self._artifact_location(name))
            except MlflowException as err:
                if err.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                found = self.client.get_experiment_by_name(name)
                if found is None:
                    raise
        if found.lifecycle_stage == "deleted":
            self.client.restore_experiment(found.experiment_id)
        return found.experiment_id

    def start_parent(
        self,
        experiment: str,
        name: str,
        kind: str,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        key: str | None = None,
    ) -> str:
        """A RUNNING parent run (a sweep or study); with `key`, the existing parent of that key is reused (resume)."""
        experiment_id = self.experiment(experiment)
        identity = {KIND: kind, SWEEP: experiment} | ({PARENT_KEY: key} if key is not None else {})
        run = self.client.create_run(experiment_id, tags=dict(identity), run_name=name) if key is None else self._find_or_create(experiment_id, identity, name)
        self._resume(run, name, params, tags)
        return run.info.run_id

    def child(self, parent_id: str, key: str, name: str, params: Mapping[str, Any] | None = None, tags: Mapping[str, str] | None = None) -> str:
        """The RUNNING child run of `parent_id` for trial `key`: reused whatever its status, so a resumed sweep adds no duplicate."""
        parent = self.client.get_run(parent_id)
        sweep = parent.data.tags.get(SWEEP) or self.client.get_experiment(parent.info.experiment_id).name
        identity = {PARENT_RUN_ID: parent_id, TRIAL_KEY: key}
        run = self._find_or_create(parent.info.experiment_id, identity, name, extra={KIND: "trial", SWEEP: sweep})
        self._resume(run, name, params, tags)
        return run.info.run_id

    def find_child(self, parent_id: str, key: str) -> Run | None:
        """The child run of `parent_id` for trial `key`, if one was created."""
        experiment_id = self.client.get_run(parent_id).info.experiment_id
        found = self._search(experiment_id, _where({PARENT_RUN_ID: parent_id, TRIAL_KEY: key}))
        return found[0] if found else None

    def log_metrics(self, run_id: str, metrics: Mapping[str, float | None], step: int | None = None, *, synchronous: bool = True) -> RunOperations | None:
        """Log metrics at `step` (0 when None); None values are dropped, NaN and inf kept as MLflow allows. With
        `synchronous=False` they go through MLflow's asynchronous logging and this returns at once: `.wait()` on the
        RunOperations it returns (None when there was nothing to log) blocks until they are stored, or raises."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(key, float(value), now, step or 0) for key, value in metrics.items() if value is not None]
        return self.client.log_batch(run_id, metrics=batch, synchronous=synchronous)  # MLflow splits it into requests

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        """Set (or overwrite) tags on a run, in as few requests as MLflow's batch limit allows."""
        from mlflow.entities import RunTag

        self.client.log_batch(run_id, tags=[RunTag(key, str(value)) for key, value in tags.items()], synchronous=True)

    def log_dict(self, run_id: str, data: Mapping[str, Any], artifact_file: str) -> None:
        """Store `data` as a JSON or YAML artifact (by the file's extension), e.g. the trial's config."""
        self.client.log_dict(run_id, dict(data), artifact_file)

    def log_artifact(self, run_id: str, path: str | Path, artifact_path: str | None = None) -> None:
        """Upload a local file or folder to the run's artifacts (over HTTP when the URI is a server)."""
        self.client.log_artifact(run_id, str(path), artifact_path)

    def finish(self, run_id: str, status: str = "FINISHED") -> None:
        """End the run in a terminal status (setup_mlflow and Tune leave runs RUNNING otherwise)."""
        if status not in TERMINAL_STATUSES:
            raise ValueError(f"status must be one of {TERMINAL_STATUSES}, got {status!r}")
        self.client.set_terminated(run_id, status)

    @contextmanager
    def killed_if_raised(self, run_id: str) -> Iterator[None]:
        """End run `run_id` KILLED when the block raises (an interrupted or failed sweep or study), then re-raise."""
        try:
            yield
        except BaseException:
            self.finish(run_id, "KILLED")
            raise

    def victim_run(
        self, experiment: str, victim_key: str, params: Mapping[str, Any], metrics: Mapping[str, float | None], checkpoint: str | Path | None
    ) -> str:
        """The victim's training run, logged once per experiment: a FINISHED run of this key is returned untouched."""
        identity = {KIND: "victim", VICTIM_KEY: victim_key}
        run = self._find_or_create(self.experiment(experiment), identity, f"victim-{victim_key}", extra={SWEEP: experiment})
        run_id = run.info.run_id
        if run.info.status != "FINISHED":
            self.set_tags(run_id, source_commit())
            self._log_params(run_id, params)
            self.log_metrics(run_id, metrics)
            if checkpoint is not None:
                self.log_artifact(run_id, checkpoint, "checkpoint")
            self.finish(run_id)
        return run_id

    def children(self, parent_id: str) -> list[Run]:
        """Every (non-deleted) child run of `parent_id`, oldest first."""
        experiment_id = self.client.get_run(parent_id).info.experiment_id
        return self._search(experiment_id, _where({PARENT_RUN_ID: parent_id}))

    def _artifact_location(self, name: str) -> str | None:
        """For SQLite, artifacts beside the database file (MLflow's default is ./mlruns of whichever cwd creates it)."""
        database = sqlite_file(self.uri)
        if database is None:
            return None
        slug = re.sub(r"[^A-Za-z0-9._-]", "_", name)
        return (database.absolute().parent / "mlartifacts" / slug).as_uri()

    def _search(self, experiment_id: str, where: str) -> list[Run]:
        """All active runs matching `where`, oldest first."""
        runs: list[Run] = []
        token = None
        while True:
            page = self.client.search_runs([experiment_id], where, page_token=token)
            runs.extend(page)
            token = page.token
            if not token:
                return sorted(runs, key=lambda run: (run.info.start_time, run.info.run_id))

    def _find_or_create(self, experiment_id: str, identity: Mapping[str, str], name: str, extra: Mapping[str, str] | None = None) -> Run:
        """The oldest run tagged with `identity`, created if there is none (one writer per identity at a time)."""
        existing = self._search(experiment_id, _where(identity))
        return existing[0] if existing else self.client.create_run(experiment_id, tags=dict(identity) | dict(extra or {}), run_name=name)

    def _resume(self, run: Run, name: str, params: Mapping[str, Any] | None, tags: Mapping[str, str] | None) -> None:
        """Mark `run` RUNNING under `name`, set `tags` and log the flattened `params` it lacks."""
        self.client.update_run(run.info.run_id, status="RUNNING", name=name)
        self.set_tags(run.info.run_id, source_commit() | dict(tags or {}))
        self._log_params(run.info.run_id, params or {})

    def _log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        """Log flattened `params` the run lacks; ones already logged with the same value are skipped, a changed value raises."""
        from mlflow.entities import Param

        logged = self.client.get_run(run_id).data.params
        flat = flatten(params)
        changed = sorted(key for key, value in flat.items() if key in logged and logged[key] != value)
        if changed:
            raise ValueError(f"run {run_id} already has different values for params {changed}: MLflow params are immutable")
        self.client.log_batch(run_id, params=[Param(key, value) for key, value in flat.items() if key not in logged], synchronous=True)
