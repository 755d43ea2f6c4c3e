"""A sweep survives a killed trial process (FailureConfig retries it on a fresh account), a killed victim actor (Ray
restarts it with every account) and an interrupted driver (`--resume` continues it with Tuner.restore, adding no
duplicate MLflow runs). Real Ray, real MLflow server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO

from sslsteal.orchestration.tracking import Tracker

pytestmark = pytest.mark.slow


def _write_sweep(tmp_path: Path, cifar_root: Path, name: str, losses: list[str], epochs: int, concurrent: int) -> Path:
    sweep = {
        "name": name,
        "victim": str(REPO / "sweeps" / "victims" / "tiny.yaml"),
        "attack": {"loss": {"grid": losses}, "queries": 300, "epochs": epochs, "query_data": "cifar10:test[:8000]"},
        "run": {"max_concurrent_trials": concurrent, "resources_per_trial": {"cpu": 1}, "max_failures": 2, "data_root": str(cifar_root)},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path


def _sweep(path: Path, tmp_path: Path, uri: str, *extra: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "sslsteal.cli", "sweep", str(path), "--tracking-uri", uri, "--storage", str(tmp_path / "tune"), "--quiet", *extra]
    return subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _children(tracker: Tracker, sweep: str) -> tuple[list[Any], list[Any]]:
    exp = tracker.client.get_experiment_by_name(sweep)
    if exp is None:
        return [], []
    parents = tracker.client.search_runs([exp.experiment_id], "tags.`sslsteal.kind` = 'sweep'")
    return parents, [c for p in parents for c in tracker.children(p.info.run_id)]


def _wait_for(condition: Any, proc: subprocess.Popen[bytes], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        if proc.poll() is not None:
            pytest.fail(f"sweep exited ({proc.returncode}) before {what}:\n{proc.stdout.read().decode()[-3000:]}")
        time.sleep(0.5)
    proc.kill()
    pytest.fail(f"timed out waiting for {what}")


def test_killed_trial_is_retried_on_a_fresh_account(cifar_root: Path, tmp_path: Path, mlflow_uri: str) -> None:
    path = _write_sweep(tmp_path, cifar_root, "kill", ["mse", "softnn"], epochs=60, concurrent=2)
    tracker = Tracker(mlflow_uri)
    proc = _sweep(path, tmp_path, mlflow_uri)

    def training() -> Any:  # a child run that has logged an epoch: its trial process is mid-run
        _, children = _children(tracker, "kill")
        busy = [c for c in children if c.info.status == "RUNNING" and "train.loss" in c.data.metrics]
        return busy[0] if busy else None

    victim_run = _wait_for(training, proc, 600, "a trial to be training")
    pid = int(victim_run.data.tags["sslsteal.pid"])
    assert victim_run.data.tags["sslsteal.account"].endswith(".1")
    os.kill(pid, signal.SIGKILL)
    out = proc.communicate(timeout=900)[0].decode()
    assert proc.returncode == 0, out[-3000:]

    parents, children = _children(tracker, "kill")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 2, [c.info.run_name for c in children]  # the retry reused its trial's run
    retried = next(c for c in children if c.info.run_id == victim_run.info.run_id)
    assert retried.info.status == "FINISHED"
    assert retried.data.tags["sslsteal.account"].endswith(".2")  # a fresh account, not the half-spent one
    assert int(retried.data.tags["sslsteal.pid"]) != pid
    assert retried.data.metrics["queries_used"] == 300.0
    other = next(c for c in children if c.info.run_id != victim_run.info.run_id)
    assert other.data.tags["sslsteal.account"].endswith(".1")


def test_killed_victim_actor_costs_no_trial_its_work(cifar_root: Path, tmp_path: Path, mlflow_uri: str) -> None:
    """Ray restarts a killed victim actor; its accounts live in the experiment folder, so the running trials finish
    in their first attempt with the budget they had, and none is retried."""
    path = _write_sweep(tmp_path, cifar_root, "actor", ["mse", "softnn"], epochs=100, concurrent=2)
    tracker = Tracker(mlflow_uri)
    proc = _sweep(path, tmp_path, mlflow_uri)

    def training() -> Any:  # both trials have spent their budget and are training; their next call is `stats`
        parents, children = _children(tracker, "actor")
        busy = [c for c in children if c.info.status == "RUNNING" and "train.loss" in c.data.metrics]
        return parents[0] if parents and len(busy) == 2 else None

    parent = _wait_for(training, proc, 600, "both trials to be training")
    actor_pid = int(parent.data.tags["sslsteal.victim_pid"])
    os.kill(actor_pid, signal.SIGKILL)
    out = proc.communicate(timeout=900)[0].decode()
    assert proc.returncode == 0, out[-3000:]

    parents, children = _children(tracker, "actor")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 2
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.tags["sslsteal.account"].endswith(".1")  # the first attempt: no retry
        assert child.data.metrics["queries_used"] == 300.0  # the restarted actor kept the account's accounting
    assert any((tmp_path / "tune").glob("actor-*/victim-accounts/*.pkl"))
    with pytest.raises(ProcessLookupError):
        os.kill(actor_pid, 0)  # the actor really was killed (and restarted by Ray)


def test_interrupted_sweep_resumes_without_duplicate_runs(cifar_root: Path, tmp_path: Path, mlflow_uri: str) -> None:
    path = _write_sweep(tmp_path, cifar_root, "resume", ["mse", "softnn", "cosine"], epochs=40, concurrent=1)
    tracker = Tracker(mlflow_uri)
    proc = _sweep(path, tmp_path, mlflow_uri)

    def one_done_one_running() -> Any:
        _, children = _children(tracker, "resume")
        statuses = [c.info.status for c in children]
        return statuses.count("FINISHED") >= 1 and "RUNNING" in statuses

    _wait_for(one_done_one_running, proc, 600, "one finished and one running trial")
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=300)[0].decode()
    assert proc.returncode != 0, out[-3000:]  # interrupted, not completed
    parents, before = _children(tracker, "resume")
    assert len(parents) == 1 and parents[0].info.status == "KILLED"
    finished = {c.data.tags["sslsteal.trial_key"]: c for c in before if c.info.status == "FINISHED"}
    assert 1 <= len(finished) < 3

    resumed = _sweep(path, tmp_path, mlflow_uri, "--resume")
    out = resumed.communicate(timeout=900)[0].decode()
    assert resumed.returncode == 0, out[-3000:]
    parents, after = _children(tracker, "resume")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    keys = [c.data.tags["sslsteal.trial_key"] for c in after]
    assert len(after) == 3 and len(set(keys)) == 3
    for key, run in finished.items():  # finished trials were not run again
        again = next(c for c in after if c.data.tags["sslsteal.trial_key"] == key)
        assert again.info.run_id == run.info.run_id and again.info.end_time == run.info.end_time
        assert again.data.tags["sslsteal.account"] == run.data.tags["sslsteal.account"]
    assert all(c.info.status == "FINISHED" and c.data.metrics["queries_used"] == 300.0 for c in after)


def test_resume_without_an_interrupted_run_is_a_usage_error(tmp_path: Path) -> None:
    from sslsteal.cli import main

    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "never-ran", "victim": str(REPO / "sweeps" / "victims" / "tiny.yaml"), "attack": {"queries": 100}}))
    assert main(["sweep", str(path), "--resume", "--storage", str(tmp_path / "tune"), "--quiet"]) == 2
