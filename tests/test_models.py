"""Encoders by name, heads, and the watermark predictor's shapes."""

from __future__ import annotations

import pytest
import torch

from sslsteal.models import AugmentationPredictor, ProjectionHead, build_encoder, count_parameters
from sslsteal.specs.encoders import ENCODERS


@pytest.mark.parametrize("name,dim", [("small_cnn", 256), ("resnet18", 512), ("resnet34", 512), ("resnet50", 2048)])
def test_encoder_output_shape(name: str, dim: int) -> None:
    enc = build_encoder(name).eval()
    with torch.no_grad():
        out = enc(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, dim) and enc.dim == dim and torch.isfinite(out).all()


def test_resnet_has_cifar_stem() -> None:
    backbone = build_encoder("resnet18").backbone
    assert backbone.conv1.kernel_size == (3, 3) and backbone.conv1.stride == (1, 1)
    assert isinstance(backbone.maxpool, torch.nn.Identity) and isinstance(backbone.fc, torch.nn.Identity)


def test_small_cnn_is_cpu_sized() -> None:
    assert 350_000 < count_parameters(build_encoder("small_cnn")) < 420_000


def test_unknown_encoder_lists_known() -> None:
    with pytest.raises(KeyError, match="small_cnn"):
        build_encoder("vit_h14")
    assert set(ENCODERS) == {"small_cnn", "resnet18", "resnet34", "resnet50"}


def test_heads() -> None:
    y = torch.randn(4, 256)
    assert ProjectionHead(256, 64, 32)(y).shape == (4, 32)
    assert AugmentationPredictor(256, 64)(y).shape == (4, 2)
