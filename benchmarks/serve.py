"""The HTTP API's cost over the actor it fronts: images/second and request latency (p50, p99) at batch 256, through
`sslsteal serve`'s application (FastAPI ingress on Ray Serve, `.npy` bodies) and straight to the same victim actor,
with 1 and 4 clients (one account each), alternating the two paths over several rounds in one run.

Run: python benchmarks/serve.py [--victim CHECKPOINT] [--rounds 5] [--seconds 4] [--cpus 2]
Prints one row per path and client count (median images/s over the rounds with its range, latency percentiles over
every request), then the HTTP/actor throughput ratio per client count: the median over rounds with its range.
Target (issue 26): HTTP at least 0.8 of the actor's throughput at batch 256 with 4 clients.
"""

from __future__ import annotations

import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from victim_service import BATCH, parse_args, victim_checkpoint  # benchmarks/ is on the path when a script here runs

CLIENTS = (1, 4)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _measure(callers: list[Callable[[], None]], seconds: float) -> tuple[float, list[float]]:
    """Images/second of `callers` run together, each in its own thread for `seconds` after a warm-up call, and the
    latency of every request they made (seconds)."""
    latencies: list[list[float]] = [[] for _ in callers]
    start_line = threading.Barrier(len(callers) + 1)

    def loop(i: int) -> None:
        try:
            callers[i]()  # warm-up: connection, first-call allocations
        except BaseException:
            start_line.abort()  # the others, and the main thread, stop waiting for this caller
            raise
        start_line.wait()
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            callers[i]()
            latencies[i].append(time.perf_counter() - t0)

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(len(callers))]
    for t in threads:
        t.start()
    try:
        start_line.wait()
    except threading.BrokenBarrierError:
        for t in threads:
            t.join()
        raise SystemExit("a client failed before measuring (its traceback is above)") from None
    began = time.perf_counter()
    for t in threads:
        t.join()
    flat = [x for per in latencies for x in per]
    return len(flat) * BATCH / (time.perf_counter() - began), flat


def main() -> None:
    import ray
    import requests

    from sslsteal.api.keys import Account, digest
    from sslsteal.api.server import start_api, stop_api
    from sslsteal.victim.codec import NPY, write_npy

    args = parse_args(__doc__, "rounds; each measures every path and client count once", "measuring time of one path at one client count")

    keys = {f"c{i}": f"sk-bench-{i}-{'x' * 24}" for i in range(max(CLIENTS))}
    accounts = [Account(name, digest(key), 10**12, None) for name, key in keys.items()]
    images = np.random.default_rng(0).integers(0, 256, size=(BATCH, 3, 32, 32), dtype=np.uint8)
    body = write_npy(images)

    ray.init(num_cpus=int(args.cpus) + 1, include_dashboard=False, log_to_driver=False)
    with tempfile.TemporaryDirectory() as state:
        service = {"num_cpus": args.cpus, "max_batch": BATCH, "max_concurrency": max(CLIENTS)}
        served = start_api(victim_checkpoint(args.victim), accounts, port=_free_port(), state_dir=Path(state), service=service)
        ref = ray.put(images)

        def actor(name: str) -> Callable[[], None]:
            return lambda: ray.get(served.actor.embed.remote(ref, name))

        def http(name: str) -> Callable[[], None]:
            session = requests.Session()
            session.headers.update({"X-API-Key": keys[name], "Content-Type": NPY})

            def call() -> None:
                response = session.post(f"{served.url}/v1/embed", data=body, timeout=120)
                response.raise_for_status()

            return call

        paths = {"actor": actor, "HTTP": http}
        rates: dict[tuple[str, int], list[float]] = {(p, n): [] for p in paths for n in CLIENTS}
        latencies: dict[tuple[str, int], list[float]] = {(p, n): [] for p in paths for n in CLIENTS}
        for r in range(args.rounds):
            order = list(paths) if r % 2 == 0 else list(paths)[::-1]  # neither path always goes first
            for n in CLIENTS:
                for path in order:
                    rate, lat = _measure([paths[path](f"c{i}") for i in range(n)], args.seconds)
                    rates[path, n].append(rate)
                    latencies[path, n] += lat
            print(f"round {r + 1}/{args.rounds}: " + "  ".join(f"{p} x{n} {rates[p, n][-1]:.0f} img/s" for n in CLIENTS for p in paths), flush=True)
        stop_api()
    ray.shutdown()

    print(f"\n{'path (batch 256)':<22}{'clients':>8}{'img/s (median)':>16}{'range':>16}{'p50 ms':>9}{'p99 ms':>9}{'requests':>10}")
    for (path, n), values in rates.items():
        lat = np.asarray(latencies[path, n]) * 1000
        spread = f"[{min(values):.0f}, {max(values):.0f}]"
        print(f"{path:<22}{n:>8}{statistics.median(values):>16.0f}{spread:>16}{np.percentile(lat, 50):>9.1f}{np.percentile(lat, 99):>9.1f}{len(lat):>10}")
    print(f"\n{'HTTP / actor throughput':<30}{'median':>8}{'range over rounds':>22}")
    for n in CLIENTS:
        ratios = [h / a for h, a in zip(rates["HTTP", n], rates["actor", n], strict=True)]
        print(f"{f'{n} client(s)':<30}{statistics.median(ratios):>8.3f}{f'[{min(ratios):.3f}, {max(ratios):.3f}]':>22}")


if __name__ == "__main__":
    main()
