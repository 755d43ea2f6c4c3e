"""The encoder architectures a spec may name (victim, attacker, references); `sslsteal.models` builds them."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

from sslsteal.core.registry import Registry

ENCODERS: Registry[str] = Registry("encoder")
"""Encoder name -> what it is; the builder attaches with `@ENCODERS.implements(name)`."""

ENCODERS.add("small_cnn", "four conv blocks (32-64-128-256 channels, ~0.39M parameters) and global average pooling: trains on 2 CPU cores")
ENCODERS.add("resnet18", "torchvision ResNet-18 with the CIFAR stem (3x3 stride-1 first conv, no max-pool), 512-d")
ENCODERS.add("resnet34", "torchvision ResNet-34 with the CIFAR stem, 512-d (the paper's victim)")
ENCODERS.add("resnet50", "torchvision ResNet-50 with the CIFAR stem, 2048-d")

EncoderName = Annotated[str, AfterValidator(ENCODERS.check)]
"""A spec field naming a declared encoder."""
