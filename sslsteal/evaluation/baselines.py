"""Cached reference figures every run is compared with: the victim's own accuracy and the random-encoder floor.

A randomly initialised conv net already gets about half of CIFAR-10 right with a linear probe, so stolen
accuracy is reported both as a ratio to the victim and as the share of the victim's gain over that floor.
The floor is the mean over `RANDOM_INITS` independent initialisations (streams of their own, never the
victim's or an attacker's), each cached per protocol. Both figures are measured on the same test images as
the stolen encoder: the downstream test split minus the attacker's query pool.
"""

from __future__ import annotations

import functools
import json
import statistics
from collections.abc import Callable
from typing import BinaryIO

from sslsteal.core.seeding import seeded
from sslsteal.evaluation.probe import ProbeData, linear_eval, probe_data
from sslsteal.models import Encoder, build_encoder
from sslsteal.specs.datasets import DataRef
from sslsteal.specs.evaluate import ProbeSpec
from sslsteal.victim.checkpoint import Victim, read_eval, write_eval

WATERMARK_IMAGES = 2000
"""Victim training images (a fixed subset) used to measure watermark success."""
RANDOM_INITS = 3
"""Independent random initialisations the floor averages over."""


def _task(probe: ProbeSpec, dataset: str, pool: DataRef | None, root: str | None) -> ProbeData:
    return probe_data(dataset, train_images=probe.train_images, test_images=probe.test_images, pool=pool, root=root)


def _stored(victim: Victim, key: str, compute: Callable[[], float]) -> float:
    """`key` from the evaluation cache beside the victim's checkpoint, computed and stored there when missing."""
    cached = read_eval(victim.path) if victim.path else {}
    if key in cached:
        return float(cached[key])
    value = compute()
    if victim.path:
        write_eval(victim.path, {key: value})
    return value


def victim_accuracy(victim: Victim, dataset: str, probe: ProbeSpec, root: str | None = None, pool: DataRef | None = None) -> float:
    """The victim's linear-evaluation accuracy on `dataset` (test images outside `pool`), stored beside its checkpoint."""
    return _stored(victim, f"acc.{probe.key(dataset, pool)}", lambda: linear_eval(victim.encoder, _task(probe, dataset, pool, root)))


def random_encoder(encoder: str, init: int) -> Encoder:
    """Random initialisation number `init` of `encoder`, from the floor's own stream."""
    with seeded(init, "random_floor.init"):
        return build_encoder(encoder)


def random_accuracies(encoder: str, dataset: str, probe: ProbeSpec, *, pool: DataRef | None = None, root: str | None = None) -> list[float]:
    """Linear-evaluation accuracy of each of `RANDOM_INITS` random `encoder`s, cached per protocol and init."""
    from sslsteal.core.fileio import atomic_write
    from sslsteal.data.loaders import cache_dir

    path = cache_dir() / "baselines" / f"random-{encoder}.json"
    out = []
    for init in range(RANDOM_INITS):
        cached = json.loads(path.read_text()) if path.is_file() else {}
        key = f"{probe.key(dataset, pool)}|init={init}"
        if key not in cached:
            cached[key] = linear_eval(random_encoder(encoder, init), _task(probe, dataset, pool, root))
            atomic_write(path, functools.partial(_write_json, cached))
        out.append(float(cached[key]))
    return out


def random_floor(encoder: str, dataset: str, probe: ProbeSpec, *, pool: DataRef | None = None, root: str | None = None) -> dict[str, float]:
    """`random_acc.<ds>` (mean over the inits) and `random_acc.<ds>.std` (their standard deviation)."""
    accs = random_accuracies(encoder, dataset, probe, pool=pool, root=root)
    return {f"random_acc.{dataset}": statistics.fmean(accs), f"random_acc.{dataset}.std": statistics.stdev(accs) if len(accs) > 1 else 0.0}


def victim_watermark_accuracy(victim: Victim, root: str | None = None) -> float | None:
    """The victim's own watermark success rate on a fixed subset of its training images (None if unwatermarked)."""
    from sslsteal.data import loaders
    from sslsteal.evaluation.watermark import watermark_accuracy

    predictor = victim.predictor
    if predictor is None:
        return None

    def compute() -> float:
        spec = victim.recipe("watermark")
        images = loaders.load(spec.data, root=root, size=WATERMARK_IMAGES, seed=spec.seed + 1).to_shape(3, 32).images
        return watermark_accuracy(victim.encoder.eval(), predictor, images)

    return _stored(victim, "watermark.acc", compute)


def baselines(victim: Victim, encoder: str, downstream: list[str], *, pool: DataRef | None = None, root: str | None = None) -> dict[str, float]:
    """Victim and random-floor accuracy per downstream dataset, on the test images outside `pool`."""
    probe = victim.spec.evaluate
    out: dict[str, float] = {}
    for ds in downstream:
        out[f"victim_acc.{ds}"] = victim_accuracy(victim, ds, probe, root, pool)
        out.update(random_floor(encoder, ds, probe, pool=pool, root=root))
    return out


def victim_report(victim: Victim, root: str | None = None) -> dict[str, float]:
    """Victim and random-floor accuracy on every configured downstream dataset (whole test splits), plus watermark success."""
    out = baselines(victim, victim.spec.encoder, victim.spec.evaluate.downstream, root=root)
    wm = victim_watermark_accuracy(victim, root)
    if wm is not None:
        out["watermark.acc"] = wm
    return out


def _write_json(payload: object, f: BinaryIO) -> None:
    f.write(json.dumps(payload, indent=2, sort_keys=True).encode())
