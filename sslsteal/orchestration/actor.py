"""The victim service as a named, restartable, threaded Ray actor, and the attacker's `query` function over it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

import ray
import torch

from sslsteal.specs.victim import ServiceSpec
from sslsteal.victim import pow as hashcash
from sslsteal.victim.service import VictimService


class ServedVictim(VictimService):
    """The service as Ray runs it: `info` also says which node and GPUs Ray gave the actor."""

    def info(self) -> dict[str, Any]:
        return super().info() | {"node_id": ray.get_runtime_context().get_node_id(), "gpu_ids": [str(g) for g in ray.get_gpu_ids()]}


def cluster_gpus(share: float | Literal["auto"]) -> float:
    """GPUs to request: `share` itself, or for "auto" 1 when the Ray cluster has any GPU and 0 otherwise."""
    if share != "auto":
        return float(share)
    return 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0


def create_service(checkpoint: str | Path | bytes | Any, spec: ServiceSpec, *, name: str = "victim", namespace: str | None = None, wait: bool = True) -> Any:
    """Start the named, restartable victim actor (on a GPU node when the cluster has one, unless `spec.num_gpus` says otherwise).

    Pass the checkpoint's bytes, or an ObjectRef of them (not a path), when the actor may land on another machine.
    `wait=False` returns while the actor is still constructing; the caller then gets its `info` to surface errors.
    """
    actor = ray.remote(ServedVictim).options(
        name=name,
        namespace=namespace,
        num_cpus=spec.num_cpus,
        num_gpus=cluster_gpus(spec.num_gpus),
        resources=spec.resources or None,
        max_restarts=-1,
        max_task_retries=3,
        max_concurrency=spec.max_concurrency,
    )
    source = str(checkpoint) if isinstance(checkpoint, (str, Path)) else checkpoint  # Ray resolves an ObjectRef argument
    handle: Any = actor.remote(source, spec.model_dump())
    if wait:
        ray.get(handle.info.remote())  # surface construction errors here, not in the first trial
    return handle


class RemoteQuery:
    """A `query(images) -> outputs` function over the actor for one account (solves proof of work when asked)."""

    def __init__(self, handle: Any, account: str, head: bool = False) -> None:
        self.handle = handle
        self.account = account
        self.head = head
        self.hashes = 0

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        array = images.numpy() if images.dtype == torch.uint8 else images.float().numpy()
        ref = ray.put(array)
        challenge = ray.get(self.handle.challenge.remote(self.account))
        proof = None
        if challenge is not None:
            nonce, tried = hashcash.solve(challenge)
            self.hashes += tried
            proof = (challenge, nonce)
        return torch.from_numpy(ray.get(self.handle.embed.remote(ref, self.account, self.head, proof)).copy())


def wait_until_serving(handle: Any, timeout: float = 300.0) -> dict[str, Any]:
    """Block until the actor answers `info` (after a restart), or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return ray.get(handle.info.remote(), timeout=max(1.0, deadline - time.monotonic()))
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            if time.monotonic() > deadline:
                raise TimeoutError("victim service did not come back") from None
