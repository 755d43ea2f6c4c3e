"""The independent reference encoders that calibrate ownership tests: honest models trained like the victim.

Same architecture, data and recipe as the victim, another seed (so another init, data order and augmentations)
and no watermark: what an honest party would get by training on its own. Reference `index` (1, 2, 3, ...) has
seed victim seed + index and the name `<name>-ref` (index 1) or `<name>-ref<index>`. Each is trained once and
cached exactly like a victim (`<name>-ref<index>-<hash>`), and looked up next to the victim's shipped checkpoint first.
"""

from __future__ import annotations

from pathlib import Path

from sslsteal.specs.victim import VictimSpec
from sslsteal.victim.checkpoint import CHECKPOINT, Victim, checkpoint_hash, load_victim


def reference_spec(victim: VictimSpec, index: int = 1) -> VictimSpec:
    """Reference number `index` (from 1): the victim's recipe with seed victim seed + index and without the watermark."""
    if index < 1:
        raise ValueError(f"reference index must be 1 or more, got {index}")
    name = f"{victim.name}-ref" if index == 1 else f"{victim.name}-ref{index}"
    return victim.model_copy(update={"name": name, "seed": victim.seed + index, "watermark": None})


def _shipped(spec: VictimSpec, victim: Victim) -> Path | None:
    """A reference checkpoint shipped beside the victim's (`checkpoints/<victim-key>/` -> `checkpoints/<ref-key>/`)."""
    if victim.path is None:
        return None
    ckpt = victim.path.parent.parent / spec.key / CHECKPOINT
    return ckpt if ckpt.is_file() and checkpoint_hash(ckpt) == spec.config_hash() else None


def find_references(victim: Victim, indices: list[int], data_root: str | None = None) -> list[tuple[VictimSpec, Path | None]]:
    """Each reference's spec and its shipped or cached checkpoint (None when it has not been trained yet)."""
    from sslsteal.victim.checkpoint import find_cached

    found = []
    for index in indices:
        spec = reference_spec(victim.recipe("evaluate.ownership"), index)
        if data_root and not spec.data_root:
            spec = spec.model_copy(update={"data_root": data_root})
        found.append((spec, _shipped(spec, victim) or find_cached(spec)))
    return found


def get_references(victim: Victim, indices: list[int], *, data_root: str | None = None, progress: bool = True) -> list[Victim]:
    """References `indices` of `victim`: shipped, cached, or trained now (slow: each as long as the victim took)."""
    from sslsteal.victim.train import get_or_train

    references = []
    for spec, path in find_references(victim, indices, data_root):
        if path is None:
            path, _ = get_or_train(spec, progress=progress)
        references.append(load_victim(path))
    return references
