"""Encoders by name (CIFAR-stem ResNets, a small CPU CNN), the projection head and the watermark predictor.

Every encoder takes float images in [0, 1] of shape (N, 3, H, W) and normalises them itself, so callers
(victim service, attacker, evaluation) never disagree about preprocessing.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from sslsteal.specs.encoders import ENCODERS

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)

Embed = Callable[[torch.Tensor], torch.Tensor]
"""Images -> representations: an encoder, the victim's API (an attacker's query), a defended answer."""


class Encoder(nn.Module):
    """Resizing (when `input_size` differs from the images'), normalisation + backbone; `dim` is the representation size."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(
        self,
        name: str,
        backbone: nn.Module,
        dim: int,
        channels_last: bool,
        mean: tuple[float, ...] = CIFAR_MEAN,
        std: tuple[float, ...] = CIFAR_STD,
        input_size: int | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        self.dim = dim
        self.channels_last = channels_last
        self.input_size = input_size
        self.backbone = backbone
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_size is not None and tuple(x.shape[-2:]) != (self.input_size, self.input_size):
            x = nn.functional.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", antialias=True, align_corners=False)
        x = (x - self.mean) / self.std
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.backbone(x)


def _cifar_resnet(factory: Callable[..., nn.Module], dim: int) -> tuple[nn.Module, int]:
    """A torchvision ResNet with the CIFAR stem: 3x3 stride-1 first conv, no max-pool, fc removed."""
    net = factory(weights=None)
    net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    net.fc = nn.Identity()
    return net, dim


@ENCODERS.implements("resnet18")
def resnet18() -> tuple[nn.Module, int]:
    from torchvision.models import resnet18 as factory

    return _cifar_resnet(factory, 512)


@ENCODERS.implements("resnet34")
def resnet34() -> tuple[nn.Module, int]:
    from torchvision.models import resnet34 as factory

    return _cifar_resnet(factory, 512)


@ENCODERS.implements("resnet50")
def resnet50() -> tuple[nn.Module, int]:
    from torchvision.models import resnet50 as factory

    return _cifar_resnet(factory, 2048)


def _conv_block(cin: int, cout: int) -> list[nn.Module]:
    """3x3 conv, batch norm, ReLU, then 2x2 max-pool: halving the resolution every block keeps CPU cost low."""
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True), nn.MaxPool2d(2)]


@ENCODERS.implements("small_cnn")
def small_cnn() -> tuple[nn.Module, int]:
    """Four conv blocks (32-64-128-256 channels, ~0.39M parameters, 32->2 px) and global average pooling: trains on 2 CPU cores."""
    layers = _conv_block(3, 32) + _conv_block(32, 64) + _conv_block(64, 128) + _conv_block(128, 256)
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten()), 256


def build_encoder(name: str) -> Encoder:
    """A freshly initialised encoder; CNNs use channels_last, which is fastest on CPU here."""
    backbone, dim = ENCODERS.implementation(name)()
    backbone = backbone.to(memory_format=torch.channels_last)
    return Encoder(name, backbone, dim, channels_last=True)


def mlp(dim_in: int, hidden: int, dim_out: int) -> nn.Sequential:
    """Two-layer MLP with batch norm, as SimCLR's projection head."""
    return nn.Sequential(nn.Linear(dim_in, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True), nn.Linear(hidden, dim_out))


class ProjectionHead(nn.Sequential):
    """SimCLR projection head g: representation y -> latent z used by the contrastive loss."""

    def __init__(self, dim: int, hidden: int, out_dim: int) -> None:
        super().__init__(*mlp(dim, hidden, out_dim))
        self.out_dim = out_dim


class AugmentationPredictor(nn.Sequential):
    """Watermark predictor: representation -> logits over the two rotation intervals [0,180) and [180,360)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__(*mlp(dim, hidden, 2))


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@torch.no_grad()
def encode(encoder: nn.Module | Embed, images: torch.Tensor, batch_size: int = 512, device: torch.device | None = None) -> torch.Tensor:
    """Representations of uint8 or float images in batches (a module in eval mode, on its own device unless `device`
    says), as a float32 CPU tensor (N, dim)."""
    from sslsteal.data.augment import to_float

    if isinstance(encoder, nn.Module):
        encoder.eval()
        if device is None:
            device = next(encoder.parameters()).device
    out = []
    for start in range(0, len(images), batch_size):
        batch = to_float(images[start : start + batch_size])
        if device is not None:
            batch = batch.to(device, non_blocking=True)
        out.append(encoder(batch).float().cpu())
    return torch.cat(out)
