"""End to end: a small sweep on a real local Ray runtime, logged to a real MLflow server over HTTP, read back."""

from __future__ import annotations

from pathlib import Path

import pytest
import ray
import yaml
from conftest import REPO

from sslsteal.cli import main
from sslsteal.core.stats import mean_interval
from sslsteal.orchestration.tracking import Tracker

pytestmark = pytest.mark.slow


def test_sweep_logs_one_child_per_trial(cifar_root: Path, tmp_path: Path, mlflow_uri: str, capsys: pytest.CaptureFixture[str]) -> None:
    sweep = {
        "name": "e2e",
        "victim": str(REPO / "sweeps" / "victims" / "tiny.yaml"),
        "attack": {"loss": {"grid": ["mse", "softnn"]}, "queries": 300, "epochs": 2, "query_data": "cifar10:test[:8000]"},
        "defense": {"name": "noise", "sigma": 0.1},
        "evaluate": {
            "ownership": ["watermark", "dataset_inference", "distance"],
            "ownership_images": 200,
            "legit": True,
            "save_encoder": True,
            "transfer": {"epsilons": [0.1], "images": 200},
        },
        "run": {"seeds": [0, 1], "max_concurrent_trials": 2, "resources_per_trial": {"cpu": 1}, "data_root": str(cifar_root)},
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    try:
        assert main(["sweep", str(path), "--tracking-uri", mlflow_uri, "--storage", str(tmp_path / "tune"), "--quiet"]) == 0
    finally:
        ray.shutdown()
    out = capsys.readouterr().out
    tracker = Tracker(mlflow_uri)
    exp = tracker.client.get_experiment_by_name("e2e")
    parents = tracker.client.search_runs([exp.experiment_id], "tags.`sslsteal.kind` = 'sweep'")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = tracker.children(parents[0].info.run_id)
    assert len(children) == 4
    # two attacker seeds per configuration, each a real Tune dimension logged as a param
    assert sorted((c.data.params["attack.loss"], c.data.params["attack.seed"]) for c in children) == [
        ("mse", "0"),
        ("mse", "1"),
        ("softnn", "0"),
        ("softnn", "1"),
    ]
    for child in children:
        params = child.data.params
        # the resolved spec, defaults included, not only what the YAML set
        expected = {"attack.lr": "0.003", "attack.batch_size": "64", "attack.strategy": "once", "attack.augment": "weak", "evaluate.fidelity_images": "2000"}
        assert {k: params.get(k) for k in expected} == expected
        assert params["defense.name"] == "noise" and params["defense.sigma"] == "0.1" and "defense.mean" in params
        m = child.data.metrics
        assert child.info.status == "FINISHED"
        assert m["queries_used"] == 300.0 == m["queries.victim_forward"] and m["queries.source_images"] == 300.0  # both sides counted alike
        assert 0 < m["time.query_s"] < m["time.steal_s"] and m["time.attacker_s"] == pytest.approx(m["time.steal_s"] - m["time.query_s"])
        assert child.data.tags["sslsteal.trial_cpus"] == "1"
        for key in ("acc.cifar10", "acc_ratio.cifar10", "gain_recovered.cifar10", "fidelity.cosine", "legit_acc.cifar10"):
            assert key in m, (key, sorted(m))
        # the tiny protocol scores 2,000 test images; the pool cifar10:test[:8000] leaves exactly those
        assert m["eval.test_images.cifar10"] == 2000.0 and m["acc.cifar10.lo"] < m["acc.cifar10"] < m["acc.cifar10.hi"]
        for test in ("watermark", "dataset_inference", "distance"):  # a verdict per test, its p-value only when decided
            key = f"ownership.{test}."
            assert m[key + "inconclusive"] in (0.0, 1.0) and m[key + "references"] == 3.0
            assert (key + "p_value" in m) == (m[key + "inconclusive"] == 0.0)
            if key + "p_value" in m:
                assert m[key + "stolen"] == float(m[key + "p_value"] < 0.05)
        assert 10.0 < m["acc.cifar10"] < 100.0 and 10.0 < m["legit_acc.cifar10"] < 100.0
        # FGSM transfer: the knockoff paid the attacker's budget on an account of its own (the attacker's stays at 300)
        assert m["transfer.knockoff.queries_used"] == 300.0
        for source in ("stolen", "knockoff", "random"):
            assert 0 < m[f"transfer.fgsm.{source}.images"] <= 200 and 0.0 <= m[f"transfer.fgsm.{source}.0.1"] <= 1.0
        assert child.data.tags["sslsteal.account"] == f"{child.data.tags['sslsteal.trial_key']}.1"
        artifacts = {a.path for a in tracker.client.list_artifacts(child.info.run_id)}
        assert {"trial_config.json", "stolen_encoder.pt"} <= artifacts, artifacts
        # every epoch's training loss reached MLflow through its asynchronous logging
        assert [m.step for m in tracker.client.get_metric_history(child.info.run_id, "train.loss")] == [1, 2]
    # Tune reused the trial workers: 4 trials, 2 at a time, ran in fewer than 4 processes
    assert len({c.data.tags["sslsteal.pid"] for c in children}) < 4
    victims = tracker.client.search_runs([exp.experiment_id], "tags.`sslsteal.kind` = 'victim'")
    assert len(victims) == 1
    assert parents[0].data.tags["sslsteal.victim_device"] == "cpu"
    # the closing summary: one line per loss, its two seeds as mean [95% t-interval], recomputed here
    for loss in ("mse", "softnn"):
        accs = [c.data.metrics["acc.cifar10"] for c in children if c.data.params["attack.loss"] == loss]
        est = mean_interval(accs)
        assert est is not None and est.lo is not None and est.hi is not None
        mean, lo, hi = est.mean, est.lo, est.hi
        line = next(line for line in out.splitlines() if line.startswith(f"direct-{loss}-q300-cifar10:test[:8000]-noise"))
        assert f"{mean:.2f} [{lo:.2f}, {hi:.2f}]" in line and line.split()[1] == "2", line
    # and how to open them: the dashboards of this experiment, and the server's runs table of it (no `mlflow ui` needed)
    assert f"sslsteal dashboard --experiment e2e --tracking-uri {mlflow_uri}" in out, out[-2000:]
    assert f"{mlflow_uri}/#/experiments/{exp.experiment_id}/runs" in out and "mlflow ui" not in out
