"""Run a sweep on Ray Tune: one shared victim actor, one attacker account per trial, one MLflow child run per trial."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sslsteal.sweep_spec import SweepPlan


@dataclass(frozen=True)
class SweepContext:
    """What every trial needs from the driver: where the victim and MLflow are, how to name things."""

    sweep: str
    namespace: str
    checkpoint: str
    tracking_uri: str
    parent_run: str
    data_root: str | None
    cpus: float


def _trial_name(config: dict[str, Any]) -> str:
    a, d = config["attack"], config["defense"]
    defense = d.get("name", "none")
    extras = ",".join(f"{k}={v}" for k, v in sorted(d.items()) if k != "name")
    return f"{a.get('method', 'direct')}-{a.get('loss', 'infonce')}-q{a['queries']}-{defense}{'(' + extras + ')' if extras else ''}"


def trial(config: dict[str, Any], context: SweepContext) -> None:
    """One attacker account: steal through the shared actor within the budget, evaluate, log, report."""
    import ray
    from ray import tune

    from sslsteal.device import select_device, set_threads
    from sslsteal.run import RunSpec, steal_and_evaluate
    from sslsteal.tracking import Tracker, flatten
    from sslsteal.victim.checkpoint import load_victim
    from sslsteal.victim.service import RemoteQuery

    set_threads(context.cpus)
    device = select_device()
    spec = RunSpec.model_validate({"victim": context.checkpoint, "attack": config["attack"], "evaluate": config["evaluate"], "data_root": context.data_root})
    account = tune.get_context().get_trial_id()
    tracker = Tracker(context.tracking_uri)
    run_id = tracker.child(context.parent_run, key=account, name=_trial_name(config), params=flatten(config))
    tracker.log_dict(run_id, config, "trial_config.json")
    try:
        handle = ray.get_actor("victim", namespace=context.namespace)
        ray.get(handle.open_account.remote(account, spec.attack.queries, config["defense"]))
        query = RemoteQuery(handle, account, head=spec.attack.method == "access_head")

        def on_epoch(epoch: int, record: dict[str, float], encoder: Any) -> None:
            tracker.log_metrics(run_id, {"train.loss": record["loss"]}, step=epoch)

        victim = load_victim(context.checkpoint).to(device)
        _, metrics = steal_and_evaluate(spec, victim, query, device, on_epoch=on_epoch)
        stats = ray.get(handle.stats.remote(account))  # the server's own accounting
        metrics.update(
            {
                "queries_used": float(stats["queries_used"]),
                "defense.detected_fraction": stats["detections"] / max(1, stats["queries_used"]),
                "cost.pow_hashes": float(stats["pow_hashes"]),
            }
        )
        tracker.log_metrics(run_id, metrics)
    except BaseException:
        tracker.finish(run_id, "FAILED")
        raise
    tracker.finish(run_id)
    tune.report(metrics)


def run_sweep(plan: SweepPlan, *, address: str | None = None, tracking_uri: str | None = None, storage: str | None = None, progress: bool = True) -> Any:
    """Start or join Ray, create the shared victim, run one Tune trial per configuration; returns Tune's ResultGrid."""
    import ray
    from ray import tune

    from sslsteal.baselines import victim_report
    from sslsteal.run import resolve_victim
    from sslsteal.search_space import to_param_space
    from sslsteal.tracking import Tracker, flatten
    from sslsteal.victim.service import ServiceSpec, create_service

    spec = plan.spec
    namespace = f"sslsteal-{spec.name}"
    if not ray.is_initialized():
        ray.init(address=address, namespace=namespace, include_dashboard=False)
    tracker = Tracker(tracking_uri or spec.tracking.uri)
    victim = resolve_victim(spec.victim, base=Path(plan.source).resolve().parent, data_root=spec.run.data_root, progress=progress)
    report = victim_report(victim, spec.run.data_root)
    tracker.victim_run(spec.name, victim.spec.key, flatten(victim.spec.model_dump()), report, victim.path)
    parent = tracker.start_parent(spec.name, f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}", kind="sweep", params={"trials": plan.trials, "victim": victim.spec.key})
    handle = create_service(victim.path, ServiceSpec.model_validate(spec.service), name="victim", namespace=namespace)
    res = spec.run.resources_per_trial
    context = SweepContext(spec.name, namespace, str(victim.path), tracker.uri, parent, spec.run.data_root, res.cpu)
    trainable = tune.with_resources(tune.with_parameters(trial, context=context), {"cpu": res.cpu, "gpu": res.gpu})
    downstream = spec.evaluate.get("downstream")
    first = downstream[0] if isinstance(downstream, list) else victim.spec.evaluate.downstream[0]  # a searched list: show the victim's
    reporter = tune.CLIReporter(metric_columns=["queries_used", f"acc.{first}", f"gain_recovered.{first}"], max_report_frequency=30)
    tuner = tune.Tuner(
        trainable,
        param_space=to_param_space(plan.tree, plan.spaces),
        tune_config=tune.TuneConfig(num_samples=spec.run.num_samples, max_concurrent_trials=spec.run.max_concurrent_trials),
        run_config=tune.RunConfig(
            name=spec.name,
            storage_path=storage,
            failure_config=tune.FailureConfig(max_failures=spec.run.max_failures),
            progress_reporter=reporter if progress else None,
            verbose=1 if progress else 0,
        ),
    )
    try:
        results = tuner.fit()
    except BaseException:
        tracker.finish(parent, "FAILED")
        raise
    finally:
        ray.kill(handle, no_restart=True)
    tracker.log_metrics(parent, {"trials.completed": float(sum(r.error is None for r in results)), "trials.failed": float(results.num_errors)})
    tracker.finish(parent, "FAILED" if results.num_errors else "FINISHED")
    return results
