"""Victim checkpoints: saving, loading, and finding a cached one by config hash.

A checkpoint directory `<name>-<hash>/` holds `checkpoint.pt` (spec, weights) and `eval.json` (linear
evaluation results, filled lazily per downstream protocol). It is looked up next to the victim's config
file (`checkpoints/<name>-<hash>/`, how the repo ships trained victims) and then in the cache directory.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sslsteal.core.fileio import atomic_write
from sslsteal.data.augment import to_float
from sslsteal.models import AugmentationPredictor, Encoder, ProjectionHead, build_encoder
from sslsteal.specs.base import ConfigError
from sslsteal.specs.external import ExternalVictimSpec
from sslsteal.specs.victim import VictimSpec

CHECKPOINT = "checkpoint.pt"
EVAL = "eval.json"


def victims_dir() -> Path:
    """Where trained victims are cached: `$SSLSTEAL_CACHE/victims` (default ~/.cache/sslsteal/victims)."""
    from sslsteal.data.loaders import cache_dir

    return cache_dir() / "victims"


@dataclass
class Victim:
    """A trained SimCLR encoder with its projection head and, when watermarked, its augmentation predictor; or an
    external encoder (`ExternalVictimSpec`), which has neither."""

    spec: VictimSpec | ExternalVictimSpec
    encoder: Encoder
    head: ProjectionHead | None
    predictor: AugmentationPredictor | None
    path: Path | None = None
    history: list[dict[str, float]] = field(default_factory=list)

    def to(self, device: torch.device) -> Victim:
        for m in self.modules():
            m.to(device)
        return self

    def modules(self) -> list[torch.nn.Module]:
        return [m for m in (self.encoder, self.head, self.predictor) if m is not None]

    def eval(self) -> Victim:
        for m in self.modules():
            m.eval()
        return self

    @torch.no_grad()
    def embed(self, images: torch.Tensor, head: bool = False) -> torch.Tensor:
        """Representations y = f(x) of uint8 or [0,1] float images, or the head output z = g(f(x)) when `head`."""
        device = next(self.encoder.parameters()).device
        y = self.encoder(to_float(images).to(device))
        return (self.projection(y) if head else y).float()

    def recipe(self, needs: str) -> VictimSpec:
        """How this victim was trained; a ConfigError naming what `needs` it when the victim is an external encoder."""
        if not isinstance(self.spec, VictimSpec):
            raise ConfigError([f"{needs}: victim {self.spec.key} is an external encoder, with no training recipe to train honest references by"])
        return self.spec

    def projection(self, y: torch.Tensor) -> torch.Tensor:
        """The head output z = g(y); ValueError for a victim without a projection head (an external encoder)."""
        if self.head is None:
            raise ValueError(f"victim {self.spec.key} has no projection head (an external encoder): only its representations can be queried")
        return self.head(y)


def build_victim(spec: VictimSpec) -> Victim:
    """Freshly initialised victim networks for `spec` (seeded)."""
    torch.manual_seed(spec.seed)
    encoder = build_encoder(spec.encoder)
    head = ProjectionHead(encoder.dim, spec.head_hidden, spec.projection_dim)
    predictor = AugmentationPredictor(encoder.dim, spec.watermark.hidden) if spec.watermark else None
    return Victim(spec, encoder, head, predictor)


def victim_bytes(victim: Victim) -> bytes:
    """The checkpoint file's content for a victim trained here (spec, hash, weights, training history)."""
    assert victim.head is not None, "external victims are packaged by sslsteal.victim.external"
    state = {
        "spec": victim.spec.model_dump(),
        "hash": victim.spec.config_hash(),
        "encoder": victim.encoder.state_dict(),
        "head": victim.head.state_dict(),
        "predictor": victim.predictor.state_dict() if victim.predictor else None,
        "history": victim.history,
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def save_victim(victim: Victim | bytes, directory: Path) -> Path:
    """Write `checkpoint.pt` (from a victim or a checkpoint's bytes) into `directory` atomically; returns its path."""
    content = victim if isinstance(victim, bytes) else victim_bytes(victim)
    path = directory / CHECKPOINT
    atomic_write(path, lambda f: f.write(content))
    if not isinstance(victim, bytes):
        victim.path = path
    return path


def load_victim(source: str | Path | bytes, map_location: str | torch.device = "cpu") -> Victim:
    """Load a victim from a checkpoint file, its directory, or the file's bytes (as shipped through Ray's object store)."""
    if isinstance(source, bytes):
        return victim_from_state(read_state(source, map_location))
    p = Path(source)
    if p.is_dir():
        p = p / CHECKPOINT
    if not p.is_file():
        raise FileNotFoundError(f"no victim checkpoint at {p}")
    return victim_from_state(read_state(p, map_location), p)


def read_state(source: Path | bytes, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A checkpoint's saved state (tensors and spec), deserialised: a trial worker keeps it for every trial it runs."""
    return dict(torch.load(io.BytesIO(source) if isinstance(source, bytes) else source, map_location=map_location, weights_only=True))


def victim_from_state(state: dict[str, Any], path: Path | None = None) -> Victim:
    """Fresh modules holding a saved state's weights, in eval mode: two victims built from one state share no parameter."""
    if "external" in state:
        from sslsteal.victim.external import external_victim

        return external_victim(state, path)
    spec = VictimSpec.model_validate(state["spec"])
    victim = build_victim(spec)
    victim.encoder.load_state_dict(state["encoder"])
    assert victim.head is not None
    victim.head.load_state_dict(state["head"])
    if victim.predictor is not None:
        victim.predictor.load_state_dict(state["predictor"])
    victim.path = path
    victim.history = list(state.get("history", []))
    return victim.eval()


def checkpoint_hash(path: str | Path) -> str:
    """The config hash stored in a checkpoint."""
    return str(torch.load(Path(path), map_location="cpu", weights_only=True)["hash"])


def candidate_dirs(spec: VictimSpec, config_path: str | Path | None = None) -> list[Path]:
    """Directories where `spec`'s checkpoint may live, shipped copy first."""
    dirs = []
    if config_path is not None:
        dirs.append(Path(config_path).resolve().parent / "checkpoints" / spec.key)
    dirs.append(victims_dir() / spec.key)
    return dirs


def find_cached(spec: VictimSpec, config_path: str | Path | None = None) -> Path | None:
    """The checkpoint for exactly this spec (hash-checked), if one exists."""
    for d in candidate_dirs(spec, config_path):
        ckpt = d / CHECKPOINT
        if ckpt.is_file() and checkpoint_hash(ckpt) == spec.config_hash():
            return ckpt
    return None


def read_eval(checkpoint: Path) -> dict[str, Any]:
    """Cached evaluation results stored beside a checkpoint (empty when none)."""
    p = checkpoint.parent / EVAL
    return json.loads(p.read_text()) if p.is_file() else {}


def write_eval(checkpoint: Path, results: dict[str, Any]) -> None:
    """Merge `results` into the evaluation cache beside a checkpoint (skipped when the folder is read-only)."""
    p = checkpoint.parent / EVAL
    merged = {**read_eval(checkpoint), **results}
    if os.access(p.parent, os.W_OK):
        atomic_write(p, lambda f: f.write(json.dumps(merged, indent=2, sort_keys=True).encode()))
