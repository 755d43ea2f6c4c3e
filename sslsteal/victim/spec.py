"""Victim configuration: what a victim is trained on and how, and the hash that names its checkpoint."""

from __future__ import annotations

import hashlib
import json

from pydantic import Field, field_validator

from sslsteal.config import StrictModel
from sslsteal.evaluate import ProbeSpec
from sslsteal.registry import unknown_name

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
    encoder: str = "small_cnn"
    data: str = "cifar10:train"
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

    @field_validator("encoder")
    @classmethod
    def _known_encoder(cls, v: str) -> str:
        from sslsteal.models import ENCODERS

        if v not in ENCODERS:
            raise ValueError(unknown_name("encoder", v, ENCODERS))
        return v

    @field_validator("data")
    @classmethod
    def _known_data(cls, v: str) -> str:
        from sslsteal.data import parse_spec

        parse_spec(v)
        return v

    def config_hash(self) -> str:
        """Stable 12-hex-digit hash of everything that changes the trained weights."""
        payload = json.dumps(self.model_dump(exclude=HASH_EXCLUDE), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()[:12]

    @property
    def key(self) -> str:
        """Directory name of this victim's checkpoint: `<name>-<hash>`."""
        return f"{self.name}-{self.config_hash()}"
