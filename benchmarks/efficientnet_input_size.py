"""What reading CIFAR-10 at 128 px instead of EfficientNet-Lite0's native 224 px costs the victim: its throughput and
its linear-probe accuracy, both sizes on the same probe images, measured in this run.

Run: SSLSTEAL_DATA=../shared/data python benchmarks/efficientnet_input_size.py [--train-images 2000] [--test-images 2000]
(needs the efficientnet extra; prints one row per input size and the difference in accuracy)
"""

from __future__ import annotations

import argparse
import time

import torch

SIZES = (128, 224)


def _images_per_second(encoder: torch.nn.Module, images: torch.Tensor) -> float:
    from sslsteal.models import encode

    encode(encoder, images[:8], 8)  # warm-up: first-call allocations
    start = time.perf_counter()
    encode(encoder, images, 64)
    return len(images) / (time.perf_counter() - start)


def main() -> None:
    from sslsteal.core.device import set_threads
    from sslsteal.core.stats import wilson_interval
    from sslsteal.evaluation.probe import linear_eval, probe_data
    from sslsteal.specs.base import read_yaml
    from sslsteal.specs.external import ExternalVictimSpec
    from sslsteal.victim.checkpoint import load_victim
    from sslsteal.victim.external import external_checkpoint

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-images", type=int, default=2000, help="probe-training images (a fixed subset of cifar10:train)")
    parser.add_argument("--test-images", type=int, default=2000, help="probe-test images (a fixed subset of cifar10:test)")
    parser.add_argument("--victim", default="sweeps/victims/efficientnet-lite0.yaml", help="the victim file whose input_size is varied")
    args = parser.parse_args()

    threads = set_threads()
    base = ExternalVictimSpec.model_validate(read_yaml(args.victim))
    task = probe_data("cifar10", train_images=args.train_images, test_images=args.test_images)
    print(f"{base.packaged or base.name}: {args.train_images} probe-train, {args.test_images} probe-test CIFAR-10 images, {threads} thread(s)")
    print(f"{'input':>6}{'img/s':>8}{'acc':>8}{'95% Wilson':>18}{'s':>7}")
    accs = {}
    for size in SIZES:
        victim = load_victim(external_checkpoint(base.model_copy(update={"input_size": size})))
        start = time.perf_counter()
        rate = _images_per_second(victim.encoder, task.test_images[:256])
        accs[size] = acc = linear_eval(victim.encoder, task)
        lo, hi = wilson_interval(acc, args.test_images)
        print(f"{size:>6}{rate:>8.1f}{acc:>8.2f}{f'[{lo:.2f}, {hi:.2f}]':>18}{time.perf_counter() - start:>7.0f}")
    print(f"accuracy {SIZES[0]} px minus {SIZES[1]} px: {accs[SIZES[0]] - accs[SIZES[1]]:+.2f} points (same images)")


if __name__ == "__main__":
    main()
