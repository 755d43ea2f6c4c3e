"""Ownership tests: the calibration against a hand-written formula and its controls, each score on encoders whose
relation to the victim is known by construction, and (real CIFAR-10) honest tiny encoders against a stolen copy."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from sslsteal.data import loaders
from sslsteal.data.augment import to_float, watermark_views
from sslsteal.evaluation.ownership import MIN_REFERENCES, Evidence, OwnershipResult, OwnershipTest, Score, prediction_t, run_test, run_tests
from sslsteal.models import Encoder, build_encoder
from sslsteal.specs.evaluate import OWNERSHIP_TESTS
from sslsteal.specs.victim import VictimSpec
from sslsteal.victim.checkpoint import Victim, build_victim

ALL_TESTS = {"watermark", "dataset_inference", "dataset_inference_gmm", "noise_ball", "distance"}


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """The machine's cores are busy training: keep these tests on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def random_encoder(seed: int) -> Encoder:
    """An independently initialised encoder: stands in for a separately trained model."""
    torch.manual_seed(seed)
    return build_encoder("small_cnn").eval()


def perturbed_copy(encoder: Encoder, scale: float = 1e-3) -> Encoder:
    """A near-perfect stolen copy: the victim's weights plus tiny noise."""
    torch.manual_seed(7)
    clone = copy.deepcopy(encoder)
    with torch.no_grad():
        for p in clone.parameters():
            p.add_(scale * torch.randn_like(p))
    return clone.eval()


@pytest.fixture(scope="module")
def victim() -> Victim:
    """A random victim without a watermark (the scores only need a fixed encoder and head)."""
    torch.set_num_threads(1)
    return build_victim(VictimSpec(name="plain")).eval()


@pytest.fixture(scope="module")
def synthetic() -> torch.Tensor:
    """500 generated uint8 images (stripes + colour + noise), available everywhere."""
    return loaders.load("synthetic:test").images


def evidence(victim: Victim, suspect: object, references: list[object], private: torch.Tensor, public: torch.Tensor | None = None) -> Evidence:
    return Evidence(victim, suspect, references, private, private if public is None else public)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- calibration


def test_prediction_t_matches_the_formula_and_its_invariants() -> None:
    from scipy import stats

    controls = [1.0, 2.0, 3.0]  # mean 2, sd 1
    t, p = prediction_t(5.0, controls, "greater")
    assert t == pytest.approx(3.0 / math.sqrt(1 + 1 / 3))
    assert p == pytest.approx(stats.t.sf(t, 2))
    t_less, p_less = prediction_t(5.0, controls, "less")
    assert t_less == t and p_less == pytest.approx(1 - p)
    shifted = prediction_t(105.0, [c + 100 for c in controls], "greater")
    scaled = prediction_t(50.0, [10 * c for c in controls], "greater")
    assert shifted == pytest.approx((t, p)) and scaled == pytest.approx((t, p))
    assert prediction_t(2.0, controls, "greater")[1] == pytest.approx(0.5)
    assert all(math.isnan(v) for v in prediction_t(5.0, [2.0, 2.0, 2.0], "greater"))


class Fixed:
    """A stand-in encoder whose score under `fixed_test` is `value` (and, optionally, a p-value against chance)."""

    def __init__(self, value: float, chance_p: float | None = None) -> None:
        self.value, self.chance_p = value, chance_p

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        raise AssertionError("fixed_test never runs the encoder")


def fixed_test(victim_control: bool = False, stolen_if: str = "greater") -> OwnershipTest:
    def score(evidence: Evidence, encoder: object) -> Score:
        fixed = encoder if isinstance(encoder, Fixed) else encoder.fixed  # the victim's encoder carries one
        return Score(fixed.value, {"value": fixed.value}, fixed.chance_p)

    return OwnershipTest("fixed", score, stolen_if, victim_control)  # type: ignore[arg-type]


def fixed_evidence(suspect: Fixed, references: list[Fixed], victim_value: float = 0.0) -> Evidence:
    plain = build_victim(VictimSpec(name="plain")).eval()
    plain.encoder.fixed = Fixed(victim_value)  # type: ignore[assignment]
    images = torch.zeros(4, 3, 32, 32, dtype=torch.uint8)
    return Evidence(plain, suspect, references, images, images)


HONEST = [Fixed(0.50), Fixed(0.52), Fixed(0.48)]


