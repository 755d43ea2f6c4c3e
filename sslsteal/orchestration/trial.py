"""One sweep trial: one attacker account on the shared victim actor that steals within its budget, is evaluated and
tested for ownership, and reports to Tune and MLflow (one child run per trial)."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sslsteal.specs.sweep import BulkInference


@dataclass(frozen=True)
class SweepContext:
    """What every trial needs from the driver: object-store refs of the victim, references and datasets, MLflow ids."""

    sweep: str
    namespace: str
    tracking_uri: str
    parent_run: str
    data_root: str | None
    cpus: float
    victim: Any
    references: list[Any] = field(default_factory=list)
    datasets: dict[str, Any] = field(default_factory=dict)
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)
    """Victim and random-floor accuracies measured by the driver, per `baseline_key(pool, stolen architecture)`."""
    bulk: BulkInference | None = None
    """`run.bulk_inference` when the trials embed a split that large (their pools are reserved with them), else None."""


def baseline_key(pool: Any, encoder: str) -> str:
    """Which baselines a trial compares with: they depend on the query pool (removed from the test set) and the stolen architecture."""
    return f"{pool}|{encoder}"


def resolved_params(spec: Any, defense: dict[str, Any]) -> dict[str, str]:
    """The trial's whole resolved configuration (defaults included) as flat MLflow params."""
    from sslsteal.orchestration.tracking import flatten
    from sslsteal.victim.defenses import build_defense

    options = build_defense(defense).params.model_dump(mode="json")
    tree = {
        "attack": spec.attack.model_dump(mode="json"),
        "evaluate": spec.evaluate.model_dump(mode="json"),
        "defense": {"name": defense.get("name", "none"), **options},
    }
    return flatten(tree)


def trial_name(config: dict[str, Any]) -> str:
    """A readable run name: method, loss, budget, query pool, defense and its options."""
    from sslsteal.specs.attack import AttackSpec

    a, d = config["attack"], config["defense"]
    defense = d.get("name", "none")
    extras = ",".join(f"{k}={v}" for k, v in sorted(d.items()) if k != "name")
    pool = a.get("query_data", AttackSpec.model_fields["query_data"].default)
    return f"{a.get('method', 'direct')}-{a.get('loss', 'infonce')}-q{a['queries']}-{pool}-{defense}{'(' + extras + ')' if extras else ''}"


_STATES: dict[str, dict[str, Any]] = {}
"""Checkpoint states this worker process has deserialised, by object-store id: with Tune reusing trial workers, each
victim or reference checkpoint is read once per worker, while every trial still builds its own modules from it."""


def worker_victim(ref: Any, device: Any) -> Any:
    """A fresh victim (or reference) built from the checkpoint at `ref`, deserialised once per worker process."""
    import ray

    from sslsteal.victim.checkpoint import read_state, victim_from_state

    key = ref.hex()
    if key not in _STATES:
        _STATES[key] = read_state(ray.get(ref))
    return victim_from_state(_STATES[key]).to(device)


