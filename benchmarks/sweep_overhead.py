"""Sweep overhead: the same trials run by a bare Python loop and by `sslsteal sweep`, and 2x1-CPU vs 1x2-CPU trials.

Run: SSLSTEAL_DATA=../shared/data python benchmarks/sweep_overhead.py [--sweep sweeps/quickstart.yaml] [--set k=v ...]
By default: the quickstart's victim and protocol, 4 trials of 1,000 queries (MSE and SoftNN, 2 attacker seeds)
with the default recipe. Prints, from one run:
- the time from `ray.init` to the first trial's result, for the quickstart's trials (target <= 60 s, warm cache);
- the bare loop's wall time: each trial's steal + evaluate + ownership tests one after the other, against an
  in-process `VictimService` (same accounts, budgets and defenses), no Ray, no MLflow; in this process (its
  imports paid by the warm-up) and in a fresh process (which imports torch, scikit-learn, ... once, as each of a
  sweep's trial workers does);
- the sweep's wall time for the same trials, one at a time with the same CPUs (shared actor, object store,
  Tune, MLflow child runs), and the ratio sweep / fresh loop (target <= 1.10), beside sweep / loop in this process;
- throughput of 2 concurrent trials of 1 CPU each vs 1 trial at a time with 2 CPUs (target >= 1.8), beside the same
  ratio for bare loops in fresh processes (2 processes of 1 thread against 1 of 2, no Ray): what the machine allows
  these trials, so the sweep's share of any shortfall is the gap between the two.
Victim, reference, dataset and evaluation caches are warmed first so every variant does the same work.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def _default_recipe() -> list[str]:
    """Overrides that put the attack's default recipe back over the quickstart's pinned one (epochs, batch, lr)."""
    from sslsteal.specs.attack import AttackSpec

    return [f"attack.{key}={AttackSpec.model_fields[key].default}" for key in ("epochs", "min_steps", "batch_size", "lr")]


FOUR_TRIALS = ["attack.loss={grid: [mse, softnn]}", "run.seeds=[0, 1]", *_default_recipe()]
"""The default overrides of the quickstart: 4 trials of 1,000 queries with the default recipe (docs/attacks.md)."""


def _configs(plan: Any) -> list[dict[str, Any]]:
    """Every grid configuration of the plan (the benchmark sweeps must use grids only)."""
    import itertools

    from sslsteal.specs.search_space import substitute

    if any(space.kind != "grid" for space in plan.spaces.values()):
        raise SystemExit("use a sweep whose search spaces are all grids, so both runners do the same trials")
    paths = list(plan.spaces)
    combos = itertools.product(*(plan.spaces[p].candidates() for p in paths))
    return [substitute(plan.tree, dict(zip(paths, combo, strict=True))) for combo in combos] * plan.spec.run.num_samples


def bare_loop(plan: Any, cpus: int, configs: list[dict[str, Any]] | None = None) -> float:
    """Wall seconds for the trials (`configs`, default all of the plan's) run sequentially in this process against
    an in-process victim service."""
    import torch

    from sslsteal.core.device import select_device, set_threads
    from sslsteal.pipeline.steal import legit_metrics, legit_queries, resolve_victim, steal_and_evaluate
    from sslsteal.specs.steal import StealSpec
    from sslsteal.victim.reference import get_references
    from sslsteal.victim.service import VictimService

    set_threads(cpus)
    spec = plan.spec
    root = spec.run.data_root
    start = time.perf_counter()
    victim = resolve_victim(spec.victim, base=Path(plan.source).resolve().parent, data_root=root, progress=False)
    service = VictimService(str(victim.path), {**spec.service, "num_cpus": cpus})
    device = select_device()
    for i, config in enumerate(_configs(plan) if configs is None else configs):
        run = StealSpec.model_validate({"victim": victim.spec.key, "attack": config["attack"], "evaluate": config["evaluate"], "data_root": root})
        indices = list(range(1, run.evaluate.references + 1)) if run.evaluate.ownership else []
        references = get_references(victim, indices, data_root=root, progress=False)
        account = service.open_fresh_account(f"loop{i}", run.attack.queries, config["defense"])["account"]
        head = run.attack.method == "access_head"
        steal_and_evaluate(run, victim, lambda x, a=account, h=head: torch.from_numpy(service.embed(x, a, h)), device, references=references)
        if run.evaluate.legit:
            downstream = run.evaluate.downstream or victim.spec.evaluate.downstream
            legit = service.open_fresh_account(f"loop{i}-legit", legit_queries(victim, downstream), config["defense"])["account"]
            legit_metrics(lambda x, a=legit: torch.from_numpy(service.embed(x, a)), victim, downstream, root)
    return time.perf_counter() - start


def _loop_share(sweep: str, overrides: list[str], share: int, shares: int, threads: int) -> float:
    """One fresh process's share of the trials (every `shares`-th from `share`) in a bare loop with `threads` threads."""
    from sslsteal.specs.sweep import plan_sweep

    plan = plan_sweep(sweep, overrides)
    return bare_loop(plan, threads, _configs(plan)[share::shares])


def _limit_threads(threads: int) -> None:
    """Before numpy loads in a fresh process: its BLAS threads as a Ray worker's (Ray sets OMP_NUM_THREADS the same way)."""
    import os

    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(threads)


def fresh_loops(sweep: str, overrides: list[str], processes: int, threads: int) -> float:
    """Wall seconds for the trials split over `processes` fresh processes (bare loops of `threads` threads each, at
    once). Each process imports torch, scikit-learn and the rest itself, as a sweep's trial worker does."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    start = time.perf_counter()
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(processes, mp_context=spawn, initializer=_limit_threads, initargs=(threads,)) as pool:
        list(pool.map(_loop_share, *zip(*[(sweep, overrides, i, processes, threads) for i in range(processes)], strict=True)))
    return time.perf_counter() - start


def sweep(plan: Any, storage: str, uri: str) -> tuple[float, Any]:
    """Wall seconds of run_sweep (Ray already up) and its ResultGrid."""
    from sslsteal.orchestration.sweep import run_sweep

    start = time.perf_counter()
    results = run_sweep(plan, tracking_uri=uri, storage=storage, progress=False).grid
    return time.perf_counter() - start, results


def first_result(plan: Any, storage: str, uri: str, cpus: int) -> float:
    """Seconds from `ray.init` to the first trial's final result (its report's timestamp), Ray started here."""
    import ray

    start = time.time()
    ray.init(num_cpus=cpus + 1, include_dashboard=False, log_to_driver=False)
    _, results = sweep(plan, storage, uri)
    first = min(r.metrics["timestamp"] for r in results if r.error is None)
    ray.shutdown()
    return first - start


def main() -> None:
    import ray

    from sslsteal.specs.sweep import plan_sweep

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", default=str(REPO / "sweeps" / "quickstart.yaml"))
    parser.add_argument("--set", action="append", default=None, metavar="KEY=VALUE", help=f"override a sweep value (repeatable; default {FOUR_TRIALS})")
    parser.add_argument("--cpus", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sweep-overhead-"))
    uri = f"sqlite:///{work / 'mlflow.db'}"

    overrides = FOUR_TRIALS if args.set is None else args.set

    def plan_with(*extra: str) -> Any:
        return plan_sweep(args.sweep, [*overrides, *extra])

    one_at_a_time = plan_with("run.max_concurrent_trials=1", f"run.resources_per_trial.cpu={args.cpus}")
    trials = len(_configs(one_at_a_time))
    print(f"{trials} trials from {args.sweep}")
    bare_loop(one_at_a_time, args.cpus, _configs(one_at_a_time)[:1])  # warm the caches (victim, reference, datasets, baselines)
    quickstart = plan_sweep(args.sweep)
    first_s = first_result(quickstart, str(work / "first"), uri, args.cpus)
    print(f"{args.sweep} as it ships ({quickstart.trials} trials): first trial result {first_s:.1f} s after ray.init (target <= 60)")
    warm_loop_s = bare_loop(one_at_a_time, args.cpus)
    print(f"bare loop, 1 trial at a time, {args.cpus} threads, in this process (imports already paid): {warm_loop_s:.1f} s")
    loop_s = fresh_loops(args.sweep, overrides, 1, args.cpus)
    print(
        f"bare loop, 1 trial at a time, {args.cpus} threads, in a fresh process: {loop_s:.1f} s (its start-up, imports and loads, {loop_s - warm_loop_s:.1f} s of it)"
    )

    start = time.perf_counter()
    ray.init(num_cpus=args.cpus + 1, include_dashboard=False, log_to_driver=False)  # +1 CPU for the victim actor
    print(f"ray.init: {time.perf_counter() - start:.1f} s (not counted below)")
    sweep_s, _ = sweep(one_at_a_time, str(work / "a"), uri)
    print(
        f"sslsteal sweep, 1 trial at a time with {args.cpus} CPUs: {sweep_s:.1f} s; "
        f"ratio sweep / fresh loop = {sweep_s / loop_s:.3f} (target <= 1.10); sweep / loop in this process = {sweep_s / warm_loop_s:.3f}"
    )

    two_by_one = plan_with("run.max_concurrent_trials=2", "run.resources_per_trial.cpu=1")
    pair_s, _ = sweep(two_by_one, str(work / "b"), uri)
    print(f"sslsteal sweep, 2 trials at once with 1 CPU each: {pair_s:.1f} s")
    print(
        f"throughput: {60 * trials / pair_s:.2f} vs {60 * trials / sweep_s:.2f} trials/min; ratio (2x1 CPU) / (1x2 CPU) = {sweep_s / pair_s:.3f} (target >= 1.8)"
    )
    ray.shutdown()
    loops_s = fresh_loops(args.sweep, overrides, args.cpus, 1)
    bound = loop_s / loops_s
    print(f"bare loops, the trials split over {args.cpus} fresh processes of 1 thread at once: {loops_s:.1f} s")
    print(
        f"the machine's own ratio ({args.cpus} x 1 thread) / (1 x {args.cpus} threads), fresh processes = {bound:.3f}; the sweep's is {sweep_s / pair_s / bound:.3f} of it"
    )


if __name__ == "__main__":
    main()
