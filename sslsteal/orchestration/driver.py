"""The driver's side of a sweep or study: Ray joined, the victim and its references resolved (trained on the cluster
when needed), baselines measured, checkpoints and datasets in the object store, the victim actor serving."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sslsteal.orchestration.trial import SweepContext, baseline_key, trial
from sslsteal.specs.sweep import BulkInference, SweepPlan


def _splits_needed(plan: SweepPlan, victim_spec: Any, ownership: bool) -> list[str]:
    """Every `name:split` the trials will load, so the driver can share each once."""
    from sslsteal.specs.datasets import parse_ref
    from sslsteal.specs.protocol import other_split

    queries = query_pools(plan)
    splits = [parse_ref(q).base for q in queries]
    fidelity = [parse_ref(v).base for v in plan.values("evaluate", "fidelity_data") if v]
    splits += fidelity or [other_split(q) for q in queries]
    for names in plan.values("evaluate", "downstream") or [None]:
        for ds in names or victim_spec.evaluate.downstream:
            splits += [f"{ds}:train", f"{ds}:test"]
    if ownership:
        splits += [victim_spec.data, other_split(victim_spec.data)]
    return list(dict.fromkeys(splits))


def query_pools(plan: SweepPlan) -> list[str]:
    """Every query pool (`attack.query_data`) the sweep's trials draw from."""
    from sslsteal.specs.attack import AttackSpec

    return list(dict.fromkeys(plan.values("attack", "query_data") or [AttackSpec.model_fields["query_data"].default]))


def _endpoint(plan: SweepPlan) -> Any:
    """The HTTP endpoint the sweep's trials query (`victim: {url: ...}`, a RemoteVictimSpec), or None for the actor."""
    from sslsteal.specs.victim import RemoteVictimSpec

    victim = plan.spec.victim
    return victim if isinstance(victim, RemoteVictimSpec) else None


def _checkpoint(source: tuple[Any, Path | None]) -> Path:
    """A cached checkpoint, or one trained now on the cluster."""
    from sslsteal.orchestration.remote import train_on_cluster

    spec, path = source
    return path if path is not None else train_on_cluster(spec)


