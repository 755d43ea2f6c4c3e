"""Attack methods and query strategies on synthetic data: copies agree with the victim better than a random encoder, budgets hold to the image."""

from __future__ import annotations

import pytest
import torch

from sslsteal.attacks import steal
from sslsteal.attacks.query import BudgetedQuery
from sslsteal.attacks.training import attacker_encoder
from sslsteal.core.seeding import seeded
from sslsteal.data import loaders
from sslsteal.data.augment import to_float
from sslsteal.evaluation.probe import fidelity
from sslsteal.models import ProjectionHead, build_encoder
from sslsteal.specs.attack import AttackSpec
from sslsteal.specs.base import ConfigError, parse
from sslsteal.specs.losses import LOSSES
from sslsteal.victim.errors import QueryBudgetExceeded


@pytest.fixture(scope="module")
def victim() -> tuple[torch.nn.Module, torch.nn.Module]:
    """A fixed random encoder and head stand in for the victim: the attack only sees its outputs."""
    torch.manual_seed(0)
    return build_encoder("small_cnn").eval(), ProjectionHead(256, 64, 32).eval()


def _query(victim: tuple[torch.nn.Module, torch.nn.Module], head: bool = False):
    encoder, proj = victim

    @torch.no_grad()
    def query(images: torch.Tensor) -> torch.Tensor:
        y = encoder(to_float(images))
        return proj(y) if head else y

    return query


