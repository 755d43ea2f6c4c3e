"""Output defenses: each one's answers and flags, per-account state (isolated, picklable, restart-stable), config errors."""

from __future__ import annotations

import math
import pickle

import pytest
import torch

from sslsteal.specs.base import ConfigError
from sslsteal.specs.defenses import DEFENSES
from sslsteal.victim.defenses import B4BDefense, Defense, build_defense, detection_rates

DIM = 32


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    """Stay light next to the trainings running on the other cores."""
    torch.set_num_threads(1)


def gen(seed: int = 0) -> torch.Generator:
    """A seeded CPU generator for test data."""
    return torch.Generator().manual_seed(seed)


def distinct(n: int, dim: int = DIM, seed: int = 0) -> torch.Tensor:
    """Unrelated random vectors: near-orthogonal in `dim` dimensions, far apart in l2."""
    return torch.randn(n, dim, generator=gen(seed)) * 3


def views(x: torch.Tensor, k: int = 2, eps: float = 0.01, seed: int = 1) -> torch.Tensor:
    """`k` consecutive near-copies of each row, standing in for augmented views of one image."""
    rep = x.repeat_interleave(k, dim=0)
    return rep + eps * torch.randn(rep.shape, generator=gen(seed))


def run(defense: Defense, x: torch.Tensor, account: str = "a", state: dict | None = None) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Apply with out = rep = head = x."""
    state = defense.init_state(account) if state is None else state
    answers, flagged = defense.apply(state, x, x, x)
    return answers, flagged, state


# ---------------------------------------------------------------- every defense


@pytest.mark.parametrize("name", sorted(DEFENSES))
def test_every_defense_keeps_shape_is_finite_and_pickles(name: str) -> None:
    defense = build_defense({"name": name}, seed=3)
    state = defense.init_state("acct")
    with torch.inference_mode():  # as the service computes them; one request is also answered inside the mode
        rep, head = distinct(10, 16), distinct(10, 8, seed=5)
        defense.apply(state, rep, rep, head)
    for out in (rep, head):  # plain and access-head mode
        answers, flagged = defense.apply(state, out, rep, head)
        assert answers.shape == (len(out), defense.answer_width(out.shape[1])) and answers.dtype == torch.float32
        assert torch.isfinite(answers).all()
        assert flagged.shape == (10,) and flagged.dtype == torch.bool
    restored = pickle.loads(pickle.dumps(state))
    answers, _ = defense.apply(restored, rep, rep, head)
    assert answers.shape == (10, defense.answer_width(16)) and isinstance(defense.pow_bits(restored), int)


def test_none_is_identity() -> None:
    x = distinct(4)
    answers, flagged, _ = run(build_defense(None), x)
    assert torch.equal(answers, x) and not flagged.any()
    assert isinstance(build_defense({"name": "none"}), type(build_defense(None)))


# ---------------------------------------------------------------- noise


@pytest.mark.parametrize(("mean", "sigma"), [(0.0, 1.0), (10.0, 3.0)])
def test_noise_matches_mean_and_sigma(mean: float, sigma: float) -> None:
    x = distinct(200, 100)
    answers, flagged, _ = run(build_defense({"name": "noise", "mean": mean, "sigma": sigma}), x)
    delta = answers - x
    assert abs(delta.mean().item() - mean) < 0.05 * max(sigma, 1.0)
    assert delta.std().item() == pytest.approx(sigma, rel=0.05)
    assert not flagged.any()


def test_noise_sigma_zero_is_identity_and_noise_replays_after_restart() -> None:
    x = distinct(8)
    assert torch.equal(run(build_defense({"name": "noise", "sigma": 0}), x)[0], x)
    first = run(build_defense({"name": "noise"}, seed=1), x, "acct")[0]
    again = run(build_defense({"name": "noise"}, seed=1), x, "acct")[0]
    other = run(build_defense({"name": "noise"}, seed=1), x, "other")[0]
    assert torch.equal(first, again) and not torch.equal(first, other)


# ---------------------------------------------------------------- similarity


@pytest.mark.parametrize("config", [{"metric": "cosine", "threshold": 0.9}, {"metric": "l2", "threshold": 1.0}])
def test_similarity_flags_repeated_views_and_answers_noise(config: dict) -> None:
    defense = build_defense({"name": "similarity", **config})
    x = distinct(20)
    answers, flagged, state = run(defense, x)
    assert not flagged.any() and torch.equal(answers, x)
    again = views(x[:5], k=3)  # every row is now close to an earlier one
    answers, flagged, state = run(defense, again, state=state)
    assert flagged.all()
    assert answers.mean().item() == pytest.approx(1000, abs=1)
    assert state["queries"] == 35 and state["detections"] == 15


def test_similarity_flags_within_a_batch_and_only_later_views() -> None:
    defense = build_defense({"name": "similarity", "threshold": 0.9})
    answers, flagged, _ = run(defense, views(distinct(6), k=2))
    assert flagged.tolist() == [False, True] * 6
    assert torch.all(answers[1::2] > 900) and torch.all(answers[0::2].abs() < 100)


def test_similarity_accounts_are_isolated() -> None:
    defense = build_defense({"name": "similarity"})
    x = distinct(5)
    alice, bob = defense.init_state("alice"), defense.init_state("bob")
    run(defense, x, state=alice)
    assert run(defense, x, state=alice)[1].all()
    assert not run(defense, x, state=bob)[1].any()


def test_similarity_history_cap_forgets_the_oldest() -> None:
    defense = build_defense({"name": "similarity", "threshold": 0.9, "max_history": 4})
    x = distinct(8)
    _, _, state = run(defense, x)
    assert state["history"].shape == (4, DIM)
    assert run(defense, x[4:], state=state)[1].all()
    assert not run(defense, x[:4], state=state)[1].any()  # forgotten


def test_similarity_state_survives_pickle() -> None:
    defense = build_defense({"name": "similarity", "metric": "l2", "threshold": 1.0})
    x = distinct(6)
    _, _, state = run(defense, x)
    state = pickle.loads(pickle.dumps(state))
    assert run(defense, views(x, k=1), state=state)[1].all()


def test_similarity_uses_the_configured_space_and_paper_thresholds() -> None:
    rep, head = distinct(4), distinct(4, seed=9)
    defense = build_defense({"name": "similarity", "space": "rep", "threshold": 0.9})
    state = defense.init_state("a")
    defense.apply(state, rep, rep, head)
    _, flagged = defense.apply(state, head, rep, distinct(4, seed=10))
    assert flagged.all()  # same reps, different heads
    assert build_defense({"name": "similarity"}).detector.threshold == 0.5
    assert build_defense({"name": "similarity", "metric": "l2"}).detector.threshold == 13.0
    assert build_defense({"name": "similarity", "metric": "l2", "space": "rep"}).detector.threshold == 18.0


# ---------------------------------------------------------------- round / topk


def test_round_exact() -> None:
    x = torch.tensor([[0.123, -1.76, 2.05]])
    answers, _, _ = run(build_defense({"name": "round"}), x)
    assert torch.allclose(answers, torch.tensor([[0.1, -1.8, 2.0]]))
    answers, _, _ = run(build_defense({"name": "round", "decimals": 0}), x)
    assert torch.equal(answers, torch.tensor([[0.0, -2.0, 2.0]]))


def test_topk_keeps_largest_magnitudes() -> None:
    x = torch.tensor([[0.1, -5.0, 3.0, 0.2], [4.0, 0.0, -0.5, 1.0]])
    answers, _, _ = run(build_defense({"name": "topk", "k": 2}), x)
    assert torch.equal(answers, torch.tensor([[0.0, -5.0, 3.0, 0.0], [4.0, 0.0, 0.0, 1.0]]))
    assert torch.equal(run(build_defense({"name": "topk", "k": 10}), x)[0], x)


# ---------------------------------------------------------------- pow


def test_pow_bits_follow_the_flag_rate() -> None:
    defense = build_defense({"name": "pow", "threshold": 0.9})
    x = distinct(10)
    state = defense.init_state("a")
    assert defense.pow_bits(state) == 8
    answers, flagged, state = run(defense, x, state=state)
    assert torch.equal(answers, x) and not flagged.any() and defense.pow_bits(state) == 8
    for _ in range(30):
        run(defense, x, state=state)
    assert defense.pow_bits(state) == 8 + round(12 * 300 / 310)
    capped = build_defense({"name": "pow", "threshold": 0.9, "max_bits": 12})
    _, _, state = run(capped, views(x, k=10))
    assert capped.pow_bits(state) == 12


# ---------------------------------------------------------------- b4b


def test_b4b_coverage_and_noise_grow_as_queries_spread() -> None:
    """Our polynomial calibration with one hyperplane family: sigma = alpha * coverage**beta."""
    defense = build_defense({"name": "b4b", "n_planes": 6, "projections": 1, "calibration": "polynomial", "transform": "none"})
    state = defense.init_state("a")
    same = views(distinct(1), k=40, eps=1e-4)
    run(defense, same, state=state)
    narrow = B4BDefense.coverage(state)
    x = distinct(400, seed=2)
    answers, _, state = run(defense, x, state=state)
    wide = B4BDefense.coverage(state)
    assert narrow <= 2 / 64 and wide > 0.5
    noise = answers - x
    assert noise[:20].std() < noise[-100:].std()
    assert noise[-100:].std().item() == pytest.approx(4.0 * wide**2, rel=0.2)


def test_b4b_exponential_cost_is_the_authors_formula() -> None:
    """sigma(n) = lam * (exp(ln(alpha / lam) * n / beta) - 1) at n % coverage: 0 at 0, alpha - lam at beta, and
    sqrt(alpha * lam) - lam halfway (their scripts: lam 1e-7, alpha 1, beta 80)."""
    defense = build_defense({"name": "b4b"})
    assert (defense.params.lam, defense.params.alpha, defense.params.beta) == (1e-7, 1.0, 80.0)
    sigma = defense.sigma(torch.tensor([0.0, 0.4, 0.8, 1.0], dtype=torch.float64)).tolist()
    lam, alpha = 1e-7, 1.0
    assert sigma[0] == 0.0 and sigma[2] == pytest.approx(alpha - lam, rel=1e-9) and sigma[1] == pytest.approx(math.sqrt(alpha * lam) - lam, rel=1e-9)
    assert sigma[3] == pytest.approx(lam * (math.exp(math.log(alpha / lam) * 100 / 80) - 1), rel=1e-9)


def test_b4b_coverage_averages_independent_hyperplane_families() -> None:
    defense = build_defense({"name": "b4b", "n_planes": 5, "projections": 7, "transform": "none"})
    x = distinct(60, seed=4)
    codes = defense.buckets(x)
    assert codes.shape == (7, 60) and len({tuple(row.tolist()) for row in codes}) == 7  # the families differ
    state = run(defense, x)[2]
    per_family = [len(set(row.tolist())) / 32 for row in codes]
    assert B4BDefense.coverage(state) == pytest.approx(sum(per_family) / 7)


def test_b4b_noise_does_not_depend_on_batch_split() -> None:
    x = distinct(50)
    defense = build_defense({"name": "b4b", "n_planes": 4, "projections": 3, "transform": "none"})
    whole = run(defense, x)[0]
    state = defense.init_state("a")
    parts = torch.cat([defense.apply(state, x[i : i + 7], x[i : i + 7], x[i : i + 7])[0] for i in range(0, 50, 7)])
    assert torch.allclose(whole, parts)


NOISELESS = {"name": "b4b", "calibration": "polynomial", "alpha": 0.0}


@pytest.mark.parametrize("transform", ["affine", "pad_shuffle", "affine_pad_shuffle", "rotation"])
def test_b4b_secret_transforms_are_per_account_stable_and_invertible(transform: str) -> None:
    config = NOISELESS | {"transform": transform}
    defense = build_defense(config, seed=7)
    x = distinct(6)
    a = run(defense, x, "alice")[0]
    assert a.shape == (6, defense.answer_width(DIM)) and not torch.allclose(a, run(defense, x, "bob")[0])
    restarted = build_defense(config, seed=7)
    assert torch.equal(run(restarted, x, "alice")[0], a)
    assert not torch.allclose(run(build_defense(config, seed=8), x, "alice")[0], a)
    parts = restarted.secret_transform("alice", DIM)
    recovered = a
    if "perm" in parts:  # drop the padding: the same random dimensions in every answer
        unshuffled = torch.empty_like(a)
        unshuffled[:, parts["perm"]] = a
        assert torch.equal(unshuffled[:, DIM:], parts["pad"].expand(6, -1))
        recovered = unshuffled[:, :DIM]
    if "scale" in parts:
        assert ((parts["scale"] > -1) & (parts["scale"] < 1)).all() and ((parts["shift"] > -1) & (parts["shift"] < 1)).all()
        recovered = (recovered - parts["shift"]) / parts["scale"]
    if "matrix" in parts:
        recovered = recovered @ torch.linalg.inv(parts["matrix"])
    assert torch.allclose(recovered, x, atol=1e-3)


def test_b4b_options_name_the_calibration_they_belong_to() -> None:
    with pytest.raises(ConfigError, match=r"defense\.sigma0: applies to calibration polynomial only"):
        build_defense({"name": "b4b", "sigma0": 0.5})
    with pytest.raises(ConfigError, match=r"defense\.pad_dim: applies to transform pad_shuffle or affine_pad_shuffle, not affine"):
        build_defense({"name": "b4b", "transform": "affine", "pad_dim": 8})
    assert build_defense({"name": "b4b", "pad_dim": 8}).answer_width(DIM) == DIM + 8


# ---------------------------------------------------------------- build errors


@pytest.mark.parametrize(
    ("config", "line"),
    [
        ({"name": "nope"}, "defense.name: unknown defense 'nope'; known: b4b, noise, none, pow, round, similarity, topk"),
        ({"name": "noise", "sigmaa": 1}, "defense.sigmaa: unknown key"),
        ({"name": "noise", "sigma": -1}, "defense.sigma: Input should be greater than or equal to 0"),
        ({"name": "similarity", "metric": "l1"}, "defense.metric: "),
        ({"name": "topk", "k": 0}, "defense.k: "),
        ({"name": "pow", "base_bits": 10, "max_bits": 5}, "defense.max_bits: max_bits (5) is below base_bits (10)"),
        ({"sigma": 1}, "defense.name: required key is missing"),
    ],
)
def test_build_defense_errors_name_the_key(config: dict, line: str) -> None:
    with pytest.raises(ConfigError) as err:
        build_defense(config)
    assert any(p.startswith(line) for p in err.value.problems), err.value.problems


# ---------------------------------------------------------------- detection rates


def test_detection_rates_separate_legit_from_attacker() -> None:
    defense = build_defense({"name": "similarity", "threshold": 0.9})
    legit = distinct(300, seed=3)
    attacker = views(distinct(100, seed=4), k=3, eps=0.05)
    rates = detection_rates(defense, (legit, legit), attacker, views=3, batch=64)
    assert rates["false_positive_rate"] < 0.02
    assert rates["true_positive_rate"] == rates["detection_rate"] > 0.98
    assert rates["false_negative_rate"] == pytest.approx(1 - rates["detection_rate"])
    none = detection_rates(build_defense(None), legit, attacker, views=3)
    assert none["detection_rate"] == 0.0 and none["false_negative_rate"] == 1.0
