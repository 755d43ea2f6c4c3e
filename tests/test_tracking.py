"""sslsteal.orchestration.tracking against a real MLflow server over HTTP (one per module) and against the default SQLite store."""

from __future__ import annotations

import json
import math
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import REPO

from sslsteal.orchestration.tracking import DEFAULT_URI_ENV, MAX_PARAM_VALUE_LENGTH, Tracker, default_tracking_uri, flatten, open_results, source_commit

CONFIG = {"attack": {"loss": "mse", "queries": 500, "lrs": [0.1, 0.01]}, "defense": {"name": "noise", "sigma": None}}


@pytest.fixture
def tracker(mlflow_uri: str) -> Tracker:
    return Tracker(mlflow_uri)


@pytest.fixture
def name(request: pytest.FixtureRequest) -> str:
    """An experiment name of this test's own, so tests sharing the server never see each other's runs."""
    return f"test-{request.node.name}"


def _in_threads(n: int, work: Callable[[], str]) -> list[str]:
    """Run `work` in `n` threads released together (like racing processes); return their results, re-raising their errors."""
    barrier = threading.Barrier(n)

    def go() -> str:
        barrier.wait()
        return work()

    with ThreadPoolExecutor(n) as pool:
        return [future.result() for future in [pool.submit(go) for _ in range(n)]]


def test_flatten() -> None:
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

    assert MAX_PARAM_VALUE_LENGTH == MAX_PARAM_VAL_LENGTH
    assert flatten(CONFIG) == {"attack.loss": "mse", "attack.queries": "500", "attack.lrs": "[0.1, 0.01]", "defense.name": "noise", "defense.sigma": "null"}
    assert flatten({"b": 1}, prefix="a.") == {"a.b": "1"}
    assert len(flatten({"long": "x" * 10_000})["long"]) == MAX_PARAM_VAL_LENGTH