def test_an_outlier_is_stolen_a_typical_score_is_not() -> None:
    stolen = run_test(fixed_test(), fixed_evidence(Fixed(0.70), HONEST))
    t, p = prediction_t(0.70, [0.50, 0.52, 0.48], "greater")
    assert stolen.verdict == "stolen" and stolen.p_value == pytest.approx(p) and stolen.statistic == pytest.approx(t)
    assert stolen.effect == pytest.approx(0.20) and stolen.details["reference_mean"] == pytest.approx(0.50)
    assert stolen.details["reference_sd"] == pytest.approx(0.02) and stolen.details["references"] == 3.0
    honest = run_test(fixed_test(), fixed_evidence(Fixed(0.53), HONEST))
    assert honest.verdict == "not stolen" and honest.p_value is not None and honest.p_value > 0.05
    below = run_test(fixed_test(stolen_if="less"), fixed_evidence(Fixed(0.30), HONEST))
    assert below.verdict == "stolen" and below.effect == pytest.approx(0.20)


def test_chance_is_tested_too_the_larger_p_counts() -> None:
    """An intersection-union test: an outlier among the references that does not beat chance is not stolen."""
    result = run_test(fixed_test(), fixed_evidence(Fixed(0.70, chance_p=0.3), [Fixed(0.50, 0.5), Fixed(0.52, 0.4), Fixed(0.48, 0.6)]))
    assert result.verdict == "not stolen" and result.p_value == pytest.approx(0.3)


def test_references_at_exactly_chance_leave_the_chance_test() -> None:
    """References a watermark predictor cannot read score exactly 1/2 (one view of each label per image): no spread,
    so the exact test against chance decides, with the references as controls that must not beat chance themselves."""
    at_chance = [Fixed(0.5, 0.5)] * 3
    result = run_test(fixed_test(), fixed_evidence(Fixed(0.7, chance_p=1e-6), at_chance))
    assert result.verdict == "stolen" and result.p_value == 1e-6 and result.statistic is None
    assert "ownership.fixed.statistic" not in result.metrics()
    odd = run_test(fixed_test(), fixed_evidence(Fixed(0.7, chance_p=1e-6), [Fixed(0.5, 0.01), Fixed(0.5, 0.5), Fixed(0.5, 0.5)]))
    assert odd.inconclusive and "reference 1 is flagged" in odd.reason


def test_inconclusive_when_the_references_cannot_calibrate() -> None:
    too_few = run_test(fixed_test(), fixed_evidence(Fixed(0.9), HONEST[: MIN_REFERENCES - 1]))
    assert too_few.inconclusive and too_few.p_value is None and f"at least {MIN_REFERENCES}" in too_few.reason
    constant = run_test(fixed_test(), fixed_evidence(Fixed(0.9), [Fixed(0.5)] * 3))
    assert constant.inconclusive and "do not vary" in constant.reason
    odd_one = run_test(fixed_test(), fixed_evidence(Fixed(0.9), [Fixed(0.500), Fixed(0.501), Fixed(0.90)]))
    assert odd_one.inconclusive and "reference 3 is flagged" in odd_one.reason and odd_one.details["flagged_reference"] == 3.0


def test_inconclusive_when_the_victim_itself_does_not_stand_out() -> None:
    """The positive control: a test that cannot tell the victim from honest models says nothing about a suspect."""
    powerless = run_test(fixed_test(victim_control=True), fixed_evidence(Fixed(0.9), HONEST, victim_value=0.51))
    assert powerless.inconclusive and "victim itself" in powerless.reason and powerless.details["victim_p"] > 0.05
    powered = run_test(fixed_test(victim_control=True), fixed_evidence(Fixed(0.9), HONEST, victim_value=0.95))
    assert powered.verdict == "stolen" and powered.details["victim_score"] == 0.95


def test_result_metrics_name_the_verdict_and_omit_an_undecided_p() -> None:
    decided = OwnershipResult("watermark", "stolen", 0.01, 3.0, 0.1, "", {"acc": 61.0})
    assert decided.stolen and not decided.inconclusive
    assert decided.metrics() == {
        "ownership.watermark.p_value": 0.01,
        "ownership.watermark.statistic": 3.0,
        "ownership.watermark.effect": 0.1,
        "ownership.watermark.stolen": 1.0,
        "ownership.watermark.inconclusive": 0.0,
        "ownership.watermark.acc": 61.0,
    }
    undecided = OwnershipResult("distance", "inconclusive", None, 0.0, 0.0, "why").metrics()
    assert "ownership.distance.p_value" not in undecided and undecided["ownership.distance.inconclusive"] == 1.0


