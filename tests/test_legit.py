"""The legitimate user: a probe trained on the defended API's answers, under its own account."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_victim_spec

from sslsteal.evaluation.legit import legit_accuracy
from sslsteal.evaluation.probe import probe_data
from sslsteal.specs.victim import VictimSpec
from sslsteal.victim.errors import QueryBudgetExceeded
from sslsteal.victim.service import VictimService
from sslsteal.victim.train import get_or_train


@pytest.fixture(scope="module")
def checkpoint() -> str:
    path, _ = get_or_train(VictimSpec.model_validate(tiny_victim_spec(name="legit")), progress=False)
    return str(path)


def _account(service: VictimService, name: str):
    service.open_account(name)
    return lambda images: torch.from_numpy(service.embed(images.numpy(), name))


def test_noise_costs_the_legitimate_user_accuracy(checkpoint: str) -> None:
    task = probe_data("synthetic", train_images=400, test_images=200)
    clean = VictimService(checkpoint, {"budget": 600})
    noisy = VictimService(checkpoint, {"budget": 600, "defense": {"name": "noise", "mean": 0.0, "sigma": 50.0}})
    clean_acc = legit_accuracy(_account(clean, "user"), task)
    noisy_acc = legit_accuracy(_account(noisy, "user"), task)
    assert clean_acc > 30.0  # well above chance (10%) on the victim's clean answers
    assert noisy_acc < clean_acc - 10.0
    assert clean.stats("user")["queries_used"] == 600


def test_the_user_pays_for_its_queries(checkpoint: str) -> None:
    task = probe_data("synthetic", train_images=400, test_images=200)
    service = VictimService(checkpoint, {"budget": 500})
    with pytest.raises(QueryBudgetExceeded):
        legit_accuracy(_account(service, "user"), task)
