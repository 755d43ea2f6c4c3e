"""Stolen-encoder files round-trip, and `same_weights` tells a copy of an encoder from another encoder."""

from __future__ import annotations

import copy

import torch
from torch import nn

from sslsteal.attacks import StolenModel
from sslsteal.models import build_encoder
from sslsteal.pipeline.suspect import load_suspect, same_weights, save_stolen


def test_saved_stolen_encoder_loads_with_its_weights_and_adapter(tmp_path):
    torch.manual_seed(0)
    stolen = StolenModel(encoder=build_encoder("small_cnn"), head=nn.Linear(256, 64), queries_used=10)
    path = save_stolen(stolen, tmp_path / "s.pt", victim="v", attack={"method": "direct", "loss": "mse"})
    module, about = load_suspect(path)
    assert about == "stolen from v (direct/mse, 10 queries)"
    x = torch.rand(2, 3, 32, 32)
    expected = stolen.head(stolen.encoder.eval()(x))
    assert torch.allclose(module(x), expected)


def test_same_weights_is_bitwise_and_ignores_where_the_module_came_from():
    torch.manual_seed(0)
    a = build_encoder("small_cnn")
    b = copy.deepcopy(a)
    assert same_weights(a, b)
    with torch.no_grad():
        first = next(b.parameters())
        first[(0,) * first.dim()] += 1e-6
    assert not same_weights(a, b)
    assert not same_weights(a, build_encoder("small_cnn"))  # another init
    assert not same_weights(a, nn.Sequential(a, nn.Linear(256, 64)))  # the same encoder behind an adapter is another model
