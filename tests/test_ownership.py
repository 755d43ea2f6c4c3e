"""Ownership tests on tiny untrained encoders whose relation to the victim is known by construction."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from sslsteal import data
from sslsteal.augment import to_float, watermark_views
from sslsteal.models import Encoder, build_encoder
from sslsteal.ownership import OWNERSHIP_TESTS, Evidence, OwnershipResult, run_tests
from sslsteal.victim.checkpoint import Victim, build_victim
from sslsteal.victim.spec import VictimSpec

ALL_TESTS = {"watermark", "dataset_inference", "dataset_inference_gmm", "noise_ball", "distance"}


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """The machine's cores are busy training: keep these tests on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def random_encoder(seed: int) -> Encoder:
    """An independently initialised encoder: stands in for a genuinely (separately) trained model."""
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
    """A random victim without a watermark (the statistics only need a fixed encoder and head)."""
    torch.set_num_threads(1)
    return build_victim(VictimSpec(name="plain")).eval()


@pytest.fixture(scope="module")
def synthetic() -> torch.Tensor:
    """500 generated uint8 images (stripes + colour + noise), available everywhere."""
    return data.load("synthetic:test").images


@pytest.fixture(scope="module")
def watermarked(cifar_root: Path) -> tuple[Victim, torch.Tensor]:
    """A victim whose augmentation predictor alone is trained (frozen random encoder) on rotated real photos.

    Returns the victim and its "private" images. Real photos have an up direction that a random CNN's
    features partly keep, so the predictor learns the rotation interval well above chance in seconds.
    """
    torch.set_num_threads(1)
    victim = build_victim(VictimSpec(name="wm", encoder="small_cnn", watermark={"weight": 1.0})).eval()
    images = data.load("cifar10:test", root=cifar_root, size=300).images
    gen = torch.Generator().manual_seed(100)  # other rotations than the tests' (seed 0)
    with torch.no_grad():
        batches = [watermark_views(to_float(images), gen) for _ in range(3)]
        reps = torch.cat([victim.encoder(views) for views, _ in batches])
    labels = torch.cat([labels for _, labels in batches])
    predictor = victim.predictor
    assert predictor is not None
    predictor.train()
    optimizer = torch.optim.Adam(predictor.parameters(), lr=1e-3)
    for _ in range(200):
        idx = torch.randint(0, len(reps), (256,), generator=gen)
        loss = F.cross_entropy(predictor(reps[idx]), labels[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    predictor.eval()
    return victim, images


def evidence(victim: Victim, suspect: object, reference: object, private: torch.Tensor, public: torch.Tensor | None = None) -> Evidence:
    return Evidence(victim, suspect, reference, private, private if public is None else public)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- result and registry


def test_result_verdict_and_metric_names() -> None:
    result = OwnershipResult("watermark", 3.0, 0.01, 0.1, {"acc": 61.0, "reference_acc": 51.0})
    assert result.stolen and result.verdict(0.05) and not result.verdict(0.001)
    assert result.metrics() == {
        "ownership.watermark.p_value": 0.01,
        "ownership.watermark.statistic": 3.0,
        "ownership.watermark.effect": 0.1,
        "ownership.watermark.acc": 61.0,
        "ownership.watermark.reference_acc": 51.0,
    }
    assert not OwnershipResult("distance", 0.0, 0.2, 0.0).stolen


def test_registry_and_unknown_names(victim: Victim, synthetic: torch.Tensor) -> None:
    assert set(OWNERSHIP_TESTS) == ALL_TESTS
    ev = evidence(victim, victim.encoder, random_encoder(1), synthetic[:16])
    with pytest.raises(ValueError, match=r"unknown ownership test 'nope'; known: dataset_inference, dataset_inference_gmm, distance"):
        run_tests(["distance", "nope"], ev)
    results = run_tests(["distance", "noise_ball"], ev)
    assert list(results) == ["distance", "noise_ball"] and results["distance"].test == "distance"
    metrics = results["distance"].metrics()
    assert {"ownership.distance.p_value", "ownership.distance.statistic", "ownership.distance.effect", "ownership.distance.degenerate"} <= set(metrics)
    assert all(isinstance(v, float) for v in metrics.values())


def test_evidence_rejects_non_image_batches(victim: Victim) -> None:
    with pytest.raises(ValueError, match="evidence.public"):
        Evidence(victim, victim.encoder, None, torch.zeros(8, 3, 32, 32), torch.zeros(8, 3072))


# --------------------------------------------------------------------------- watermark


def test_watermark_flags_a_copy_but_not_an_independent_encoder(watermarked: tuple[Victim, torch.Tensor]) -> None:
    victim, images = watermarked
    reference = random_encoder(1)
    copy_result = OWNERSHIP_TESTS["watermark"](evidence(victim, victim.encoder, reference, images))
    assert copy_result.stolen and copy_result.p_value < 1e-3 and copy_result.statistic > 0
    details = copy_result.details
    assert copy_result.effect == pytest.approx((details["acc"] - details["reference_acc"]) / 100)
    assert copy_result.effect > 0.08 and copy_result.metrics()["ownership.watermark.acc"] > 58.0
    assert details["n"] == 2 * len(images)

    genuine = OWNERSHIP_TESTS["watermark"](evidence(victim, random_encoder(2), reference, images))
    assert not genuine.stolen and abs(genuine.effect) < 0.05

    against_chance = OWNERSHIP_TESTS["watermark"](evidence(victim, victim.encoder, None, images))
    assert against_chance.stolen and against_chance.details["reference_acc"] == 50.0
    assert against_chance.effect == pytest.approx(details["acc"] / 100 - 0.5)


def test_watermark_identical_suspect_and_reference_is_no_evidence(watermarked: tuple[Victim, torch.Tensor]) -> None:
    victim, images = watermarked
    result = OWNERSHIP_TESTS["watermark"](evidence(victim, victim.encoder, victim.encoder, images))
    assert result.effect == 0.0 and result.statistic == 0.0 and result.p_value == pytest.approx(0.5) and not result.stolen


def test_watermark_needs_a_predictor(victim: Victim, synthetic: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="victim has no watermark"):
        OWNERSHIP_TESTS["watermark"](evidence(victim, victim.encoder, None, synthetic[:8]))


# --------------------------------------------------------------------------- distance


def test_distance_separates_a_copy_from_an_independent_encoder(victim: Victim, synthetic: torch.Tensor) -> None:
    images = synthetic[:64]
    stolen, independent = perturbed_copy(victim.encoder), random_encoder(1)
    result = OWNERSHIP_TESTS["distance"](evidence(victim, stolen, independent, images))
    assert result.stolen and result.statistic < 0 and result.effect > 0
    assert result.details["suspect_distance"] < result.details["reference_distance"]
    assert result.effect == pytest.approx(result.details["reference_distance"] - result.details["suspect_distance"])

    swapped = OWNERSHIP_TESTS["distance"](evidence(victim, independent, stolen, images))
    assert swapped.p_value > 0.95 and swapped.effect == pytest.approx(-result.effect)


def test_distance_needs_a_reference_in_the_victims_space(victim: Victim, synthetic: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="distance test needs a reference encoder"):
        OWNERSHIP_TESTS["distance"](evidence(victim, victim.encoder, None, synthetic[:8]))
    narrow = lambda x: victim.encoder(x)[:, :64]  # noqa: E731
    with pytest.raises(ValueError, match="representations in the victim's space.*64 dimensions, the victim 256"):
        OWNERSHIP_TESTS["distance"](evidence(victim, narrow, random_encoder(1), synthetic[:8]))


# --------------------------------------------------------------------------- noise ball


def test_noise_ball_flags_a_less_reactive_suspect(victim: Victim, synthetic: torch.Tensor) -> None:
    """Halving the victim's outputs halves every distance to the noisy copies, so every sigma_i halves."""
    images = synthetic[:32]
    reference = random_encoder(1)
    damped = OWNERSHIP_TESTS["noise_ball"](evidence(victim, lambda x: 0.5 * victim.encoder(x), reference, images))
    d = damped.details
    assert damped.stolen and damped.statistic < 0
    assert d["suspect_sigma"] == pytest.approx(0.5 * d["victim_sigma"], rel=1e-4)
    assert damped.effect == pytest.approx(d["victim_sigma"] - d["suspect_sigma"]) and damped.effect > 0
    assert d["reference_sigma"] > 0 and d["reference_sigma"] != pytest.approx(d["victim_sigma"])

    amplified = OWNERSHIP_TESTS["noise_ball"](evidence(victim, lambda x: 2.0 * victim.encoder(x), None, images))
    assert amplified.p_value > 0.95 and amplified.effect < 0 and "reference_sigma" not in amplified.details


def test_noise_ball_identical_model_is_degenerate_not_stolen(victim: Victim, synthetic: torch.Tensor) -> None:
    """The victim tested against itself: every paired difference is 0, scipy gives NaN, we give p=1."""
    result = OWNERSHIP_TESTS["noise_ball"](evidence(victim, victim.encoder, None, synthetic[:16]))
    assert result.p_value == 1.0 and result.statistic == 0.0 and result.effect == 0.0
    assert result.details["degenerate"] == 1.0 and not result.stolen


# --------------------------------------------------------------------------- dataset inference


def flat_and_noisy(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat images (each its mean colour: crops and flips change nothing) and heavily noised other images."""
    half = len(images) // 2
    x, y = to_float(images[:half]), to_float(images[half:])
    flat = x.mean((2, 3), keepdim=True).expand_as(x).contiguous()
    noise = torch.rand(y.shape, generator=torch.Generator().manual_seed(1)) - 0.5
    return flat, (y + 0.5 * noise).clamp(0, 1)


def test_dataset_inference_direction(victim: Victim, synthetic: torch.Tensor) -> None:
    """Two views of a flat image agree more than two views of a noisy photo, for any encoder: lower loss."""
    flat, noisy = flat_and_noisy(synthetic[:400])
    low_private = OWNERSHIP_TESTS["dataset_inference"](evidence(victim, victim.encoder, None, flat, noisy))
    d = low_private.details
    assert low_private.stolen and low_private.statistic < 0 and d["private_loss"] < d["public_loss"]
    assert low_private.effect == pytest.approx(d["public_loss"] - d["private_loss"]) and d["cohen_d"] > 0
    assert d["n_private"] == d["n_public"] == 200

    high_private = OWNERSHIP_TESTS["dataset_inference"](evidence(victim, victim.encoder, None, noisy, flat))
    assert high_private.p_value > 0.95 and high_private.effect == pytest.approx(-low_private.effect)


def test_dataset_inference_needs_the_victims_space(victim: Victim, synthetic: torch.Tensor) -> None:
    narrow = lambda x: victim.encoder(x)[:, :32]  # noqa: E731
    for name in ("dataset_inference", "dataset_inference_gmm"):
        with pytest.raises(ValueError, match="needs representations in the victim's space"):
            OWNERSHIP_TESTS[name](evidence(victim, narrow, None, synthetic[:8]))


def test_dataset_inference_gmm_direction(victim: Victim, synthetic: torch.Tensor) -> None:
    """The victim's GMM, fitted on clean private images, finds held-out clean images likelier than noisy ones."""
    private, other = synthetic[:200], synthetic[200:400]
    _, noisy = flat_and_noisy(torch.cat([other, other]))
    shifted = OWNERSHIP_TESTS["dataset_inference_gmm"](evidence(victim, victim.encoder, None, private, noisy))
    d = shifted.details
    assert shifted.stolen and shifted.statistic > 0 and d["private_loglik"] > d["public_loglik"]
    assert shifted.effect == pytest.approx(d["private_loglik"] - d["public_loglik"]) and d["cohen_d"] > 0
    assert d["n_fit"] == 100 and d["n_private"] == 100

    same_distribution = OWNERSHIP_TESTS["dataset_inference_gmm"](evidence(victim, victim.encoder, None, private, other))
    assert not same_distribution.stolen
