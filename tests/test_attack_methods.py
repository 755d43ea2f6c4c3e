"""Every attack method passes one template (budget respected to the image, deterministic under a seed, a copy of a
random linear victim closer to it than the attacker's own init); the field's attacks' losses equal their formulas
written out by hand on small tensors. A new method is added to METHODS and, if it needs settings to run small, to
TEMPLATE_OPTIONS below."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from sslsteal.attacks import steal
from sslsteal.attacks.contsteal import contsteal_loss
from sslsteal.attacks.query import BudgetedQuery
from sslsteal.attacks.rda import prototypes, rda_loss
from sslsteal.attacks.stolenencoder import stolenencoder_loss
from sslsteal.attacks.training import attacker_encoder
from sslsteal.data import loaders
from sslsteal.data.augment import to_float
from sslsteal.specs.attack import AttackSpec
from sslsteal.specs.methods import METHODS
from sslsteal.victim.errors import QueryBudgetExceeded

BUDGET = 120
TEMPLATE_OPTIONS: dict[str, dict] = {
    "recreate_head": {"strategy": "augmented", "head_epochs": 2},
    "stolenencoder": {"method_params": {"views": 2}},
    "contsteal": {"method_params": {"views": 3}},
    "rda": {"method_params": {"prototype_views": 3, "train_views": 2}},
    "coverage": {"method_params": {"candidates": 3}},
    "consistency": {"method_params": {"unlabeled": 2}},
}
"""Per method, what it needs beyond the template's spec to run small (a method absent here runs with its defaults)."""


def linear_victim(dim: int = 256):
    """A random linear map of the flattened image to the small CNN's width: the simplest victim a copy can get closer to."""
    weight = torch.randn(3 * 32 * 32, dim, generator=torch.Generator().manual_seed(7)) / math.sqrt(3 * 32 * 32)

    @torch.no_grad()
    def query(images: torch.Tensor) -> torch.Tensor:
        return to_float(images).flatten(1) @ weight

    return query


def template_spec(method: str, seed: int = 0) -> AttackSpec:
    fields = {"method": method, "queries": BUDGET, "query_data": "synthetic:train", "epochs": 3, "batch_size": 16, "lr": 3e-3, "query_batch": 32, "seed": seed}
    return AttackSpec.model_validate(fields | TEMPLATE_OPTIONS.get(method, {}))


def images_for(spec: AttackSpec) -> torch.Tensor:
    return loaders.load("synthetic:train").subset(spec.images_drawn, seed=spec.seed).images


def linear_agreement(encoder: torch.nn.Module, query, fit: torch.Tensor, held_out: torch.Tensor) -> float:
    """Held-out R^2 of a ridge map from the encoder's representations to the victim's answers: how much of the victim
    a copy carries, whatever its width or head."""
    with torch.no_grad():
        a, ah = (torch.cat([encoder.eval()(to_float(x)).double(), torch.ones(len(x), 1, dtype=torch.float64)], 1) for x in (fit, held_out))
    b, bh = query(fit).double(), query(held_out).double()
    w = torch.linalg.solve(a.T @ a + torch.eye(a.shape[1], dtype=torch.float64), a.T @ b)
    return float(1 - ((ah @ w - bh) ** 2).sum() / ((bh - bh.mean(0)) ** 2).sum())


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_passes_the_template(method: str) -> None:
    spec = template_spec(method)
    victim = linear_victim()
    query = BudgetedQuery(victim, BUDGET)
    images = images_for(spec)
    stolen = steal(spec, query, images, encoder_name="small_cnn")
    assert stolen.queries_used == query.used <= BUDGET and query.used == spec.images_needed * spec.answers_per_image
    short = BudgetedQuery(victim, query.used - 1)
    with pytest.raises(QueryBudgetExceeded):
        steal(spec, short, images, encoder_name="small_cnn")
    assert short.used <= query.used - 1
    again = steal(spec, BudgetedQuery(victim, BUDGET), images, encoder_name="small_cnn")
    for a, b in zip(stolen.encoder.state_dict().values(), again.encoder.state_dict().values(), strict=True):
        assert torch.equal(a, b), f"{method}: two runs with one seed differ"
    fit, held_out = (loaders.load("synthetic:test").subset(300, seed=1).images[part] for part in (slice(0, 150), slice(150, 300)))
    copied = linear_agreement(stolen.encoder, victim, fit, held_out)
    baseline = linear_agreement(attacker_encoder(spec, "small_cnn"), victim, fit, held_out)
    assert copied > baseline, (method, copied, baseline)