def test_default_tracking_uri(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(DEFAULT_URI_ENV, raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert default_tracking_uri() == f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert default_tracking_uri() == "http://mlflow:5000"
    monkeypatch.setenv(DEFAULT_URI_ENV, "http://ours:5000")
    assert default_tracking_uri() == "http://ours:5000"


def test_experiment_created_once(tracker: Tracker, mlflow_uri: str, name: str) -> None:
    ids = _in_threads(2, lambda: Tracker(mlflow_uri).experiment(name))
    assert ids[0] == ids[1] == tracker.experiment(name) == tracker.experiment(name)
    assert [e.experiment_id for e in tracker.client.search_experiments(filter_string=f"name = '{name}'")] == [ids[0]]


def test_parent_with_children(tracker: Tracker, name: str) -> None:
    parent = tracker.start_parent(name, "sweep", "sweep", params={"run": {"seed": 0}}, tags={"owner": "tests"})
    for i in range(3):
        child = tracker.child(parent, f"trial-{i}", f"trial-{i}", params=CONFIG | {"index": i}, tags={"account": f"acct-{i}"})
        for step in range(2):
            tracker.log_metrics(child, {"acc.cifar10": 40.0 + i + step, "fidelity.cosine": math.nan, "skipped": None}, step=step)
        tracker.finish(child)
    tracker.finish(parent)

    parent_run = tracker.client.get_run(parent)
    assert (parent_run.info.status, parent_run.info.run_name, parent_run.data.params) == ("FINISHED", "sweep", {"run.seed": "0"})
    assert parent_run.data.tags["sslsteal.kind"] == "sweep" and parent_run.data.tags["sslsteal.sweep"] == name
    assert parent_run.data.tags["owner"] == "tests"
    made_by = source_commit()  # the commit of the source that made the run (none outside a git checkout)
    assert bool(made_by) == (REPO / ".git").exists()
    assert {key: parent_run.data.tags.get(key) for key in made_by} == made_by

    children = tracker.children(parent)
    assert [run.info.run_name for run in children] == ["trial-0", "trial-1", "trial-2"]
    for i, run in enumerate(children):
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == parent
        assert {key: run.data.tags.get(key) for key in made_by} == made_by
        assert (run.data.tags["sslsteal.kind"], run.data.tags["sslsteal.sweep"], run.data.tags["account"]) == ("trial", name, f"acct-{i}")
        assert run.data.params == flatten(CONFIG) | {"index": str(i)}
        assert "skipped" not in run.data.metrics and math.isnan(run.data.metrics["fidelity.cosine"])
        history = tracker.client.get_metric_history(run.info.run_id, "acc.cifar10")
        assert sorted((m.step, m.value) for m in history) == [(0, 40.0 + i), (1, 41.0 + i)]


def test_child_is_idempotent_by_key(tracker: Tracker, name: str) -> None:
    parent = tracker.start_parent(name, "sweep", "sweep")
    first = tracker.child(parent, "key-a", "trial-a", params=CONFIG)
    tracker.finish(first, "FAILED")
    again = tracker.child(parent, "key-a", "trial-a", params=CONFIG)  # a resumed sweep re-logs the same params
    assert again == first and tracker.client.get_run(first).info.status == "RUNNING"
    with pytest.raises(ValueError, match=r"attack\.loss"):
        tracker.child(parent, "key-a", "trial-a", params={"attack": {"loss": "infonce"}})
    second = tracker.child(parent, "key-b", "trial-b", params=CONFIG)
    assert [run.info.run_id for run in tracker.children(parent)] == [first, second]


def test_parent_with_key_is_reused(tracker: Tracker, name: str) -> None:
    parent = tracker.start_parent(name, "study", "study", key="sweep-file-hash")
    tracker.finish(parent, "KILLED")
    assert tracker.start_parent(name, "study", "study", key="sweep-file-hash") == parent
    assert tracker.client.get_run(parent).info.status == "RUNNING"
    assert tracker.start_parent(name, "study", "study") != parent
    with pytest.raises(ValueError, match="status"):
        tracker.finish(parent, "RUNNING")


def test_victim_run_logged_once(tracker: Tracker, name: str, tmp_path: Path) -> None:
    checkpoint = tmp_path / "checkpoint.pt"
    checkpoint.write_bytes(bytes(range(256)) * 64)
    victim = tracker.victim_run(name, "abc123", {"encoder": "small_cnn", "epochs": 1}, {"victim_acc.cifar10": 61.5}, checkpoint)
    assert tracker.victim_run(name, "abc123", {"encoder": "small_cnn", "epochs": 1}, {"victim_acc.cifar10": 61.5}, checkpoint) == victim

    run = tracker.client.get_run(victim)
    assert run.info.status == "FINISHED" and run.data.params == {"encoder": "small_cnn", "epochs": "1"}
    assert run.data.tags["sslsteal.kind"] == "victim" and run.data.tags["sslsteal.victim_key"] == "abc123"
    assert {key: run.data.tags.get(key) for key in source_commit()} == source_commit()
    assert len(tracker.client.get_metric_history(victim, "victim_acc.cifar10")) == 1
    downloaded = tracker.client.download_artifacts(victim, "checkpoint/checkpoint.pt", str(tmp_path / "down"))
    assert Path(downloaded).read_bytes() == checkpoint.read_bytes()


def test_log_dict(tracker: Tracker, name: str, tmp_path: Path) -> None:
    parent = tracker.start_parent(name, "sweep", "sweep")
    tracker.log_dict(parent, CONFIG, "config/trial.json")
    downloaded = tracker.client.download_artifacts(parent, "config/trial.json", str(tmp_path))
    assert json.loads(Path(downloaded).read_text()) == CONFIG


def test_source_commit_outside_a_checkout_is_empty_and_dirty_source_is_flagged(tmp_path: Path) -> None:
    """A copy of the package with a modified file in a fresh git repository: its commit, flagged dirty; no repository: no tags."""
    import shutil

    copy = tmp_path / "repo" / "sslsteal"
    shutil.copytree(REPO / "sslsteal", copy, ignore=shutil.ignore_patterns("__pycache__"))
    code = "import json, sslsteal.orchestration.tracking as t; print(json.dumps(t.source_commit()))"
    env = {**os.environ, "PYTHONPATH": str(copy.parent), "GIT_CEILING_DIRECTORIES": str(tmp_path)}

    def tags() -> dict[str, str]:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env, cwd=tmp_path).stdout
        return dict(json.loads(out))

    assert tags() == {}
    git = ["git", "-C", str(copy.parent), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    assert tags() == {"mlflow.source.git.commit": head, "sslsteal.source_dirty": "false"}
    (copy / "cli.py").write_text((copy / "cli.py").read_text() + "\n# changed\n")
    assert tags() == {"mlflow.source.git.commit": head, "sslsteal.source_dirty": "true"}


def test_default_sqlite_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(DEFAULT_URI_ENV, raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    tracker = Tracker()
    checkpoint = tmp_path / "victim.pt"
    checkpoint.write_bytes(b"weights")
    victim = tracker.victim_run("local", "k", {"epochs": 1}, {"victim_acc.synthetic": 50.0}, checkpoint)
    parent = tracker.start_parent("local", "sweep", "sweep")
    child = tracker.child(parent, "t0", "trial-0", params=CONFIG)
    tracker.log_metrics(child, {"queries_used": 500})
    tracker.finish(child)
    tracker.finish(parent)

    assert tracker.uri == f"sqlite:///{tmp_path / 'mlflow.db'}" and (tmp_path / "mlflow.db").is_file()
    assert [run.info.status for run in tracker.children(parent)] == ["FINISHED"]
    assert (tmp_path / "mlartifacts" / "local" / victim / "artifacts" / "checkpoint" / "victim.pt").read_bytes() == b"weights"
    dashboard, mlflow = open_results(tracker.uri, "local")  # what a finished sweep prints
    assert dashboard == f"sslsteal dashboard --experiment local --tracking-uri {tracker.uri}"
    experiment_id = tracker.client.get_experiment_by_name("local").experiment_id
    assert mlflow == f"mlflow ui --backend-store-uri {tracker.uri}  then  http://127.0.0.1:5000/#/experiments/{experiment_id}/runs"


def test_async_metrics_return_while_the_store_is_locked_and_are_all_stored_by_wait(tmp_path: Path) -> None:
    """Per-epoch metrics go through MLflow's asynchronous logging: logging returns while the SQLite store cannot be
    written (a synchronous write would wait for the lock, up to MLflow's 20 s busy timeout), and every epoch is
    stored once the returned operations are waited on."""
    database = tmp_path / "mlflow.db"
    tracker = Tracker(f"sqlite:///{database}")
    run = tracker.child(tracker.start_parent("async", "sweep", "sweep"), "trial", "trial")
    lock = sqlite3.connect(database, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")  # no other connection writes until this transaction ends
    try:
        started = time.monotonic()
        pending = [tracker.log_metrics(run, {"train.loss": 1.0 / (step + 1)}, step=step, synchronous=False) for step in range(50)]
        elapsed = time.monotonic() - started
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert elapsed < 5.0, elapsed
    for operations in pending:
        assert operations is not None
        operations.wait()
    history = tracker.client.get_metric_history(run, "train.loss")
    assert sorted((m.step, m.value) for m in history) == [(step, 1.0 / (step + 1)) for step in range(50)]


def test_async_metrics_raise_a_failed_request_on_wait(tmp_path: Path) -> None:
    from mlflow.exceptions import MlflowException

    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}")
    operations = tracker.log_metrics("0" * 32, {"train.loss": 1.0}, step=0, synchronous=False)  # no such run: returns anyway
    assert operations is not None
    with pytest.raises(MlflowException, match="0" * 32):
        operations.wait()


def test_batches_beyond_mlflow_request_limits_are_all_logged(tracker: Tracker, name: str) -> None:
    """More params, tags and metrics than one MLflow request may carry: MLflow's client splits them, nothing is lost."""
    from mlflow.utils.validation import MAX_METRICS_PER_BATCH, MAX_PARAMS_TAGS_PER_BATCH

    params = {f"p{i}": i for i in range(MAX_PARAMS_TAGS_PER_BATCH + 20)}
    tags = {f"t{i}": str(i) for i in range(MAX_PARAMS_TAGS_PER_BATCH + 20)}
    metrics = {f"m{i}": float(i) for i in range(MAX_METRICS_PER_BATCH + 20)}
    run = tracker.child(tracker.start_parent(name, "sweep", "sweep"), "trial", "trial", params=params)
    tracker.set_tags(run, tags)
    tracker.log_metrics(run, metrics)
    data = tracker.client.get_run(run).data
    assert data.params == {k: str(v) for k, v in params.items()}
    assert {k: data.tags.get(k) for k in tags} == tags and data.metrics == metrics


def test_killed_if_raised_ends_the_run_killed_only_when_the_block_raises(tracker: Tracker, name: str) -> None:
    parent = tracker.start_parent(name, "sweep", "sweep")
    with tracker.killed_if_raised(parent):
        pass
    assert tracker.client.get_run(parent).info.status == "RUNNING"
    with pytest.raises(KeyboardInterrupt), tracker.killed_if_raised(parent):
        raise KeyboardInterrupt
    assert tracker.client.get_run(parent).info.status == "KILLED"
