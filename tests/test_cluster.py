"""Multi-node: a CPU-only head and a worker that declares two (logical) GPUs and a custom resource, on this machine.

The sweep must put victim training and the shared victim actor on the GPU node (the actor also asks for the
custom resource), run its trials with their probes' train features embedded by Ray Data batch inference on the
GPU node (each pool actor asks for half a GPU), and log everything to an MLflow server over HTTP.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import ray
import yaml
from conftest import REPO
from ray.cluster_utils import Cluster

from sslsteal.orchestration.sweep import run_sweep
from sslsteal.orchestration.tracking import Tracker
from sslsteal.specs.sweep import plan_sweep
from sslsteal.victim.checkpoint import victims_dir

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster() -> Cluster:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "num_gpus": 0})
    cluster.add_node(num_cpus=1, num_gpus=2, resources={"victim_host": 1})
    cluster.wait_for_nodes()
    yield cluster
    ray.shutdown()
    cluster.shutdown()


def test_victim_on_the_gpu_node_trials_logged_over_http(cluster: Cluster, cifar_root: Path, tmp_path: Path, mlflow_uri: str) -> None:
    victim = yaml.safe_load((REPO / "sweeps" / "victims" / "tiny.yaml").read_text())
    victim.update({"name": "tiny-cluster", "train_images": 1024, "epochs": 1})  # not cached anywhere: trained on the cluster now
    sweep = {
        "name": "cluster",
        "victim": victim,
        "attack": {"loss": {"grid": ["mse", "softnn"]}, "queries": 300, "epochs": 2, "query_data": "cifar10:test[:8000]"},
        "service": {"resources": {"victim_host": 1}},
        "run": {
            "max_concurrent_trials": 2,
            "resources_per_trial": {"cpu": 1},
            "data_root": str(cifar_root),
            # the probe's 5,000 train images (tiny.yaml) reach the threshold; its 2,000 test images stay in-process
            "bulk_inference": {"min_images": 5000, "actors": 1, "cpu": 0.5, "gpu": 0.5},
        },
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    plan = plan_sweep(path)
    ray.init(address=cluster.address)
    nodes = {n["NodeID"]: n["Resources"] for n in ray.nodes() if n["Alive"]}
    gpu_node = next(node for node, res in nodes.items() if res.get("GPU"))

    results = run_sweep(plan, tracking_uri=mlflow_uri, storage=str(tmp_path / "tune"), progress=False).grid

    assert results.num_errors == 0
    assert (victims_dir() / plan.spec.victim.key / "checkpoint.pt").is_file()  # trained on the cluster, cached here
    tracker = Tracker(mlflow_uri)
    exp = tracker.client.get_experiment_by_name("cluster")
    [parent] = tracker.client.search_runs([exp.experiment_id], "tags.`sslsteal.kind` = 'sweep'")
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["sslsteal.victim_node_id"] == gpu_node
    assert parent.data.tags["sslsteal.victim_gpu_ids"] != ""  # Ray assigned it the (logical) GPU
    assert parent.data.tags["sslsteal.victim_device"] == "cpu"  # no real GPU here: the code falls back, unchanged
    children = tracker.children(parent.info.run_id)
    assert len(children) == 2
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.metrics["queries_used"] == 300.0
        assert child.data.tags["sslsteal.node_id"] in nodes
        assert "acc.cifar10" in child.data.metrics
        assert child.data.metrics["eval.bulk_images"] == 5000.0  # the probe's train features came from the pool
        assert child.data.tags["sslsteal.bulk_nodes"] == gpu_node  # which ran where the GPUs are, not beside the trial