# --- the losses against their formulas ------------------------------------------------------------------------------


def test_stolenencoder_loss_is_its_formula() -> None:
    g = torch.Generator().manual_seed(0)
    raw, answer = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    views = [torch.randn(4, 6, generator=g) for _ in range(3)]
    unit = lambda v: v / v.norm()
    for kind, d in (
        ("l2", lambda a, b: (unit(a) - unit(b)).norm()),
        ("l1", lambda a, b: (unit(a) - unit(b)).abs().sum()),
        ("cosine", lambda a, b: -(unit(a) @ unit(b))),
    ):
        per_image = [d(raw[i], answer[i]) + 9.0 / 3 * sum(d(v[i], answer[i]) for v in views) for i in range(4)]
        assert stolenencoder_loss(raw, views, answer, weight=9.0, kind=kind).item() == pytest.approx(float(sum(per_image) / 4), rel=1e-5)
    assert stolenencoder_loss(raw, [], answer, weight=9.0).item() == pytest.approx(
        float(sum((unit(raw[i]) - unit(answer[i])).norm() for i in range(4)) / 4), rel=1e-5
    )


def test_contsteal_loss_is_nt_xent_over_victim_and_copy() -> None:
    g = torch.Generator().manual_seed(1)
    victim, copy = torch.randn(3, 5, generator=g), torch.randn(3, 5, generator=g)
    rows = [r / r.norm() for r in torch.cat([victim, copy])]
    t, n, total = 0.5, 3, 0.0
    for i in range(2 * n):
        positive = (i + n) % (2 * n)
        others = sum(math.exp(float(rows[i] @ rows[k]) / t) for k in range(2 * n) if k != i)
        total += -math.log(math.exp(float(rows[i] @ rows[positive]) / t) / others)
    assert contsteal_loss(victim, copy, temperature=t).item() == pytest.approx(total / (2 * n), rel=1e-5)


def test_rda_loss_is_contrast_plus_align_and_prototypes_are_mean_unit_answers() -> None:
    g = torch.Generator().manual_seed(2)
    answers = torch.randn(6, 4, generator=g)
    source = torch.tensor([0, 1, 0, 1, 2, 2])
    protos = prototypes(answers, source, 3)
    unit = F.normalize(answers, dim=1)
    assert torch.allclose(protos[0], (unit[0] + unit[2]) / 2) and torch.allclose(protos[2], (unit[4] + unit[5]) / 2)
    copy = torch.randn(3, 4, generator=g)
    s = [c / c.norm() for c in copy]
    t, cw, aw, contrast, align = 0.07, 0.5, 2.0, 0.0, 0.0
    for i in range(3):
        negatives = sum(math.exp(float(s[i] @ protos[j]) / t) + math.exp(float(s[i] @ s[j]) / t) for j in range(3) if j != i)
        contrast += -math.log(math.exp(float(s[i] @ protos[i]) / t) / negatives)
        cos = float(s[i] @ protos[i]) / float(protos[i].norm())
        align += -math.log((cos + 1) / float(((s[i] - protos[i]) ** 2).sum()))
    expected = cw * contrast / 3 + aw * align / 3
    assert rda_loss(copy, protos, temperature=t, contrast_weight=cw, align_weight=aw).item() == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize(
    "fields,needle",
    [
        ({"method": "direct", "method_params": {"prototype_views": 10}}, r"method_params\.prototype_views: method direct has no option"),
        ({"method": "rda", "method_params": {"prototype_views": 0}}, r"method_params\.prototype_views: must be greater than or equal to 1"),
        ({"method": "contsteal", "method_params": {"views": 0}}, r"method_params\.views: must be greater than or equal to 1"),
        ({"method": "consistency", "method_params": {"decay": 1.0}}, r"method_params\.decay: must be less than 1"),
        ({"method": "rda", "queries": 15}, r"queries: 15 queries buy 1 image \(method rda needs 2\) at 10 answers each \(method_params\.prototype_views\)"),
        ({"method": "contsteal", "queries": 5}, r"queries: 5 queries buy no image at 10 answers each \(method_params\.views\)"),
        ({"method": "stolenencoder", "loss": "mse"}, "loss: method stolenencoder trains with its own objective"),
        ({"method": "rda", "strategy": "augmented"}, "strategy: method rda decides which views the victim answers"),
    ],
)
def test_options_that_do_not_fit_a_method_are_refused_with_the_key(fields: dict, needle: str) -> None:
    from sslsteal.specs.base import ConfigError, parse

    with pytest.raises(ConfigError, match=needle):
        parse(AttackSpec, {"queries": 100, **fields})


