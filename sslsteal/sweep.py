"""Run a sweep on Ray Tune: one shared victim actor, one attacker account per trial attempt, one MLflow child run per trial.

The driver resolves the victim (training it on the cluster when needed), shares its checkpoint, the references
encoder and the datasets through the object store, opens a parent MLflow run and starts the actor; each trial
steals through the actor, evaluates, runs the ownership tests and reports. `resume=True` continues the newest
interrupted run of the sweep with `Tuner.restore`, reusing its parent run and its trials' child runs.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sslsteal.specs.sweep import SweepPlan

STATE_FILE = "sslsteal-sweep.json"
"""Written into Tune's experiment folder: which parent MLflow run a resumed sweep continues."""


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


def baseline_key(pool: Any, encoder: str) -> str:
    """Which baselines a trial compares with: they depend on the query pool (removed from the test set) and the stolen architecture."""
    return f"{pool}|{encoder}"


def resolved_params(spec: Any, defense: dict[str, Any]) -> dict[str, str]:
    """The trial's whole resolved configuration (defaults included) as flat MLflow params."""
    from sslsteal.tracking import flatten
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


def trial(config: dict[str, Any], context: SweepContext) -> None:
    """One attacker: a fresh account per attempt, steal within its budget, evaluate, test ownership, log, report."""
    import ray
    from ray import tune

    from sslsteal.device import select_device, set_threads
    from sslsteal.evaluate import holdout_task, knn_accuracy
    from sslsteal.remote import install_datasets
    from sslsteal.seeding import derive_seed
    from sslsteal.specs.steal import StealSpec
    from sslsteal.steal import legit_metrics, legit_queries, steal_and_evaluate
    from sslsteal.suspect import save_stolen
    from sslsteal.tracking import Tracker
    from sslsteal.victim.checkpoint import load_victim
    from sslsteal.victim.service import RemoteQuery

    set_threads(context.cpus)
    device = select_device()
    install_datasets(context.datasets)
    victim = load_victim(ray.get(context.victim)).to(device)
    spec = StealSpec.model_validate({"victim": victim.spec.key, "attack": config["attack"], "evaluate": config["evaluate"], "data_root": context.data_root})
    trial_id = tune.get_context().get_trial_id()
    handle = ray.get_actor("victim", namespace=context.namespace)
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

    def on_epoch(epoch: int, record: dict[str, float], encoder: Any) -> None:
        last.update({"epoch": float(epoch), "train.loss": record["loss"]})
        if monitor is not None:
            last["val.knn_acc"] = knn_accuracy(encoder, monitor, device=device)
        tracker.log_metrics(run_id, last, step=epoch)
        if monitor is not None:  # intermediate results only when a scheduler can use them
            tune.report(dict(last))

    try:
        query = RemoteQuery(handle, account, head=spec.attack.method == "access_head")
        known = context.baselines.get(baseline_key(spec.attack.pool, spec.attack.encoder or victim.spec.encoder))
        references = [load_victim(ray.get(ref)).to(device) for ref in context.references[: spec.evaluate.references]] if spec.evaluate.ownership else []
        stolen, metrics = steal_and_evaluate(spec, victim, query, device, references=references, baselines=known, on_epoch=on_epoch)
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


def _checkpoint(source: tuple[Any, Path | None]) -> Path:
    """A cached checkpoint, or one trained now on the cluster."""
    from sslsteal.remote import train_on_cluster

    spec, path = source
    return path if path is not None else train_on_cluster(spec)


def _latest_state(root: Path, name: str) -> Path | None:
    """The newest experiment folder of sweep `name` under `root` that this tool wrote."""
    found = sorted(root.glob(f"{name}-*/{STATE_FILE}"), key=lambda p: p.parent.name)
    return found[-1].parent if found else None