def test_registry_and_unknown_names(victim: Victim, synthetic: torch.Tensor) -> None:
    assert set(OWNERSHIP_TESTS) == ALL_TESTS
    ev = evidence(victim, victim.encoder, [random_encoder(i) for i in (1, 2, 3)], synthetic[:16])
    with pytest.raises(ValueError, match=r"unknown ownership test 'nope'; known: dataset_inference, dataset_inference_gmm, distance"):
        run_tests(["distance", "nope"], ev)
    results = run_tests(["distance", "noise_ball"], ev)
    assert list(results) == ["distance", "noise_ball"] and results["distance"].test == "distance"
    assert all(isinstance(v, float) for v in results["distance"].metrics().values())


def test_evidence_rejects_bad_input(victim: Victim) -> None:
    with pytest.raises(ValueError, match=r"evidence\.public"):
        Evidence(victim, victim.encoder, [], torch.zeros(8, 3, 32, 32), torch.zeros(8, 3072))
    with pytest.raises(ValueError, match=r"evidence\.alpha"):
        Evidence(victim, victim.encoder, [], torch.zeros(8, 3, 32, 32), torch.zeros(8, 3, 32, 32), alpha=0.0)


# --------------------------------------------------------------------------- the scores


@pytest.fixture(scope="module")
def watermarked(cifar_root: Path) -> tuple[Victim, torch.Tensor]:
    """A victim whose augmentation predictor alone is trained (frozen random encoder) on rotated real photos.

    Returns the victim and its "private" images. Real photos have an up direction that a random CNN's
    features partly keep, so the predictor learns the rotation interval well above chance in seconds.
    """
    torch.set_num_threads(1)
    victim = build_victim(VictimSpec(name="wm", encoder="small_cnn", watermark={"weight": 1.0})).eval()
    images = loaders.load("cifar10:test", root=cifar_root, size=300).images
    gen = torch.Generator().manual_seed(100)  # other rotations than the tests' (seed 0)
    with torch.no_grad():
        batches = [watermark_views(to_float(images), gen) for _ in range(3)]
        reps = torch.cat([victim.encoder(views) for views, _ in batches])
    labels = torch.cat([labels for _, labels in batches])
    predictor = victim.predictor
    assert predictor is not None
    predictor.train()
    optimizer = torch.optim.Adam(predictor.parameters(), lr=1e-3)
    for _ in range(400):
        idx = torch.randint(0, len(reps), (256,), generator=gen)
        loss = F.cross_entropy(predictor(reps[idx]), labels[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    predictor.eval()
    return victim, images


def score(name: str, ev: Evidence, encoder: object) -> Score:
    return OWNERSHIP_TESTS.implementation(name).score(ev, encoder)  # type: ignore[arg-type]


def test_watermark_score_is_the_success_rate_with_an_exact_binomial_p(watermarked: tuple[Victim, torch.Tensor]) -> None:
    from scipy import stats

    from sslsteal.evaluation.watermark import watermark_correct

    victim, images = watermarked
    assert victim.predictor is not None
    ev = evidence(victim, victim.encoder, [], images)
    own = score("watermark", ev, victim.encoder)
    correct = watermark_correct(victim.encoder, victim.predictor, images, 0)
    assert own.value == pytest.approx(correct.mean()) and own.details["n"] == 2 * len(images) and own.value > 0.65
    assert own.chance_p == pytest.approx(stats.binomtest(int(correct.sum()), len(correct), 0.5, alternative="greater").pvalue)
    stranger = score("watermark", ev, random_encoder(2))
    assert abs(stranger.value - 0.5) < 0.06 and stranger.chance_p is not None and stranger.chance_p > own.chance_p


def test_watermark_flags_a_copy_calibrated_on_independent_encoders(watermarked: tuple[Victim, torch.Tensor]) -> None:
    victim, images = watermarked
    references = [random_encoder(i) for i in (1, 2, 3)]
    copied = run_test(OWNERSHIP_TESTS.implementation("watermark"), evidence(victim, perturbed_copy(victim.encoder), references, images))
    assert copied.verdict == "stolen" and copied.effect > 0.05 and copied.details["victim_p"] < 0.05
    stranger = run_test(OWNERSHIP_TESTS.implementation("watermark"), evidence(victim, random_encoder(4), references, images))
    assert stranger.verdict != "stolen"


def test_watermark_needs_a_predictor(victim: Victim, synthetic: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="victim has no watermark"):
        score("watermark", evidence(victim, victim.encoder, [], synthetic[:8]), victim.encoder)


def test_distance_is_the_mean_distance_of_normalised_representations(victim: Victim, synthetic: torch.Tensor) -> None:
    images = synthetic[:64]
    ev = evidence(victim, victim.encoder, [], images)
    other = random_encoder(1)
    with torch.no_grad():
        a, b = F.normalize(other(to_float(images)), dim=1), F.normalize(victim.encoder(to_float(images)), dim=1)
    assert score("distance", ev, other).value == pytest.approx(float((a - b).norm(dim=1).mean()), rel=1e-5)
    assert score("distance", ev, victim.encoder).value == pytest.approx(0.0, abs=1e-6)
    assert score("distance", ev, lambda x: 3.0 * victim.encoder(x)).value == pytest.approx(0.0, abs=1e-5)  # scale-free
    copied = run_test(
        OWNERSHIP_TESTS.implementation("distance"), evidence(victim, perturbed_copy(victim.encoder), [random_encoder(i) for i in (1, 2, 3)], images)
    )
    assert copied.verdict == "stolen" and copied.effect > 0 and copied.details["score"] < copied.details["reference_mean"]


def test_scores_in_the_victims_space_refuse_other_widths(victim: Victim, synthetic: torch.Tensor) -> None:
    narrow = lambda x: victim.encoder(x)[:, :64]
    ev = evidence(victim, narrow, [], synthetic[:8])
    for name in ("distance", "dataset_inference", "dataset_inference_gmm"):
        with pytest.raises(ValueError, match=r"representations in the victim's space.*64 dimensions, the victim 256"):
            score(name, ev, narrow)


def test_noise_ball_is_scale_free_and_calmer_for_a_smoothed_encoder(victim: Victim, synthetic: torch.Tensor) -> None:
    """Scaling the outputs changes nothing after normalisation; averaging over a blurred input reacts less to noise."""
    images = synthetic[:32]
    ev = evidence(victim, victim.encoder, [], images)
    own = score("noise_ball", ev, victim.encoder).value
    assert own > 0 and score("noise_ball", ev, lambda x: 5.0 * victim.encoder(x)).value == pytest.approx(own, rel=1e-4)
    blurred = lambda x: victim.encoder(F.avg_pool2d(x, 5, stride=1, padding=2))
    assert score("noise_ball", ev, blurred).value < own
    with pytest.raises(ValueError, match="at least 2 noisy copies"):
        OWNERSHIP_TESTS.implementation("noise_ball").score(ev, victim.encoder, copies=1)  # type: ignore[call-arg]


def flat_and_noisy(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat images (each its mean colour: crops and flips change nothing) and heavily noised other images."""
    half = len(images) // 2
    x, y = to_float(images[:half]), to_float(images[half:])
    flat = x.mean((2, 3), keepdim=True).expand_as(x).contiguous()
    noise = torch.rand(y.shape, generator=torch.Generator().manual_seed(1)) - 0.5
    return flat, (y + 0.5 * noise).clamp(0, 1)


def test_dataset_inference_score_is_the_public_minus_private_loss(victim: Victim, synthetic: torch.Tensor) -> None:
    """Two views of a flat image agree more than two views of a noisy photo, for any encoder: a positive gap."""
    flat, noisy = flat_and_noisy(synthetic[:400])
    low_private = score("dataset_inference", evidence(victim, victim.encoder, [], flat, noisy), victim.encoder)
    d = low_private.details
    assert low_private.value > 0 and low_private.value == pytest.approx(d["public_loss"] - d["private_loss"])
    assert d["n_private"] == d["n_public"] == 200
    high_private = score("dataset_inference", evidence(victim, victim.encoder, [], noisy, flat), victim.encoder)
    assert high_private.value == pytest.approx(-low_private.value)


def test_dataset_inference_gmm_score_is_the_loglik_gap(victim: Victim, synthetic: torch.Tensor) -> None:
    """The victim's GMM, fitted on clean private images, finds held-out clean images likelier than noisy ones."""
    private, other = synthetic[:200], synthetic[200:400]
    _, noisy = flat_and_noisy(torch.cat([other, other]))
    shifted = score("dataset_inference_gmm", evidence(victim, victim.encoder, [], private, noisy), victim.encoder)
    d = shifted.details
    assert shifted.value > 0 and shifted.value == pytest.approx(d["private_loglik"] - d["public_loglik"]) and d["n_private"] == 100
    same = score("dataset_inference_gmm", evidence(victim, victim.encoder, [], private, other), victim.encoder)
    assert same.value < shifted.value