@dataclass
class Driver:
    """The driver's side of a sweep or study: Ray joined, victim and references ready, datasets shared, actor serving."""

    plan: SweepPlan
    tracker: Any
    victim: Any
    report: dict[str, float]
    handle: Any
    info: dict[str, Any]
    """The actor's `info` once it was serving: node, GPUs, device, process."""
    shared: dict[str, Any]
    baselines: dict[str, dict[str, float]]
    bulk: BulkInference | None = None

    @classmethod
    def start(cls, plan: SweepPlan, *, address: str | None = None, tracking_uri: str | None = None, state_dir: Path | None = None) -> Driver:
        """Start or join Ray; resolve (or train on the cluster) the victim and, when ownership tests need it, the
        references; log the victim's run once; put checkpoints and datasets in the object store; start the actor,
        keeping its accounts in `state_dir` (unless the sweep's `service.state_dir` says where) so that Ray restarting
        it loses no account."""
        import ray

        from sslsteal.evaluation.baselines import baselines, victim_report
        from sslsteal.orchestration.actor import create_service
        from sslsteal.orchestration.batch_inference import bulk_needed
        from sslsteal.orchestration.ray_data import share_datasets
        from sslsteal.orchestration.tracking import Tracker, flatten
        from sslsteal.pipeline.steal import victim_source
        from sslsteal.specs.base import ConfigError
        from sslsteal.specs.datasets import parse_ref
        from sslsteal.specs.victim import ServiceSpec
        from sslsteal.victim.checkpoint import load_victim
        from sslsteal.victim.reference import find_references

        spec = plan.spec
        service = ServiceSpec.model_validate(spec.service)
        if service.state_dir is None and state_dir is not None:
            service = service.model_copy(update={"state_dir": str(state_dir)})
        if not ray.is_initialized():
            ray.init(address=address or "local", namespace=f"sslsteal-{spec.name}", include_dashboard=False)
        victim_path = _checkpoint(victim_source(spec.victim, base=Path(plan.source).resolve().parent, data_root=spec.run.data_root))
        victim = load_victim(victim_path)
        tests = {name for names in plan.values("evaluate", "ownership") for name in names}
        if "watermark" in tests and victim.predictor is None:
            raise ConfigError([f"evaluate.ownership: the watermark test needs a watermarked victim; {victim.spec.key} has none"], plan.source)
        checkpoint = ray.put(victim_path.read_bytes())  # read and stored once: the actor and every trial load it from here
        # The actor imports torch and loads the victim while the driver does the rest of its set-up; a sweep over an
        # endpoint has none (its trials query the endpoint; the checkpoint only scores their copies).
        endpoint = _endpoint(plan)
        handle = None if endpoint else create_service(checkpoint, service, name="victim", namespace=f"sslsteal-{spec.name}", wait=False)
        try:
            tracker = Tracker(tracking_uri or spec.tracking.uri)
            count = max(plan.values("evaluate", "references") or [3]) if tests else 0
            reference_paths = [_checkpoint(found) for found in find_references(victim, list(range(1, count + 1)), spec.run.data_root)]
            report = victim_report(victim, spec.run.data_root)
            downstream = list(dict.fromkeys(ds for names in plan.values("evaluate", "downstream") or [None] for ds in names or victim.spec.evaluate.downstream))
            encoders = plan.values("attack", "encoder") or [victim.spec.encoder]
            measured = {
                baseline_key(parse_ref(pool), encoder or victim.spec.encoder): baselines(
                    victim, encoder or victim.spec.encoder, downstream, pool=parse_ref(pool), root=spec.run.data_root
                )
                for pool in query_pools(plan)
                for encoder in encoders
            }
            tracker.victim_run(spec.name, victim.spec.key, flatten(victim.spec.model_dump()), report, victim_path)
            splits = _splits_needed(plan, victim.spec, bool(tests))
            shared = {
                "victim": checkpoint,
                "references": [ray.put(path.read_bytes()) for path in reference_paths],
                "datasets": share_datasets(splits, spec.run.data_root),
            }
            info = ray.get(handle.info.remote()) if handle is not None else {}  # construction errors surface here
        except BaseException:
            if handle is not None:
                ray.kill(handle, no_restart=True)
            raise
        return cls(plan, tracker, victim, report, handle, info, shared, measured, bulk_needed(spec.run.bulk_inference, splits))

    def trainable(self, parent_run: str) -> Any:
        """The trial function with its context bound and the sweep's per-trial resources (with its bulk-inference pool's)."""
        from ray import tune

        from sslsteal.orchestration.batch_inference import trial_resources

        spec = self.plan.spec
        res = spec.run.resources_per_trial
        context = SweepContext(
            spec.name,
            f"sslsteal-{spec.name}",
            self.tracker.uri,
            parent_run,
            spec.run.data_root,
            res.cpu,
            baselines=self.baselines,
            bulk=self.bulk,
            endpoint=_endpoint(self.plan),
            **self.shared,
        )
        return tune.with_resources(tune.with_parameters(trial, context=context), trial_resources(res, self.bulk))

    def placement(self) -> dict[str, str]:
        """Where the victim actor started (node id, GPU ids, torch device, process), or the endpoint the trials query,
        as MLflow tags for the parent run."""
        endpoint = _endpoint(self.plan)
        if endpoint is not None:
            return {"sslsteal.endpoint": endpoint.url}
        return {
            "sslsteal.victim_node_id": str(self.info["node_id"]),
            "sslsteal.victim_gpu_ids": ",".join(self.info["gpu_ids"]),
            "sslsteal.victim_device": self.info["device"],
            "sslsteal.victim_pid": str(self.info["pid"]),
        }

    def first_downstream(self) -> str:
        """The dataset whose metrics the progress table shows."""
        downstream = self.plan.values("evaluate", "downstream")
        return downstream[0][0] if downstream and downstream[0] else self.victim.spec.evaluate.downstream[0]

    def stop(self) -> None:
        """Stop the victim actor (Ray itself is left running for the caller)."""
        import ray

        if self.handle is not None:
            ray.kill(self.handle, no_restart=True)
