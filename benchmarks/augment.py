"""SimCLR augmentation throughput on this machine: batched tensor ops vs torchvision per-image transforms.

Run: python benchmarks/augment.py   (prints images/second for each option, measured in this run)
"""

from __future__ import annotations

import time

import numpy as np
import torch
from PIL import Image


def _rate(fn, n: int, repeats: int = 3) -> float:
    fn()
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = max(best, n / (time.perf_counter() - start))
    return best


def main() -> None:
    from torchvision.transforms import v2

    from sslsteal.data.augment import SimCLRAugment, to_float

    torch.manual_seed(0)
    batch = torch.randint(0, 256, (256, 3, 32, 32), dtype=torch.uint8)
    pil = [Image.fromarray(img.permute(1, 2, 0).numpy()) for img in batch]
    tv = v2.Compose(
        [
            v2.RandomResizedCrop(32, scale=(0.2, 1.0)),
            v2.RandomHorizontalFlip(),
            v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            v2.RandomGrayscale(p=0.2),
        ]
    )
    ours = SimCLRAugment()
    rows = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        rows.append((f"sslsteal batched, {threads} thread(s)", _rate(lambda: ours(to_float(batch)), len(batch))))
    torch.set_num_threads(1)
    rows.append(("torchvision v2 per image on PIL, 1 thread", _rate(lambda: [np.asarray(tv(p)) for p in pil], len(pil))))
    rows.append(("torchvision v2 per image on tensors, 1 thread", _rate(lambda: [tv(img) for img in batch], len(batch))))
    rows.append(("torchvision v2 on the whole batch (one set of params), 1 thread", _rate(lambda: tv(batch), len(batch))))
    base = rows[-3][1]
    print(f"{'option':<66}{'img/s':>10}{'vs PIL':>8}")
    for name, rate in rows:
        print(f"{name:<66}{rate:>10.0f}{rate / base:>8.2f}")


if __name__ == "__main__":
    main()