def test_each_method_pays_per_image_what_its_options_say() -> None:
    assert AttackSpec(method="rda", queries=2500).images_needed == 250  # RDA's 2,500 images at P = 10 are 25,000 answers
    assert AttackSpec(method="contsteal", queries=9000, method_params={"views": 3}).images_needed == 3000
    assert AttackSpec(method="stolenencoder", queries=9000).images_needed == 9000
    assert AttackSpec(method="recreate_head", strategy="augmented", queries=9000).images_needed == 4500


def test_k_center_takes_one_point_per_cluster_before_any_second() -> None:
    from sslsteal.attacks.coverage import k_center

    centres = torch.eye(4) * 10
    points = torch.cat([c + 0.01 * torch.randn(5, 4, generator=torch.Generator().manual_seed(i)) for i, c in enumerate(centres)])
    chosen = k_center(points, 4, first=0)
    assert sorted((chosen // 5).tolist()) == [0, 1, 2, 3] and chosen[0] == 0


def test_coverage_queries_only_the_images_it_chose() -> None:
    spec = template_spec("coverage")
    images = images_for(spec)
    assert len(images) == 3 * spec.images_needed
    sent: list[torch.Tensor] = []
    victim = linear_victim()
    stolen = steal(spec, lambda x: sent.append(x) or victim(x), images, encoder_name="small_cnn")
    asked = torch.cat(sent)
    assert len(asked) == spec.images_needed == stolen.source_images and len({tuple(x.flatten()[:64].tolist()) for x in asked}) == len(asked)


def test_consistency_term_is_one_minus_cosine_and_the_teacher_an_ema_of_the_student() -> None:
    from sslsteal.attacks.consistency import consistency_loss, ema_update, frozen_copy

    g = torch.Generator().manual_seed(3)
    student, teacher = torch.randn(4, 5, generator=g), torch.randn(4, 5, generator=g)
    by_hand = sum(1 - float(student[i] @ teacher[i]) / float(student[i].norm() * teacher[i].norm()) for i in range(4)) / 4
    assert consistency_loss(student, teacher).item() == pytest.approx(by_hand, rel=1e-5)
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    twin = frozen_copy(net)
    assert not any(p.requires_grad for p in twin.parameters()) and not twin.training
    before = twin[0].weight.clone()
    with torch.no_grad():
        net[0].weight.add_(1.0)
    net(torch.randn(8, 3, generator=g))  # moves the batch-norm statistics
    ema_update(twin, net, 0.9)
    assert torch.allclose(twin[0].weight, 0.9 * before + 0.1 * net[0].weight)
    assert torch.equal(twin[1].running_mean, net[1].running_mean)


def test_consistency_queries_only_the_images_it_paid_for() -> None:
    spec = template_spec("consistency")
    images = images_for(spec)
    assert len(images) == 3 * spec.images_needed  # one query image and two free ones each
    sent: list[torch.Tensor] = []
    victim = linear_victim()
    stolen = steal(spec, lambda x: sent.append(x) or victim(x), images, encoder_name="small_cnn")
    asked = {tuple(x.flatten()[:64].tolist()) for x in torch.cat(sent)}
    assert len(torch.cat(sent)) == len(asked) == spec.images_needed == stolen.source_images
    assert len(asked & {tuple(x.flatten()[:64].tolist()) for x in images}) == spec.images_needed  # the rest never sent
