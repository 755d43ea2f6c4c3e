"""The victim: what it is trained on and how (`VictimSpec`, whose hash names its checkpoint), and how it is
served to attacker accounts (`ServiceSpec`)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Discriminator, Field, Tag, field_validator

from sslsteal.specs.base import StrictModel, apply_overrides, parse, read_yaml
from sslsteal.specs.datasets import DataRefText
from sslsteal.specs.defenses import defense_params
from sslsteal.specs.encoders import EncoderName
from sslsteal.specs.evaluate import ProbeSpec
from sslsteal.specs.external import ExternalVictimSpec, is_external

HASH_EXCLUDE = {"data_root", "evaluate"}
"""Where data is read from and how the victim is evaluated do not change its weights, so they stay out of the hash."""


class WatermarkSpec(StrictModel):
    """Rotation watermark (paper section 5.1): the encoder also learns which interval an image was rotated by."""

    weight: float = Field(1.0, gt=0, description="weight of the augmentation-predictor loss next to NT-Xent")
    hidden: int = Field(256, gt=0, description="hidden width of the augmentation predictor")
    fraction: float = Field(0.5, gt=0, le=1, description="share of each batch also seen as two rotated views")


class VictimSpec(StrictModel):
    """A SimCLR victim encoder: architecture, data and recipe (Adam, cosine schedule, NT-Xent)."""

    name: str = Field(..., min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    encoder: EncoderName = "small_cnn"
    data: DataRefText = "cifar10:train"
    train_images: int | None = Field(None, gt=0, description="deterministic subset of the data; all when null")
    epochs: int = Field(10, gt=0)
    batch_size: int = Field(256, ge=2)
    lr: float = Field(3e-4, gt=0)
    weight_decay: float = Field(1e-6, ge=0)
    temperature: float = Field(0.5, gt=0)
    head_hidden: int = Field(512, gt=0)
    projection_dim: int = Field(128, gt=0)
    watermark: WatermarkSpec | None = None
    evaluate: ProbeSpec = Field(default_factory=ProbeSpec)
    seed: int = 0
    data_root: str | None = None

    def config_hash(self) -> str:
        """Stable 12-hex-digit hash of everything that changes the trained weights."""
        payload = json.dumps(self.model_dump(exclude=HASH_EXCLUDE), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()[:12]

    @property
    def key(self) -> str:
        """Directory name of this victim's checkpoint: `<name>-<hash>`."""
        return f"{self.name}-{self.config_hash()}"


class ServiceSpec(StrictModel):
    """How the victim is served: per-account budget, request limits, default defense, resources."""

    budget: int = Field(10_000, gt=0, description="default per-account query budget")
    max_batch: int = Field(1024, gt=0, description="largest number of images in one request")
    defense: dict[str, Any] = Field(default_factory=lambda: {"name": "none"}, description="defense of accounts opened without their own")
    pow_mode: Literal["solve", "charge"] = Field("solve", description="solve: the caller must solve HashCash; charge: record expected hashes only")
    num_cpus: float = Field(0.0, ge=0, description="CPUs Ray reserves for the actor (its torch threads: this, at least 1); 0 leaves every CPU to the trials")
    num_gpus: float | Literal["auto"] = Field("auto", description="GPUs for the actor (fractional allowed); auto: 1 when the cluster has a GPU, else 0")
    resources: dict[str, float] = Field(default_factory=dict, description="custom Ray resources the actor needs, e.g. {victim_host: 1} to pin its node")
    max_concurrency: int = Field(4, gt=0, description="requests served at once (threads)")
    state_dir: str | None = Field(None, description="where per-account state is persisted; none: kept in memory only")
    idempotent_requests: int = Field(16, ge=1, description="latest request ids per account whose answers are kept, so a retry is answered free")
    seed: int = 0

    @field_validator("defense")
    @classmethod
    def _valid_defense(cls, v: dict[str, Any]) -> dict[str, Any]:
        defense_params(v)
        return v


def victim_kind(value: Any) -> str:
    """Discriminator of a victim reference: a path (checkpoint or YAML), an endpoint, an external encoder or an
    inline spec."""
    if isinstance(value, RemoteVictimSpec) or (isinstance(value, dict) and "url" in value):
        return "Remote"
    if not isinstance(value, (dict, BaseModel)):
        return "Path"
    return "External" if is_external(value) else "Spec"


LocalVictimRef = Annotated[
    Annotated[str, Tag("Path")] | Annotated[VictimSpec, Tag("Spec")] | Annotated[ExternalVictimSpec, Tag("External")],
    Discriminator(victim_kind),
]
"""A victim whose weights are at hand: a checkpoint file or folder, a victim YAML, an inline victim spec, or an
external encoder (`sslsteal.specs.external`)."""


class RemoteVictimSpec(StrictModel):
    """A victim behind an HTTP embedding API (`sslsteal serve`, or any endpoint that speaks its /v1 routes): the
    attacker queries it with one key, read from the environment; `model` is the same victim as the evaluator holds
    it (a provider auditing their own endpoint), used to score the copy and never queried for the attack."""

    url: str = Field(..., pattern=r"^https?://[^\s/]+", description="the endpoint's base URL, e.g. http://127.0.0.1:8000")
    api_key_env: str = Field(..., pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="the environment variable holding the API key (never the key itself)")
    format: Literal["npy", "json"] = Field("npy", description="request bodies: .npy arrays, or JSON with base64 PNG images")
    model: LocalVictimRef = Field(..., description="the victim that scores the copy: a victim YAML, checkpoint, inline spec or external encoder")

    def refusals(self, evaluate: Any, defense: str | None) -> list[str]:
        """What a run or sweep over an endpoint cannot do: the key is one account with the endpoint's own defense."""
        problems = []
        if defense not in (None, "none"):
            problems.append(f"defense.name: the endpoint applies its own defense to each key; a sweep over {self.url} sets none, not {defense}")
        if evaluate.legit:
            problems.append("evaluate.legit: the honest customer needs an account of its own, which one API key is not")
        if evaluate.transfer is not None and "knockoff" in evaluate.transfer.sources:
            problems.append("evaluate.transfer.sources: the knockoff needs its own paid account, which one API key is not; drop knockoff")
        return problems


VictimRef = Annotated[
    Annotated[str, Tag("Path")]
    | Annotated[VictimSpec, Tag("Spec")]
    | Annotated[ExternalVictimSpec, Tag("External")]
    | Annotated[RemoteVictimSpec, Tag("Remote")],
    Discriminator(victim_kind),
]
"""A run's or a sweep's `victim`: a local victim (`LocalVictimRef`) or an HTTP endpoint (`RemoteVictimSpec`)."""


def read_victim(path: Path, overrides: list[str] | None = None) -> VictimSpec | ExternalVictimSpec:
    """The victim a YAML file describes (after `key=value` overrides): an external encoder (its files found relative
    to the YAML's folder) or a victim trained here; ConfigError lines `victim.<key>: ...`."""
    data = apply_overrides(read_yaml(path), overrides or [])
    if is_external(data):
        return parse(ExternalVictimSpec, data, str(path)).resolved(path.resolve().parent)
    return parse(VictimSpec, data, str(path))
