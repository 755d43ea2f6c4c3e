"""End to end: a small sweep on a real local Ray runtime, logged to a real MLflow server over HTTP, read back."""

from __future__ import annotations

from pathlib import Path

import pytest
import ray
import yaml
from conftest import REPO
from mlflow_server import mlflow_uri  # noqa: F401  (fixture)

from sslsteal.cli import main
from sslsteal.tracking import Tracker

pytestmark = pytest.mark.slow


def test_sweep_logs_one_child_per_trial(cifar_root: Path, tmp_path: Path, mlflow_uri: str) -> None:  # noqa: F811
    sweep = {
        "name": "e2e",
        "victim": str(REPO / "sweeps" / "victims" / "tiny.yaml"),
        "attack": {"loss": {"grid": ["mse", "softnn"]}, "queries": {"grid": [300, 600]}, "epochs": 2, "query_data": "cifar10:test"},
        "defense": {"name": "noise", "sigma": 0.1},
        "evaluate": {"ownership": ["watermark", "dataset_inference", "distance"], "ownership_images": 200, "legit": True, "save_encoder": True},
        "run": {"max_concurrent_trials": 2, "resources_per_trial": {"cpu": 1}, "data_root": str(cifar_root)},
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    try:
        assert main(["sweep", str(path), "--tracking-uri", mlflow_uri, "--storage", str(tmp_path / "tune"), "--quiet"]) == 0
    finally:
        ray.shutdown()
    tracker = Tracker(mlflow_uri)
    exp = tracker.client.get_experiment_by_name("e2e")
    parents = tracker.client.search_runs([exp.experiment_id], "tags.`sslsteal.kind` = 'sweep'")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = tracker.children(parents[0].info.run_id)
    assert len(children) == 4
    budgets = sorted(int(c.data.params["attack.queries"]) for c in children)
    assert budgets == [300, 300, 600, 600]
    for child in children:
        m = child.data.metrics
        assert child.info.status == "FINISHED"
        assert m["queries_used"] == float(child.data.params["attack.queries"])
        for key in ("acc.cifar10", "acc_ratio.cifar10", "gain_recovered.cifar10", "fidelity.cosine", "legit_acc.cifar10"):
            assert key in m, (key, sorted(m))
        for test in ("watermark", "dataset_inference", "distance"):
            assert 0.0 <= m[f"ownership.{test}.p_value"] <= 1.0
        assert 10.0 < m["acc.cifar10"] < 100.0 and 10.0 < m["legit_acc.cifar10"] < 100.0
        assert child.data.tags["sslsteal.account"] == f"{child.data.tags['sslsteal.trial_key']}.1"
        artifacts = {a.path for a in tracker.client.list_artifacts(child.info.run_id)}
        assert {"trial_config.json", "stolen_encoder.pt"} <= artifacts, artifacts
    victims = tracker.client.search_runs([exp.experiment_id], "tags.`sslsteal.kind` = 'victim'")
    assert len(victims) == 1
    assert parents[0].data.tags["sslsteal.victim_device"] == "cpu"
