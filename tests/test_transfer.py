"""FGSM transferability (appendix A.2): the folded probe, FGSM itself, and the rates on the tiny victim."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import tiny_victim_spec
from torch import nn

from sslsteal.evaluation.probe import probe_data
from sslsteal.evaluation.transfer import fgsm, knockoff, linear_head, probe_classifier, transfer_rates, victim_predictions
from sslsteal.models import build_encoder
from sslsteal.specs.attack import AttackSpec
from sslsteal.specs.victim import VictimSpec
from sslsteal.victim.checkpoint import build_victim


def test_linear_head_predicts_as_the_standardised_probe() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, size=300)
    x = rng.normal(size=(4, 8))[y] * 3 + rng.normal(size=(300, 8)) + 10.0  # far from zero mean: the folding matters
    head = linear_head(x, y)
    scaler = StandardScaler().fit(x)
    expected = LogisticRegression(max_iter=1000, random_state=0).fit(scaler.transform(x), y).decision_function(scaler.transform(x))
    np.testing.assert_allclose(head(torch.as_tensor(x, dtype=torch.float32)).detach().numpy(), expected, rtol=1e-3, atol=1e-3)
    with pytest.raises(ValueError, match="cover all"):
        linear_head(x[y != 2], y[y != 2])


def test_fgsm_steps_along_the_sign_of_the_gradient_and_clips() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, -1.0, 0.0, 2.0], [0.0, 0.0, 0.0, 0.0]]))
    x = torch.full((1, 4), 0.5)
    adv = fgsm(model, x, torch.tensor([0]), eps=0.1)
    # raising class 1's loss lowers logit 0: each pixel moves against its weight's sign (zero gradient stays put)
    assert torch.allclose(adv, torch.tensor([[0.4, 0.6, 0.5, 0.4]]))
    assert fgsm(model, torch.tensor([[0.0, 1.0, 0.5, 0.05]]), torch.tensor([0]), eps=0.1).tolist() == [[0.0, 1.0, 0.5, 0.0]]


@pytest.fixture(scope="module")
def tiny() -> tuple:
    torch.manual_seed(0)
    victim = build_victim(VictimSpec.model_validate(tiny_victim_spec(epochs=2))).eval()
    task = probe_data("synthetic", train_images=500, test_images=300)
    return victim, task


def test_crafted_on_the_victim_itself_nearly_always_transfers_and_a_random_source_less(tiny: tuple) -> None:
    victim, task = tiny
    device = torch.device("cpu")
    target = probe_classifier(victim.encoder, task, device)
    with torch.random.fork_rng():
        torch.manual_seed(123)
        random = probe_classifier(build_encoder("small_cnn"), task, device)
    images, labels = task.test.images, task.test.labels
    rates = transfer_rates({"victim": target, "random": random}, target, images, labels, [0.05], device)
    assert rates["transfer.fgsm.victim.images"] > 50 and rates["transfer.fgsm.random.images"] > 20
    assert rates["transfer.fgsm.victim.0.05"] > 0.9
    assert rates["transfer.fgsm.random.0.05"] < rates["transfer.fgsm.victim.0.05"] - 0.2


def test_knockoff_learns_the_victims_labels_from_paid_predictions(tiny: tuple) -> None:
    victim, task = tiny
    device = torch.device("cpu")
    target = probe_classifier(victim.encoder, task, device)
    calls: list[int] = []

    def query(x: torch.Tensor) -> torch.Tensor:
        calls.append(len(x))
        return victim.embed(x)

    images = task.train.images[:400]
    probs = victim_predictions(query, target.head, images)
    assert sum(calls) == 400 and torch.allclose(probs.sum(dim=1), torch.ones(400))
    spec = AttackSpec(queries=400, query_data="synthetic:train", steps=300, batch_size=64)
    copy = knockoff(spec, probs, images, "small_cnn", device)
    test = task.test.images
    agree = (copy(test.float() / 255).argmax(1) == target(test.float() / 255).argmax(1)).float().mean().item()
    assert agree > 0.5


def test_a_run_with_evaluate_transfer_logs_every_source_and_pays_the_knockoffs_queries() -> None:
    from sslsteal.pipeline.steal import run_steal
    from sslsteal.specs.base import parse
    from sslsteal.specs.steal import StealSpec

    spec = parse(
        StealSpec,
        {
            "victim": tiny_victim_spec(),
            "attack": {"loss": "mse", "queries": 300, "query_data": "synthetic:train", "steps": 100},
            "evaluate": {"transfer": {"epsilons": [0.03, 0.1], "images": 150}},
        },
    )
    metrics = run_steal(spec, progress=False)["metrics"]
    assert metrics["transfer.knockoff.queries_used"] == 300 == metrics["queries_used"]  # the same budget, its own account
    for source in ("stolen", "knockoff", "random"):
        assert 0 < metrics[f"transfer.fgsm.{source}.images"] <= 150
        assert 0.0 <= metrics[f"transfer.fgsm.{source}.0.03"] <= metrics[f"transfer.fgsm.{source}.0.1"] + 0.1 and metrics[f"transfer.fgsm.{source}.0.1"] <= 1.0
    assert metrics["time.transfer_s"] > 0


def test_transfer_options_are_checked() -> None:
    from sslsteal.specs.base import ConfigError, parse
    from sslsteal.specs.evaluate import EvaluateSpec

    for bad, key in (
        ({"epsilons": [0.0]}, "transfer.epsilons"),
        ({"sources": ["stolen", "stolen"]}, "transfer.sources"),
        ({"sources": ["oracle"]}, "transfer.sources"),
    ):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            parse(EvaluateSpec, {"transfer": bad})