@dataclass
class Driver:
    """The driver's side of a sweep or study: Ray joined, victim and references ready, datasets shared, actor serving."""

    plan: SweepPlan
    tracker: Any
    victim: Any
    report: dict[str, float]
    handle: Any
    shared: dict[str, Any]
    baselines: dict[str, dict[str, float]]

    @classmethod
    def start(cls, plan: SweepPlan, *, address: str | None = None, tracking_uri: str | None = None) -> Driver:
        """Start or join Ray; resolve (or train on the cluster) the victim and, when ownership tests need it, the
        references; log the victim's run once; put checkpoints and datasets in the object store; start the actor."""
        import ray

        from sslsteal.baselines import baselines, victim_report
        from sslsteal.remote import share_datasets
        from sslsteal.specs.base import ConfigError
        from sslsteal.specs.datasets import parse_ref
        from sslsteal.specs.victim import ServiceSpec
        from sslsteal.steal import victim_source
        from sslsteal.tracking import Tracker, flatten
        from sslsteal.victim.checkpoint import load_victim
        from sslsteal.victim.reference import find_references
        from sslsteal.victim.service import create_service

        spec = plan.spec
        service = ServiceSpec.model_validate(spec.service)
        if not ray.is_initialized():
            ray.init(address=address or "local", namespace=f"sslsteal-{spec.name}", include_dashboard=False)
        tracker = Tracker(tracking_uri or spec.tracking.uri)
        victim_path = _checkpoint(victim_source(spec.victim, base=Path(plan.source).resolve().parent, data_root=spec.run.data_root))
        victim = load_victim(victim_path)
        tests = {name for names in plan.values("evaluate", "ownership") for name in names}
        if "watermark" in tests and victim.predictor is None:
            raise ConfigError([f"evaluate.ownership: the watermark test needs a watermarked victim; {victim.spec.key} has none"], plan.source)
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
        shared = {
            "victim": ray.put(victim_path.read_bytes()),  # read and stored once: the actor and every trial load it from here
            "references": [ray.put(path.read_bytes()) for path in reference_paths],
            "datasets": share_datasets(_splits_needed(plan, victim.spec, bool(tests)), spec.run.data_root),
        }
        handle = create_service(shared["victim"], service, name="victim", namespace=f"sslsteal-{spec.name}")
        return cls(plan, tracker, victim, report, handle, shared, measured)

    def trainable(self, parent_run: str) -> Any:
        """The trial function with its context bound and the sweep's per-trial resources."""
        from ray import tune

        spec = self.plan.spec
        res = spec.run.resources_per_trial
        context = SweepContext(
            spec.name, f"sslsteal-{spec.name}", self.tracker.uri, parent_run, spec.run.data_root, res.cpu, baselines=self.baselines, **self.shared
        )
        return tune.with_resources(tune.with_parameters(trial, context=context), {"cpu": res.cpu, "gpu": res.gpu})

    def placement(self) -> dict[str, str]:
        """Where the victim actor runs (node id, GPU ids, torch device), as MLflow tags for the parent run."""
        import ray

        info = ray.get(self.handle.info.remote())
        return {"sslsteal.victim_node_id": str(info["node_id"]), "sslsteal.victim_gpu_ids": ",".join(info["gpu_ids"]), "sslsteal.victim_device": info["device"]}

    def first_downstream(self) -> str:
        """The dataset whose metrics the progress table shows."""
        downstream = self.plan.values("evaluate", "downstream")
        return downstream[0][0] if downstream and downstream[0] else self.victim.spec.evaluate.downstream[0]

    def stop(self) -> None:
        """Stop the victim actor (Ray itself is left running for the caller)."""
        import ray

        ray.kill(self.handle, no_restart=True)


def run_sweep(
    plan: SweepPlan,
    *,
    address: str | None = None,
    tracking_uri: str | None = None,
    storage: str | None = None,
    resume: bool = False,
    progress: bool = True,
) -> Any:
    """Run one Tune trial per configuration against the shared victim; returns Tune's ResultGrid."""
    from ray import tune

    from sslsteal.specs.base import ConfigError
    from sslsteal.specs.search_space import to_param_space

    spec = plan.spec
    root = Path(storage or "~/ray_results").expanduser().resolve()
    previous = _latest_state(root, spec.name) if resume else None
    if resume and (previous is None or not tune.Tuner.can_restore(str(previous))):
        raise ConfigError([f"--resume: no interrupted run of sweep {spec.name!r} under {root}"], plan.source)
    driver = Driver.start(plan, address=address, tracking_uri=tracking_uri)
    tracker = driver.tracker
    if previous is not None:
        experiment = previous
        state = json.loads((previous / STATE_FILE).read_text())
    else:
        experiment = root / f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        state = {"parent_key": str(experiment), "sweep_file": plan.source}
    try:
        parent = tracker.start_parent(
            spec.name,
            experiment.name,
            kind="sweep",
            params={"trials": plan.trials, "victim": driver.victim.spec.key},
            tags=driver.placement(),
            key=state["parent_key"],
        )
        experiment.mkdir(parents=True, exist_ok=True)
        (experiment / STATE_FILE).write_text(json.dumps(state | {"parent_run": parent}, indent=2))
        trainable = driver.trainable(parent)
        param_space = to_param_space(plan.tree, plan.spaces)
        if previous is not None:
            tuner = tune.Tuner.restore(str(experiment), trainable, resume_errored=True, param_space=param_space)
        else:
            run_config = tune.RunConfig(
                name=experiment.name,
                storage_path=str(root),
                failure_config=tune.FailureConfig(max_failures=spec.run.max_failures),
                callbacks=[close_trial_runs(tracker.uri, parent)],
                verbose=1 if progress else 0,
            )
            tune_config = tune.TuneConfig(num_samples=spec.run.num_samples, max_concurrent_trials=spec.run.max_concurrent_trials)
            tuner = tune.Tuner(trainable, param_space=param_space, tune_config=tune_config, run_config=run_config)
        try:
            results = tuner.fit()
        except BaseException:
            tracker.finish(parent, "KILLED")
            raise
    finally:
        driver.stop()
    done = completed(results)
    tracker.log_metrics(parent, {"trials.completed": float(done), "trials.failed": float(results.num_errors)})
    tracker.finish(parent, "FAILED" if results.num_errors else "FINISHED" if done == plan.trials else "KILLED")
    return results


def completed(results: Any) -> int:
    """Trials of a ResultGrid that ran to their final report (an interrupted sweep has fewer than planned)."""
    return sum(r.error is None and "queries_used" in (r.metrics or {}) for r in results)


def close_trial_runs(tracking_uri: str, parent: str) -> Any:
    """A Tune callback (driver side) that ends a trial's child run left RUNNING: KILLED when Tune stopped the trial
    early (a scheduler's pruning), FAILED when it failed for good; runs the trial finished itself are left alone."""
    from ray import tune

    from sslsteal.tracking import Tracker

    class CloseTrialRuns(tune.Callback):
        def _close(self, trial: Any, status: str) -> None:
            tracker = Tracker(tracking_uri)
            run = tracker.find_child(parent, trial.trial_id)
            if run is not None and run.info.status == "RUNNING":
                tracker.finish(run.info.run_id, status)

        def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            self._close(trial, "KILLED")

        def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            self._close(trial, "FAILED")

    return CloseTrialRuns()
