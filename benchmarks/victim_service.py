"""Victim service throughput: images/second through the Ray actor vs the same model called in-process.

Run: python benchmarks/victim_service.py [--victim CHECKPOINT] [--seconds 10]
Prints, from one run: in-process rate at batch 256, actor rate with one caller (requests pipelined,
2 in flight), actor rate with 2 concurrent callers (separate accounts), and their ratios.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections.abc import Callable

import numpy as np

BATCH = 256


def _rate(run_batch: Callable[[], None], seconds: float) -> float:
    run_batch()  # warm-up
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        run_batch()
        done += BATCH
    return done / (time.perf_counter() - start)


def _checkpoint(path: str | None) -> str:
    if path:
        return path
    from sslsteal.specs.victim import VictimSpec
    from sslsteal.victim.checkpoint import build_victim, save_victim

    victim = build_victim(VictimSpec(name="bench", encoder="small_cnn"))
    return str(save_victim(victim, __import__("pathlib").Path(tempfile.mkdtemp())))


def main() -> None:
    import ray

    from sslsteal.orchestration.actor import create_service
    from sslsteal.specs.victim import ServiceSpec
    from sslsteal.victim.service import VictimService

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--victim", help="victim checkpoint (default: a freshly initialised small_cnn victim)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--cpus", type=float, default=2.0, help="CPUs (threads) for the model, in-process and in the actor")
    args = parser.parse_args()
    checkpoint = _checkpoint(args.victim)
    images = np.random.default_rng(0).integers(0, 256, size=(BATCH, 3, 32, 32), dtype=np.uint8)
    budget = 10**12

    local = VictimService(checkpoint, {"budget": budget, "num_cpus": args.cpus})
    local.open_account("local")
    in_process = _rate(lambda: local.embed(images, "local"), args.seconds)

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

    one = _rate(pipelined("one"), args.seconds)
    rates: dict[str, float] = {}

    def caller(account: str) -> None:
        rates[account] = _rate(pipelined(account), args.seconds)

    threads = [threading.Thread(target=caller, args=(a,)) for a in ("two-a", "two-b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    two = sum(rates.values())
    ray.shutdown()

    print(f"{'path (batch 256)':<44}{'img/s':>10}{'vs in-process':>16}")
    print(f"{'in-process VictimService.embed':<44}{in_process:>10.0f}{1.0:>16.3f}")
    print(f"{'Ray actor, 1 caller':<44}{one:>10.0f}{one / in_process:>16.3f}")
    print(f"{'Ray actor, 2 concurrent callers (total)':<44}{two:>10.0f}{two / in_process:>16.3f}")


if __name__ == "__main__":
    main()
