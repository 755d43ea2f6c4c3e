"""The data protocol: which images score a run, and the rule that none of them was queried by the attacker.

The attacker draws its queries from a pool, `attack.query_data` (a split or a slice of one, e.g.
`cifar10:test[:9000]`). Every set that scores something (the linear probe's test images, fidelity images,
ownership's public images, the validation images a search optimises, per-epoch monitor images) is its
declared set minus the whole pool, so the scored images are the same for every attacker seed. Runs log how
many images each scored set kept (`eval.test_images.<ds>`, ...); validation refuses a configuration that
would leave fewer than `MIN_SCORED`, naming the keys; and each scored set is checked against the images
actually queried before anything is scored on it (sslsteal.evaluation.protocol).
"""

from __future__ import annotations

from sslsteal.specs.attack import AttackSpec
from sslsteal.specs.datasets import DATASETS, DataRef, parse_ref, parse_spec
from sslsteal.specs.evaluate import EvaluateSpec
from sslsteal.specs.external import ExternalVictimSpec
from sslsteal.specs.victim import VictimSpec

MIN_SCORED = 100
"""Fewest images a scored set may keep after the query pool is removed."""


def other_split(spec: str) -> str:
    """The dataset's other labelled split (`cifar10:test` for `cifar10:train[:100]`), or the same split when it has no other."""
    name, split = parse_spec(spec)
    others = [s for s in DATASETS[name].splits if s not in (split, "unlabeled")]
    return f"{name}:{others[0] if others else split}"


def left(spec: str, pool: DataRef) -> int:
    """Images of `spec` outside `pool`, from the registered split sizes (no data is loaded)."""
    ref = parse_ref(spec)
    return ref.size - ref.overlap(pool)


def protocol_problems(attack: AttackSpec, evaluate: EvaluateSpec, victim: VictimSpec | ExternalVictimSpec | None) -> list[str]:
    """Every scored set this configuration would leave (nearly) empty once the query pool is removed, as key-path lines."""
    pool = attack.pool
    downstream = evaluate.downstream or (victim.evaluate.downstream if victim is not None else [])
    problems = []
    for ds in downstream:
        n = left(f"{ds}:test", pool)
        if n < MIN_SCORED:
            cut = DATASETS[ds].sizes["test"] * 9 // 10
            problems.append(
                f"attack.query_data: the query pool {pool} leaves {n} {ds}:test images to score evaluate.downstream ({ds}), "
                f"fewer than {MIN_SCORED}: query a slice such as {ds}:test[:{cut}], or another split"
            )
        probe_train = min(victim.evaluate.train_images or DATASETS[ds].sizes["train"], DATASETS[ds].sizes["train"]) if victim else DATASETS[ds].sizes["train"]
        if evaluate.val_images > probe_train // 2:
            problems.append(
                f"evaluate.val_images: {evaluate.val_images} validation images are held out of the {probe_train} {ds}:train images "
                f"the probe trains on; use at most half of them ({probe_train // 2})"
            )
        need = evaluate.val_images + evaluate.monitor_images + evaluate.monitor_images // 2
        if need and left(f"{ds}:train", pool) < need:
            key = "evaluate.val_images" if evaluate.val_images else "evaluate.monitor_images"
            problems.append(
                f"{key}: validation and monitor images come from {ds}:train outside the query pool {pool}, "
                f"which leaves {left(f'{ds}:train', pool)} of the {need} needed: query a slice of {ds}:train, or another split"
            )
    fidelity = evaluate.fidelity_data or other_split(attack.query_data)
    if left(fidelity, pool) < MIN_SCORED:
        problems.append(f"evaluate.fidelity_data: {fidelity} has {left(fidelity, pool)} images outside the query pool {pool}, fewer than {MIN_SCORED}")
    if evaluate.ownership and isinstance(victim, VictimSpec):
        public = other_split(victim.data)
        if left(public, pool) < MIN_SCORED:
            problems.append(
                f"evaluate.ownership: the public images ({public}) keep {left(public, pool)} outside the query pool {pool}, "
                f"fewer than {MIN_SCORED}: query a slice of {public}"
            )
    return problems
