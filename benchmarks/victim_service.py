"""Victim service throughput: images/second through the Ray actor vs the same model called in-process.

Run: python benchmarks/victim_service.py [--victim CHECKPOINT] [--rounds 5] [--seconds 4]
Measures, in each round and in alternating order: the in-process rate at batch 256, the actor's rate with one caller
(requests pipelined, 2 in flight) and with 2 concurrent callers (separate accounts). Prints the median rate of each
over the rounds with its range, and each actor path's ratio to in-process: the median over rounds with its range
(one pair of measurements moves by 10-30% on this machine; the rounds show by how much).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

BATCH = 256


def _rate(run_batch: Callable[[], None], seconds: float) -> float:
    run_batch()  # warm-up
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        run_batch()
        done += BATCH
    return done / (time.perf_counter() - start)


def victim_checkpoint(path: str | None) -> str:
    """`path`, or a freshly initialised small_cnn victim saved to a temporary folder (the benchmarks' default)."""
    if path:
        return path
    from sslsteal.specs.victim import VictimSpec
    from sslsteal.victim.checkpoint import build_victim, save_victim

    victim = build_victim(VictimSpec(name="bench", encoder="small_cnn"))
    return str(save_victim(victim, Path(tempfile.mkdtemp())))


def parse_args(doc: str, rounds_help: str, seconds_help: str) -> argparse.Namespace:
    """The options the throughput benchmarks share: the victim, rounds, seconds per measurement, the model's CPUs."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--victim", help="victim checkpoint (default: a freshly initialised small_cnn victim)")
    parser.add_argument("--rounds", type=int, default=5, help=rounds_help)
    parser.add_argument("--seconds", type=float, default=4.0, help=seconds_help)
    parser.add_argument("--cpus", type=float, default=2.0, help="CPUs (threads) for the model, in-process and in the actor")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    return args


def main() -> None:
    import ray

    from sslsteal.orchestration.actor import create_service
    from sslsteal.specs.victim import ServiceSpec
    from sslsteal.victim.service import VictimService

    args = parse_args(__doc__, "rounds; each measures every path once", "measuring time of one path in one round")
    checkpoint = victim_checkpoint(args.victim)
    images = np.random.default_rng(0).integers(0, 256, size=(BATCH, 3, 32, 32), dtype=np.uint8)
    budget = 10**12

    local = VictimService(checkpoint, {"budget": budget, "num_cpus": args.cpus})
    local.open_account("local")

    ray.init(num_cpus=int(args.cpus) + 1, include_dashboard=False, log_to_driver=False)
    handle = create_service(checkpoint, ServiceSpec(budget=budget, num_cpus=args.cpus, max_concurrency=4))
    for acc in ("one", "two-a", "two-b"):
        ray.get(handle.open_account.remote(acc))
    ref = ray.put(images)

    def pipelined(account: str) -> Callable[[], None]:
        inflight: list = []

        def run() -> None:
            inflight.append(handle.embed.remote(ref, account))
            if len(inflight) > 1:
                ray.get(inflight.pop(0))

        return run

    def two_callers() -> float:
        rates: dict[str, float] = {}

        def caller(account: str) -> None:
            rates[account] = _rate(pipelined(account), args.seconds)

        threads = [threading.Thread(target=caller, args=(a,)) for a in ("two-a", "two-b")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return sum(rates.values())

    paths: dict[str, Callable[[], float]] = {
        "in-process VictimService.embed": lambda: _rate(lambda: local.embed(images, "local"), args.seconds),
        "Ray actor, 1 caller": lambda: _rate(pipelined("one"), args.seconds),
        "Ray actor, 2 concurrent callers (total)": two_callers,
    }
    measured: dict[str, list[float]] = {name: [] for name in paths}
    for r in range(args.rounds):
        for name in list(paths) if r % 2 == 0 else list(paths)[::-1]:  # no path always runs first
            measured[name].append(paths[name]())
        print(f"round {r + 1}/{args.rounds}: " + "  ".join(f"{v[-1]:.0f}" for v in measured.values()) + " img/s", flush=True)
    ray.shutdown()

    base = measured["in-process VictimService.embed"]
    print(f"\n{'path (batch 256)':<44}{'img/s (median)':>16}{'range':>16}{'vs in-process (median)':>24}{'range':>18}")
    for name, values in measured.items():
        ratios = [v / b for v, b in zip(values, base, strict=True)]
        print(
            f"{name:<44}{statistics.median(values):>16.0f}{f'[{min(values):.0f}, {max(values):.0f}]':>16}"
            f"{statistics.median(ratios):>24.3f}{f'[{min(ratios):.3f}, {max(ratios):.3f}]':>18}"
        )


if __name__ == "__main__":
    main()