def trial(config: dict[str, Any], context: SweepContext) -> None:
    """One attacker: a fresh account per attempt, steal within its budget, evaluate, test ownership, log, report."""
    import ray
    from ray import tune

    from sslsteal.core.device import select_device, set_threads
    from sslsteal.core.seeding import derive_seed
    from sslsteal.evaluation.probe import embed_in_bulk, holdout_task, knn_accuracy
    from sslsteal.orchestration import batch_inference
    from sslsteal.orchestration.actor import RemoteQuery
    from sslsteal.orchestration.ray_data import install_datasets
    from sslsteal.orchestration.tracking import Tracker
    from sslsteal.pipeline.steal import legit_metrics, legit_queries, steal_and_evaluate
    from sslsteal.pipeline.suspect import save_stolen
    from sslsteal.specs.steal import StealSpec

    set_threads(context.cpus)
    device = select_device()
    install_datasets(context.datasets)
    route = None if context.bulk is None else batch_inference.BulkRoute(context.bulk)
    embed_in_bulk(route, 0 if context.bulk is None else context.bulk.min_images)
    victim = worker_victim(context.victim, device)
    spec = StealSpec.model_validate({"victim": victim.spec.key, "attack": config["attack"], "evaluate": config["evaluate"], "data_root": context.data_root})
    trial_id = tune.get_context().get_trial_id()
    handle: Any = ray.get_actor("victim", namespace=context.namespace)
    account = ray.get(handle.open_fresh_account.remote(trial_id, spec.attack.queries, config["defense"]))["account"]
    tracker = Tracker(context.tracking_uri)
    where = {"sslsteal.account": account, "sslsteal.node_id": ray.get_runtime_context().get_node_id(), "sslsteal.pid": str(os.getpid())}
    run_id = tracker.child(context.parent_run, key=trial_id, name=trial_name(config), params=resolved_params(spec, config["defense"]), tags=where)
    tracker.log_dict(run_id, config, "trial_config.json")
    downstream = spec.evaluate.downstream or victim.spec.evaluate.downstream
    monitor = None
    if spec.evaluate.monitor_images:
        n = spec.evaluate.monitor_images
        monitor = holdout_task(downstream[0], n, max(1, n // 2), pool=spec.attack.pool, seed=derive_seed(0, "monitor"), root=context.data_root)
    last: dict[str, float] = {}
    epochs = tracker.background(run_id)  # MLflow round trips off the training path

    def on_epoch(epoch: int, record: dict[str, float], encoder: Any) -> None:
        last.update({"epoch": float(epoch), "train.loss": record["loss"]})
        if monitor is not None:
            last["val.knn_acc"] = knn_accuracy(encoder, monitor, device=device)
        epochs.log(last, step=epoch)
        if monitor is not None:  # intermediate results only when a scheduler can use them
            tune.report(dict(last))

    try:
        query = RemoteQuery(handle, account, head=spec.attack.method == "access_head")
        known = context.baselines.get(baseline_key(spec.attack.pool, spec.attack.encoder or victim.spec.encoder))
        references = [worker_victim(ref, device) for ref in context.references[: spec.evaluate.references]] if spec.evaluate.ownership else []
        try:
            stolen, metrics = steal_and_evaluate(spec, victim, query, device, references=references, baselines=known, on_epoch=on_epoch)
        finally:
            epochs.close()  # a reused worker keeps no thread of an earlier trial
        if spec.evaluate.save_encoder:
            with tempfile.TemporaryDirectory() as folder:
                path = save_stolen(stolen, Path(folder) / "stolen_encoder.pt", victim=victim.spec.key, attack=spec.attack.model_dump(mode="json"))
                tracker.log_artifact(run_id, path)
        stats = ray.get(handle.stats.remote(account))  # the server's own accounting
        metrics.update(
            {
                "queries_used": float(stats["queries_used"]),
                "defense.detected_fraction": stats["detections"] / max(1, stats["queries_used"]),
                "cost.pow_hashes": float(stats["pow_hashes"]),
            }
        )
        if route is not None:
            metrics["eval.bulk_images"] = float(route.images)  # embedded by Ray Data batch inference; the tag says where
            tracker.set_tags(run_id, {"sslsteal.bulk_nodes": ",".join(sorted(route.nodes))})
        if spec.evaluate.legit:
            legit = ray.get(handle.open_fresh_account.remote(f"{trial_id}-legit", legit_queries(victim, downstream), config["defense"]))["account"]
            metrics.update(legit_metrics(RemoteQuery(handle, legit), victim, downstream, context.data_root, spec.attack.pool))
        tracker.log_metrics(run_id, metrics)
    except (KeyboardInterrupt, SystemExit):  # Tune stopping the trial (pruning, an interrupted sweep)
        tracker.finish(run_id, "KILLED")
        raise
    except BaseException:
        tracker.finish(run_id, "FAILED")
        raise
    tracker.finish(run_id)
    first = downstream[0]
    headline = [k for k in ("queries_used", f"acc.{first}", f"gain_recovered.{first}", "fidelity.cosine") if k in metrics]
    verdicts = (".p_value", ".inconclusive", ".stolen")
    brief = {k: v for k, v in metrics.items() if not k.startswith("ownership.") or k.endswith(verdicts)}  # MLflow has the details
    tune.report({k: metrics[k] for k in headline} | last | brief)  # Tune's progress table shows the first four
