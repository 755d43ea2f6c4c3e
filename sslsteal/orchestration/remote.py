"""Training an encoder on the Ray cluster, where the GPU is (datasets go through `ray_data`).

Training runs as a Ray task that asks for a GPU when the cluster has one (else the CPUs of the largest node);
its checkpoint comes back as bytes and is cached on the driver like any victim.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sslsteal.specs.victim import VictimSpec


def largest_node_cpus() -> float:
    """CPUs of the biggest live node: a task asking for more would never be scheduled."""
    import ray

    return max((node["Resources"].get("CPU", 0.0) for node in ray.nodes() if node["Alive"]), default=1.0)


def _train(spec: dict[str, Any], cpus: float) -> bytes:
    """Ray task body: train the encoder on whatever device Ray assigned and return its checkpoint bytes."""
    from sslsteal.core.device import select_device, set_threads
    from sslsteal.victim.checkpoint import victim_bytes
    from sslsteal.victim.train import train_victim

    set_threads(cpus)
    return victim_bytes(train_victim(VictimSpec.model_validate(spec), device=select_device(), progress=True))


def train_on_cluster(spec: VictimSpec) -> Path:
    """Train `spec` as a Ray task (one GPU when the cluster has any) and cache the checkpoint on this machine."""
    import ray

    from sslsteal.orchestration.actor import cluster_gpus
    from sslsteal.victim.checkpoint import save_victim, victims_dir

    gpus = cluster_gpus("auto")
    cpus = 1.0 if gpus else max(1.0, largest_node_cpus())
    task = ray.remote(_train).options(num_cpus=cpus, num_gpus=gpus, name=f"train {spec.key}")
    return save_victim(ray.get(task.remote(spec.model_dump(), cpus)), victims_dir() / spec.key)
