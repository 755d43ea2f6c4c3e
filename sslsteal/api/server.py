"""Starting the embedding API: the victim actor with one account per key (persisted, so a restart keeps budgets and
stored answers), then the Serve application on HOST:PORT. `sslsteal serve` calls `start_api` and waits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sslsteal.api.keys import Account

ACTOR = "victim"
APP = "sslsteal"


@dataclass
class Served:
    """A running API: its URL, the victim actor's handle, the victim's key, and the checkpoint in the object store
    (held here: Ray restarts the actor from it, so it must outlive the call that put it there)."""

    url: str
    actor: Any
    victim: str
    namespace: str
    checkpoint: Any


def default_state_dir(victim_key: str) -> Path:
    """Where a served victim keeps its accounts unless told: `$SSLSTEAL_CACHE/serve/<victim key>/accounts`."""
    from sslsteal.data.loaders import cache_dir

    return cache_dir() / "serve" / victim_key / "accounts"


def start_api(
    victim: Any,
    accounts: list[Account],
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    address: str | None = None,
    state_dir: Path | None = None,
    service: dict[str, Any] | None = None,
    replicas: int = 1,
    data_root: str | None = None,
) -> Served:
    """Serve `victim` (any victim reference: YAML, checkpoint, external encoder) to `accounts` over HTTP."""
    import ray
    from ray import serve

    from sslsteal.api.app import APIConfig, EmbeddingAPI
    from sslsteal.orchestration.actor import create_service
    from sslsteal.pipeline.steal import resolve_victim
    from sslsteal.specs.victim import ServiceSpec

    loaded = resolve_victim(victim, data_root=data_root)  # a victim YAML not trained yet is trained here first
    checkpoint, key = loaded.path, loaded.spec.key
    assert checkpoint is not None
    namespace = f"sslsteal-serve-{key}"
    settings = ServiceSpec.model_validate({**(service or {}), "state_dir": str(state_dir or default_state_dir(key))})
    if not ray.is_initialized():
        ray.init(address=address or "local", namespace=namespace, include_dashboard=False, log_to_driver=False)
    stored = ray.put(Path(checkpoint).read_bytes())
    actor = create_service(stored, settings, name=ACTOR, namespace=namespace)
    ray.get([actor.open_account.remote(a.name, a.budget, a.defense) for a in accounts])  # kept as they were when restored
    serve.start(http_options={"host": host, "port": port})
    config = APIConfig(accounts=accounts, actor=ACTOR, namespace=namespace, max_batch=settings.max_batch, victim=key)
    deployment: Any = EmbeddingAPI  # a Serve Deployment once decorated
    serve.run(deployment.options(num_replicas=replicas).bind(config), name=APP, route_prefix="/")
    return Served(f"http://{host}:{port}", actor, key, namespace, stored)


def stop_api() -> None:
    """Shut the Serve application and proxies down (the actor goes with the driver)."""
    from ray import serve

    serve.shutdown()
