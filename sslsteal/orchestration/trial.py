"""One sweep trial: one attacker account on the shared victim actor that steals within its budget, is evaluated and
tested for ownership, and reports to Tune and MLflow (one child run per trial).

The trial runs in a Ray worker: torch, Ray and the stages are imported inside the steps that use them, so importing
this module (the driver does) stays cheap."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sslsteal.specs.attack import AttackSpec
from sslsteal.specs.methods import METHODS
from sslsteal.specs.steal import StealSpec

if TYPE_CHECKING:
    from mlflow.utils.async_logging.run_operations import RunOperations

    from sslsteal.orchestration.batch_inference import BulkRoute
    from sslsteal.orchestration.tracking import Tracker
    from sslsteal.specs.sweep import BulkInference
    from sslsteal.specs.victim import RemoteVictimSpec


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
    endpoint: RemoteVictimSpec | None = None
    """The HTTP endpoint the trials query instead of the victim actor (the sweep's `victim: {url: ...}`), else None."""


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
    """A readable run name: method, loss (none for a method with its own objective), budget, query pool, defense and
    its options (the spec's defaults where unset)."""
    a, d = config["attack"], config["defense"]
    method, loss, pool = (a.get(key, AttackSpec.model_fields[key].default) for key in ("method", "loss", "query_data"))
    trains = method if METHODS[method].own_objective else f"{method}-{loss}"
    extras = ",".join(f"{k}={v}" for k, v in sorted(d.items()) if k != "name")
    return f"{trains}-q{a['queries']}-{pool}-{d.get('name', 'none')}{'(' + extras + ')' if extras else ''}"


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

    from sslsteal.orchestration.actor import RemoteQuery
    from sslsteal.orchestration.tracking import Tracker
    from sslsteal.pipeline.steal import endpoint_query

    device, route = _set_up_worker(context)
    victim = worker_victim(context.victim, device)
    spec = StealSpec.model_validate({"victim": victim.spec.key, "attack": config["attack"], "evaluate": config["evaluate"], "data_root": context.data_root})
    downstream = spec.evaluate.downstream or victim.spec.evaluate.downstream
    trial_id = tune.get_context().get_trial_id()
    head = spec.attack.method == "access_head"
    endpoint = context.endpoint
    if endpoint is None:
        handle = ray.get_actor("victim", namespace=context.namespace)
        account = _open_account(handle, trial_id, spec.attack.queries, config["defense"])
    else:  # the key's one account on the endpoint; the attacker's own budget keeps the trial to its queries
        handle, account = None, f"{endpoint.url} ({endpoint.api_key_env})"
    tracker = Tracker(context.tracking_uri)
    run_id = _open_run(tracker, config, spec, context, trial_id=trial_id, account=account)
    with _ending(tracker, run_id):
        epochs = _Epochs(tracker, run_id, device, _monitor_task(spec, downstream[0], context.data_root))
        if endpoint is not None:
            query, knockoff = endpoint_query(endpoint, head), None
        else:
            query = RemoteQuery(handle, account, head=head)
            knockoff = _knockoff_query(handle, f"{trial_id}-knockoff", spec, defense=config["defense"])
        stolen, metrics = _steal(spec, victim, query, context, device, epochs, knockoff)
        if spec.evaluate.save_encoder:
            _save_encoder(tracker, run_id, stolen, spec, victim.spec.key)
        if endpoint is None:
            metrics |= _service_metrics(handle, account)
        if route is not None:  # embedded by Ray Data batch inference; the tag says where
            metrics["eval.bulk_images"] = float(route.images)
            tracker.set_tags(run_id, {"sslsteal.bulk_nodes": ",".join(sorted(route.nodes))})
        if spec.evaluate.legit:
            metrics |= _legit_metrics(handle, f"{trial_id}-legit", spec, victim, downstream, defense=config["defense"], data_root=context.data_root)
        tracker.log_metrics(run_id, metrics)
    tune.report(_final_report(metrics, epochs.last, downstream[0]))


def _set_up_worker(context: SweepContext) -> tuple[Any, BulkRoute | None]:
    """Threads and device for this trial, the sweep's datasets mapped from the object store, and the bulk-inference
    route when the trials embed splits that large; returns the device and the route (None without one)."""
    from sslsteal.core.device import select_device, set_threads
    from sslsteal.evaluation.probe import embed_in_bulk
    from sslsteal.orchestration.batch_inference import BulkRoute
    from sslsteal.orchestration.ray_data import install_datasets

    set_threads(context.cpus)
    device = select_device()
    install_datasets(context.datasets)
    route = None if context.bulk is None else BulkRoute(context.bulk)
    embed_in_bulk(route, 0 if context.bulk is None else context.bulk.min_images)
    return device, route


def _open_account(handle: Any, key: str, queries: int, defense: dict[str, Any]) -> str:
    """A fresh account of `queries` images on the victim actor: each attempt gets its own, so a retried trial starts
    with its whole budget."""
    import ray

    return str(ray.get(handle.open_fresh_account.remote(key, queries, defense))["account"])


def _open_run(tracker: Tracker, config: dict[str, Any], spec: StealSpec, context: SweepContext, *, trial_id: str, account: str) -> str:
    """The trial's MLflow child run (every attempt reuses it) with the resolved params, where it runs, and its config."""
    import ray

    where = {
        "sslsteal.account": account,
        "sslsteal.node_id": ray.get_runtime_context().get_node_id(),
        "sslsteal.pid": str(os.getpid()),
        "sslsteal.trial_cpus": f"{context.cpus:g}",
    }
    run_id = tracker.child(context.parent_run, key=trial_id, name=trial_name(config), params=resolved_params(spec, config["defense"]), tags=where)
    tracker.log_dict(run_id, config, "trial_config.json")
    return run_id


@contextmanager
def _ending(tracker: Tracker, run_id: str) -> Iterator[None]:
    """End the trial's run with the block: FINISHED, KILLED when Tune stops the trial (pruning, an interrupted sweep),
    FAILED on an error."""
    try:
        yield
    except (KeyboardInterrupt, SystemExit):
        tracker.finish(run_id, "KILLED")
        raise
    except BaseException:
        tracker.finish(run_id, "FAILED")
        raise
    tracker.finish(run_id)


def _monitor_task(spec: StealSpec, dataset: str, data_root: str | None) -> Any:
    """The held-out k-NN task (train split, outside the query pool) each epoch is scored on, or None when
    `evaluate.monitor_images` is 0: pruning never looks at the test split."""
    from sslsteal.core.seeding import derive_seed
    from sslsteal.evaluation.probe import holdout_task

    n = spec.evaluate.monitor_images
    return holdout_task(dataset, n, max(1, n // 2), pool=spec.attack.pool, seed=derive_seed(0, "monitor"), root=data_root) if n else None


@dataclass
class _Epochs:
    """The attack's per-epoch callback: the training loss and (with a monitor task) the k-NN accuracy go to MLflow
    through its asynchronous logging, so training never waits on a tracking round trip, and to Tune's scheduler."""

    tracker: Tracker
    run_id: str
    device: Any
    monitor: Any
    last: dict[str, float] = field(default_factory=dict)
    """The latest epoch's metrics (the final report repeats them)."""
    pending: list[RunOperations] = field(default_factory=list)

    def __call__(self, epoch: int, record: dict[str, float], encoder: Any) -> None:
        from ray import tune

        from sslsteal.evaluation.probe import knn_accuracy

        self.last.update({"epoch": float(epoch), "train.loss": record["loss"]})
        if self.monitor is not None:
            self.last["val.knn_acc"] = knn_accuracy(encoder, self.monitor, device=self.device)
        operations = self.tracker.log_metrics(self.run_id, self.last, step=epoch, synchronous=False)
        if operations is not None:
            self.pending.append(operations)
        if self.monitor is not None:  # intermediate results only when a scheduler can use them
            tune.report(dict(self.last))

    def wait(self) -> None:
        """Block until every epoch's metrics are stored (the run must hold them when it ends); raises MLflow's error."""
        pending, self.pending = self.pending, []
        for operations in pending:
            operations.wait()


def _knockoff_query(handle: Any, key: str, spec: StealSpec, *, defense: dict[str, Any]) -> Any:
    """The FGSM transfer's knockoff attacker (`evaluate.transfer`): an account of its own with the attacker's budget
    and defense, answering representations; None when no knockoff source runs."""
    from sslsteal.orchestration.actor import RemoteQuery

    transfer = spec.evaluate.transfer
    if transfer is None or "knockoff" not in transfer.sources:
        return None
    return RemoteQuery(handle, _open_account(handle, key, spec.attack.queries, defense))


def _steal(spec: StealSpec, victim: Any, query: Any, context: SweepContext, device: Any, epochs: _Epochs, knockoff: Any) -> tuple[Any, dict[str, float]]:
    """Steal through `query` and evaluate the copy against the driver's baselines and, when ownership tests run, the
    references (and the FGSM transfer, its knockoff through `knockoff`); returns the stolen encoder and its metrics,
    every epoch's metrics stored."""
    from sslsteal.pipeline.steal import steal_and_evaluate

    known = context.baselines.get(baseline_key(spec.attack.pool, spec.attack.encoder or victim.spec.encoder))
    references = [worker_victim(ref, device) for ref in context.references[: spec.evaluate.references]] if spec.evaluate.ownership else []
    try:
        return steal_and_evaluate(spec, victim, query, device, references=references, baselines=known, on_epoch=epochs, knockoff_query=knockoff)
    finally:
        epochs.wait()  # also on failure: a reused worker carries nothing of this trial into the next


def _save_encoder(tracker: Tracker, run_id: str, stolen: Any, spec: StealSpec, victim_key: str) -> None:
    """The stolen encoder as the run's artifact `stolen_encoder.pt`, loadable by `sslsteal verify` (evaluate.save_encoder)."""
    from sslsteal.pipeline.suspect import save_stolen

    with tempfile.TemporaryDirectory() as folder:
        path = save_stolen(stolen, Path(folder) / "stolen_encoder.pt", victim=victim_key, attack=spec.attack.model_dump(mode="json"))
        tracker.log_artifact(run_id, path)


def _service_metrics(handle: Any, account: str) -> dict[str, float]:
    """The victim service's own accounting of the account: queries answered, the fraction detected, proof-of-work hashes."""
    import ray

    stats = ray.get(handle.stats.remote(account))
    return {
        "queries_used": float(stats["queries_used"]),
        "defense.detected_fraction": stats["detections"] / max(1, stats["queries_used"]),
        "cost.pow_hashes": float(stats["pow_hashes"]),
    }


def _legit_metrics(
    handle: Any, key: str, spec: StealSpec, victim: Any, downstream: list[str], *, defense: dict[str, Any], data_root: str | None
) -> dict[str, float]:
    """`legit_acc.<ds>`: what a legitimate user's probe reaches through the same (defended) API, on an account of its own."""
    from sslsteal.orchestration.actor import RemoteQuery
    from sslsteal.pipeline.steal import legit_metrics, legit_queries

    account = _open_account(handle, key, legit_queries(victim, downstream), defense)
    return legit_metrics(RemoteQuery(handle, account), victim, downstream, data_root, spec.attack.pool)


def _final_report(metrics: dict[str, float], last: dict[str, float], first: str) -> dict[str, float]:
    """Tune's final result: the headline metrics first (its progress table shows the first four), the last epoch's,
    and the rest without the ownership tests' details (MLflow has them)."""
    headline = [k for k in ("queries_used", f"acc.{first}", f"gain_recovered.{first}", "fidelity.cosine") if k in metrics]
    verdicts = (".p_value", ".inconclusive", ".stolen")
    brief = {k: v for k, v in metrics.items() if not k.startswith("ownership.") or k.endswith(verdicts)}
    return {k: metrics[k] for k in headline} | last | brief