def _images(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    chosen = loaders.load("synthetic:train").subset(n, seed=0)
    return chosen.images, chosen.labels


def test_budget_is_enforced_to_the_image() -> None:
    q = BudgetedQuery(lambda x: torch.zeros(len(x), 4), budget=10)
    q(torch.zeros(6, 3, 32, 32))
    q(torch.zeros(4, 3, 32, 32))
    assert q.used == 10
    with pytest.raises(QueryBudgetExceeded, match="10 of 10"):
        q(torch.zeros(1, 3, 32, 32))
    assert q.used == 10


def test_partial_answers_are_never_given() -> None:
    calls: list[int] = []
    q = BudgetedQuery(lambda x: calls.append(len(x)) or torch.zeros(len(x), 4), budget=5)
    with pytest.raises(QueryBudgetExceeded):
        q(torch.zeros(6, 3, 32, 32))
    assert calls == [] and q.used == 0


CASES = [("direct", "once"), ("direct", "augmented"), ("recreate_head", "augmented"), ("access_head", "once"), ("access_head", "augmented")]


def _outputs(encoder: torch.nn.Module, head: torch.nn.Module | None, images: torch.Tensor) -> torch.Tensor:
    """A model's answers in the victim's space on `images`: its encoder, through `head` when it has one."""
    with torch.no_grad():
        y = encoder.eval()(to_float(images))
        return head.eval()(y) if head is not None else y


def _cosine_agreement(outputs: torch.Tensor, victim: torch.Tensor) -> float:
    return fidelity(outputs.numpy(), victim.numpy())["fidelity.cosine"]


def _linear_agreement(encoder: torch.nn.Module, fit: torch.Tensor, held_out: torch.Tensor, answer) -> float:
    """Held-out R^2 of a ridge map from the encoder's representations to the victim's answers, fitted on `fit`."""
    a, ah = (torch.cat([_outputs(encoder, None, x).double(), torch.ones(len(x), 1, dtype=torch.float64)], 1) for x in (fit, held_out))
    b, bh = answer(fit).double(), answer(held_out).double()
    w = torch.linalg.solve(a.T @ a + torch.eye(a.shape[1], dtype=torch.float64), a.T @ b)
    return float(1 - ((ah @ w - bh) ** 2).sum() / ((bh - bh.mean(0)) ** 2).sum())


def _held_out() -> torch.Tensor:
    """Images the attacks never query: the test split."""
    return loaders.load("synthetic:test").subset(200, seed=1).images


@pytest.mark.parametrize("method,strategy", CASES)
def test_methods_steal_within_budget(victim, method: str, strategy: str) -> None:
    """Each method's copy agrees with the victim on unqueried images better than a random encoder (the attacker's
    own init) does: in representation space, or (access_head) in the victim's head space it is trained on."""
    long = method == "recreate_head"  # its head must be learned from the answers first: it needs more epochs
    spec = AttackSpec(
        method=method,
        strategy=strategy,
        loss="mse",
        queries=256,
        epochs=10 if long else 4,
        batch_size=64,
        head_epochs=10 if long else 3,
        lr=3e-3,
        query_batch=100,
    )
    images, labels = _images(spec.images_needed)
    query = BudgetedQuery(_query(victim, head=method == "access_head"), spec.queries)
    stolen = steal(spec, query, images, labels, encoder_name="small_cnn")
    assert stolen.queries_used == query.used == 256
    assert len(stolen.history) == spec.epochs
    held_out = _held_out()
    answers = _query(victim, head=method == "access_head")(held_out)
    head, random_head = None, None
    if method == "access_head":
        head = stolen.head
        with seeded(spec.seed, "attacker.head_init"):
            random_head = ProjectionHead(256, spec.head_hidden, answers.shape[1])
    random = _cosine_agreement(_outputs(attacker_encoder(spec, "small_cnn"), random_head, held_out), answers)
    agreement = _cosine_agreement(_outputs(stolen.encoder, head, held_out), answers)
    assert agreement > random, (agreement, random)


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_every_loss_steals(victim, loss: str) -> None:
    """Every loss moves the copy towards the victim on unqueried images: closer in cosine than the attacker's random
    init, or (simsiam, which matches the victim only through its predictor) linearly more predictive of it."""
    spec = AttackSpec(loss=loss, queries=128, epochs=3, batch_size=64, lr=1e-3)  # at 3e-3 wasserstein overshoots in epoch 2 before it falls
    images, labels = _images(128)
    query = BudgetedQuery(_query(victim), spec.queries)
    stolen = steal(spec, query, images, labels, encoder_name="small_cnn")
    assert query.used == 128 and all(torch.isfinite(torch.tensor([h["loss"] for h in stolen.history])))
    held_out, random = _held_out(), attacker_encoder(spec, "small_cnn")
    if loss == "simsiam":
        before, after = (_linear_agreement(e, images, held_out, _query(victim)) for e in (random, stolen.encoder))
    else:
        answers = _query(victim)(held_out)
        before, after = (_cosine_agreement(_outputs(e, None, held_out), answers) for e in (random, stolen.encoder))
    assert after > before, (loss, before, after)


def test_attack_stops_at_the_budget(victim) -> None:
    spec = AttackSpec(queries=300, epochs=1)
    images, _ = _images(spec.images_needed)
    query = BudgetedQuery(_query(victim), budget=200)
    with pytest.raises(QueryBudgetExceeded):
        steal(spec, query, images, encoder_name="small_cnn")
    assert query.used <= 200


def test_epoch_callback_sees_the_encoder(victim) -> None:
    seen: list[int] = []
    spec = AttackSpec(queries=64, epochs=2, batch_size=32)
    images, _ = _images(64)
    steal(spec, _query(victim), images, encoder_name="small_cnn", on_epoch=lambda e, rec, enc: seen.append(e))
    assert seen == [1, 2]


def test_training_length_by_optimizer_steps(victim) -> None:
    """`steps` fixes the optimizer steps whatever the budget: 64 images in batches of 16 are 4 steps an epoch, so 10
    steps take 3 epochs (rounded up) and 200 images (12 steps an epoch) take 1."""
    assert AttackSpec(queries=64, steps=10, batch_size=16).epochs_for(64) == 3
    assert AttackSpec(queries=200, steps=10, batch_size=16).epochs_for(200) == 1
    assert AttackSpec(queries=64, epochs=7).epochs_for(64) == 7
    seen: list[int] = []
    spec = AttackSpec(queries=64, steps=10, batch_size=16)
    images, _ = _images(64)
    steal(spec, _query(victim), images, encoder_name="small_cnn", on_epoch=lambda e, rec, enc: seen.append(e))
    assert seen == [1, 2, 3]


def test_default_training_length_is_epochs_with_a_floor_of_optimizer_steps() -> None:
    """By default 30 epochs, but at least `min_steps` (800) steps: 1,000 images in batches of 64 are 15 steps an
    epoch, so 800 steps take 54 epochs; 9,000 images (140 steps an epoch) pass 800 steps within their 30 epochs."""
    assert AttackSpec(queries=1000).epochs_for(1000) == 54
    assert AttackSpec(queries=9000).epochs_for(9000) == 30
    assert AttackSpec(queries=1000, min_steps=70).epochs_for(1000) == 30
    assert AttackSpec(queries=1000, epochs=40, min_steps=700).epochs_for(1000) == 47  # both set: both apply
    assert AttackSpec(queries=1000, epochs=3).epochs_for(1000) == 3  # epochs alone: exactly that many


@pytest.mark.parametrize(
    "fields,needle",
    [
        ({"loss": "l1"}, "loss: unknown loss 'l1'"),
        ({"queries": -5}, "queries: Input should be greater than 0"),
        ({"method": "recreate_head", "strategy": "once"}, "strategy: method recreate_head needs"),
        ({"loss": "infonce", "loss_params": {"temperature": -1}}, "temperature"),
        ({"query_data": "imagenet:train"}, "query_data: unknown dataset"),
        ({"queries": 1, "strategy": "augmented", "views": 2}, "queries: 1 queries buy no image"),
        ({"steps": 100, "epochs": 5}, "steps: set the training length by steps or by epochs, not both"),
        ({"steps": 100, "min_steps": 5}, "steps: set the training length by steps or by min_steps, not both"),
        ({"steps": 0}, "steps: Input should be greater than 0"),
    ],
)
def test_bad_attack_specs_name_the_key(fields: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        parse(AttackSpec, {"queries": 100, **fields})
