"""Sharing CIFAR-10 with a sweep's trials: Ray Data (read_parquet + map_batches decode) against one process decoding.

Run: SSLSTEAL_DATA=../shared/data python benchmarks/ray_data.py [--cpus 2] [--splits cifar10:train cifar10:test]
Prints, from one run, with Ray started on `--cpus` CPUs and an empty decoded-array cache for each cold read (the two
cold variants alternate for `--rounds` rounds; the ratio is of their means):
- driver, cold: decode every split in this process and put the arrays in the object store (the path before Ray Data);
- driver, cold: `share_datasets` (Ray Data reads the Parquet files in one execution and decodes them across the
  CPUs; the driver gathers the rows, writes its decoded-array cache, as the in-process path does, and puts them);
- driver, warm: `share_datasets` when the decoded-array cache exists (two file reads, then the object store);
- the ratio Ray Data / in-process on the driver (a trial then reads either from the object store without a copy);
- bulk embedding: a small-CNN encoder's features of the first split, in this process against Ray Data batch
  inference with `--actors` actors of 1 CPU (`sslsteal.orchestration.batch_inference.embed`), and the ratio.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def timed(work: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = work()
    return time.perf_counter() - start, out


def main() -> None:
    import numpy as np
    import ray

    from sslsteal.data import loaders
    from sslsteal.orchestration.ray_data import SharedSplit, share_datasets

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--splits", nargs="+", default=["cifar10:train", "cifar10:test"])
    parser.add_argument("--actors", type=int, default=2, help="bulk-inference actors (1 CPU each)")
    parser.add_argument("--rounds", type=int, default=3, help="cold reads of each variant, alternating")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ray-data-bench-"))
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)

    def fresh_cache(name: str) -> None:
        os.environ["SSLSTEAL_CACHE"] = str(work / name)

    times: dict[str, list[float]] = {"in-process": [], "ray-data": []}
    for i in range(args.rounds):  # alternating, so neither variant alone pays this process's first imports
        fresh_cache(f"in-process-{i}")
        in_process_s, puts = timed(lambda: {s: SharedSplit(s, ray.put(loaders.arrays(s)), "driver") for s in args.splits})
        fresh_cache(f"ray-data-{i}")
        assert not any(loaders.is_cached(s) for s in args.splits)
        ray_data_s, shared = timed(lambda: share_datasets(args.splits))
        assert all(split.decoded_by == "ray-data" for split in shared.values()), "expected Parquet sources for every split"
        for spec, split in shared.items():
            assert all(np.array_equal(a, b) for a, b in zip(ray.get(split.arrays), ray.get(puts[spec].arrays), strict=True)), spec
        times["in-process"].append(in_process_s)
        times["ray-data"].append(ray_data_s)
    fresh_cache("in-process-0")  # its cache was written by the first variant
    warm_s, warm = timed(lambda: share_datasets(args.splits))
    assert all(split.decoded_by == "driver" for split in warm.values())

    images = sum(len(ray.get(split.arrays)[1]) for split in puts.values())
    mean = {k: sum(v) / len(v) for k, v in times.items()}
    print(f"{images} images from {', '.join(args.splits)}; Ray on {args.cpus} CPUs; {args.rounds} rounds, cold each time")
    print(f"driver, cold: decode in one process + put: {', '.join(f'{t:.2f}' for t in times['in-process'])} s")
    print(f"driver, cold: Ray Data read_parquet + map_batches decode: {', '.join(f'{t:.2f}' for t in times['ray-data'])} s")
    print(f"ratio of the means, Ray Data / in-process = {mean['ray-data'] / mean['in-process']:.3f} (target <= 1)")
    print(f"driver, warm (decoded-array cache present): {warm_s:.2f} s")
    bulk_embedding(args.splits[0], args.actors)
    ray.shutdown()


def bulk_embedding(split: str, actors: int) -> None:
    """Features of `split` by a freshly initialised small CNN: in this process, then through the actor pool."""
    import numpy as np
    import torch

    from sslsteal.core.device import set_threads
    from sslsteal.data import loaders
    from sslsteal.evaluation.probe import extract_features
    from sslsteal.models import build_encoder
    from sslsteal.orchestration.batch_inference import embed
    from sslsteal.specs.sweep import BulkInference

    images = loaders.load(split).images
    torch.manual_seed(0)
    encoder = build_encoder("small_cnn").eval()
    set_threads(actors)  # the same CPUs as the pool
    local_s, local = timed(lambda: extract_features(encoder, images))
    bulk_s, bulk = timed(lambda: embed(encoder, images, BulkInference(min_images=1, actors=actors)))
    assert np.allclose(local, bulk, atol=1e-5)
    print(
        f"bulk embedding of {len(images)} {split} images: in-process ({actors} threads) {local_s:.2f} s, Ray Data ({actors} actors) {bulk_s:.2f} s; ratio = {bulk_s / local_s:.3f}"
    )


if __name__ == "__main__":
    main()
