"""Cached reference figures every run is compared with: the victim's own accuracy and the random-encoder floor.

A randomly initialised conv net already gets about half of CIFAR-10 right with a linear probe, so stolen
accuracy is reported both as a ratio to the victim and as the share of the victim's gain over that floor.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import torch

from sslsteal.evaluate import ProbeData, ProbeSpec, linear_eval, probe_data
from sslsteal.models import build_encoder
from sslsteal.victim.checkpoint import Victim, read_eval, write_eval

WATERMARK_IMAGES = 2000
"""Victim training images (a fixed subset) used to measure watermark success."""


def _task(probe: ProbeSpec, dataset: str, root: str | None) -> ProbeData:
    return probe_data(dataset, train_images=probe.train_images, test_images=probe.test_images, root=root)


def _stored(victim: Victim, key: str, compute: Callable[[], float]) -> float:
    """`key` from the evaluation cache beside the victim's checkpoint, computed and stored there when missing."""
    cached = read_eval(victim.path) if victim.path else {}
    if key in cached:
        return float(cached[key])
    value = compute()
    if victim.path:
        write_eval(victim.path, {key: value})
    return value


def victim_accuracy(victim: Victim, dataset: str, probe: ProbeSpec, root: str | None = None) -> float:
    """The victim's linear-evaluation accuracy on `dataset`, computed once and stored beside its checkpoint."""
    return _stored(victim, f"acc.{probe.key(dataset)}", lambda: linear_eval(victim.encoder, _task(probe, dataset, root)))


def random_accuracy(encoder: str, dataset: str, probe: ProbeSpec, seed: int = 0, root: str | None = None) -> float:
    """Linear-evaluation accuracy of a randomly initialised `encoder` (the floor), cached per protocol."""
    from sslsteal.data import cache_dir

    path = cache_dir() / "baselines" / f"random-{encoder}-seed{seed}.json"
    cached = json.loads(path.read_text()) if path.is_file() else {}
    key = probe.key(dataset)
    if key not in cached:
        torch.manual_seed(seed)
        cached[key] = linear_eval(build_encoder(encoder), _task(probe, dataset, root))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(cached, indent=2, sort_keys=True))
    return float(cached[key])


def victim_watermark_accuracy(victim: Victim, root: str | None = None) -> float | None:
    """The victim's own watermark success rate on a fixed subset of its training images (None if unwatermarked)."""
    from sslsteal import data
    from sslsteal.watermark import watermark_accuracy

    predictor = victim.predictor
    if predictor is None:
        return None

    def compute() -> float:
        images = data.load(victim.spec.data, root=root, size=WATERMARK_IMAGES, seed=victim.spec.seed + 1).to_shape(3, 32).images
        return watermark_accuracy(victim.encoder.eval(), predictor, images)

    return _stored(victim, "watermark.acc", compute)


def victim_report(victim: Victim, root: str | None = None) -> dict[str, float]:
    """Victim and random-floor accuracy on every configured downstream dataset, plus watermark success."""
    probe = victim.spec.evaluate
    out: dict[str, float] = {}
    for ds in probe.downstream:
        out[f"victim_acc.{ds}"] = victim_accuracy(victim, ds, probe, root)
        out[f"random_acc.{ds}"] = random_accuracy(victim.spec.encoder, ds, probe, root=root)
    wm = victim_watermark_accuracy(victim, root)
    if wm is not None:
        out["watermark.acc"] = wm
    return out
