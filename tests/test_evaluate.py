"""Linear probe, fidelity, probe protocol and the random floor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sslsteal.core.stats import wilson_interval
from sslsteal.data.loaders import ImageSet
from sslsteal.evaluation import baselines
from sslsteal.evaluation.baselines import RANDOM_INITS, random_accuracies, random_encoder, random_floor
from sslsteal.evaluation.probe import ProbeData, extract_features, fidelity, knn_accuracy, linear_probe, probe, probe_data
from sslsteal.specs.base import ConfigError, parse
from sslsteal.specs.datasets import parse_ref
from sslsteal.specs.evaluate import ProbeSpec


def test_linear_probe_separates_separable_features() -> None:
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(4, 16)) * 5
    y = rng.integers(0, 4, size=400)
    x = centers[y] + rng.normal(size=(400, 16))
    assert linear_probe(x[:300], y[:300], x[300:], y[300:]) > 95.0
    noise = rng.normal(size=(400, 16))
    assert linear_probe(noise[:300], y[:300], noise[300:], y[300:]) < 50.0


def test_fidelity_reference_values() -> None:
    a = np.array([[1.0, 0.0], [0.0, 2.0]])
    b = np.array([[1.0, 0.0], [2.0, 0.0]])
    f = fidelity(a, b)
    assert f["fidelity.cosine"] == pytest.approx(0.5)
    assert f["fidelity.l2"] == pytest.approx((0.0 + np.sqrt(8.0)) / 2)
    same = fidelity(a, a)
    assert same["fidelity.cosine"] == pytest.approx(1.0) and same["fidelity.l2"] == 0.0


def test_extract_features_accepts_uint8_and_a_plain_function() -> None:
    images = torch.full((5, 3, 4, 4), 255, dtype=torch.uint8)
    feats = extract_features(lambda x: x.flatten(1).mean(1, keepdim=True), images, batch_size=2)
    assert feats.shape == (5, 1) and np.allclose(feats, 1.0)


def test_probe_spec_validation() -> None:
    with pytest.raises(ConfigError, match="downstream: unknown dataset 'imagenet'"):
        parse(ProbeSpec, {"downstream": ["imagenet"]})
    assert ProbeSpec(train_images=10).key("cifar10") == "cifar10|train=10|test=all"
    # a pool that removes test images changes the key; one elsewhere does not
    assert ProbeSpec().key("cifar10", parse_ref("cifar10:test[:9000]")) == "cifar10|train=all|test=all|minus=cifar10:test[0:9000]"
    assert ProbeSpec().key("cifar10", parse_ref("cifar10:train")) == "cifar10|train=all|test=all"


def test_random_floor_averages_independent_inits_and_is_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = ProbeSpec(downstream=["synthetic"], train_images=500, test_images=200)
    accs = random_accuracies("small_cnn", "synthetic", spec)
    assert len(accs) == RANDOM_INITS >= 3 and min(accs) > 20.0  # random conv features are far better than chance (10%)
    floor = random_floor("small_cnn", "synthetic", spec)
    assert floor["random_acc.synthetic"] == pytest.approx(float(np.mean(accs)))
    assert floor["random_acc.synthetic.std"] == pytest.approx(float(np.std(accs, ddof=1)))
    # the inits really differ from each other
    first, second = (random_encoder("small_cnn", i).state_dict() for i in (0, 1))
    assert any(not torch.equal(first[k], second[k]) for k in first)

    def recompute(*args: object, **kwargs: object) -> float:
        raise AssertionError("the cached floor was recomputed")

    monkeypatch.setattr(baselines, "linear_eval", recompute)
    assert random_accuracies("small_cnn", "synthetic", spec) == accs


def test_wilson_interval_matches_the_formula() -> None:
    n, acc, z = 1000, 62.0, 1.959963984540054
    p = acc / 100
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    lo, hi = wilson_interval(acc, n)
    assert lo == pytest.approx(100 * (centre - half)) and hi == pytest.approx(100 * (centre + half))
    assert hi - lo > wilson_interval(acc, 10 * n)[1] - wilson_interval(acc, 10 * n)[0]  # more images, narrower


def test_probe_scores_validation_rows_with_a_probe_that_never_saw_them() -> None:
    task = probe_data("synthetic", train_images=600, test_images=200, val_images=150)
    assert task.val is not None and len(task.val) == 150
    result = probe(lambda x: x.flatten(1)[:, ::16], task)
    assert result.test_images == 200 and result.val_images == 150 and result.val_acc is not None
    # the same draw every time: every trial of a search is scored on one validation set
    again = probe_data("synthetic", train_images=600, test_images=200, val_images=150)
    assert torch.equal(task.val.positions, again.val.positions)


def test_fashion_mnist_probe_data_is_reshaped_for_the_encoder() -> None:
    if not Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip("Debian package dataset-fashion-mnist is not installed")
    task = probe_data("fashion_mnist", train_images=100, test_images=50)
    assert task.train_images.shape == (100, 3, 32, 32) and task.test_images.shape == (50, 3, 32, 32)
    assert task.train_images.dtype == torch.uint8 and set(np.unique(task.test_labels)) <= set(range(10))


def test_knn_accuracy_against_a_hand_count() -> None:
    # Features are the images' first pixel values: class 0 near (1, 0), class 1 near (0, 1).
    train = torch.tensor([[1.0, 0.1], [0.9, 0.0], [1.0, 0.2], [0.1, 1.0], [0.0, 0.9]]).view(5, 2, 1, 1)
    test = torch.tensor([[0.8, 0.1], [0.2, 1.0], [1.0, 0.9]]).view(3, 2, 1, 1)
    as_set = lambda x, y: ImageSet("toy", x.to(torch.uint8), torch.tensor(y), 2)
    task = ProbeData("toy", as_set(train * 100, [0, 0, 0, 1, 1]), as_set(test * 100, [0, 1, 1]))
    encoder = lambda x: x.flatten(1)
    # k=1 by cosine: the first two are right; (1, 0.9) is nearest to (1, 0.2) (cos 0.860 vs 0.740 for (0.1, 1)),
    # a class-0 neighbour, so it is wrong.
    assert knn_accuracy(encoder, task, k=1) == pytest.approx(100 * 2 / 3)
    # k=5: every test point sees all five neighbours, 3 votes for class 0 -> only the first is right.
    assert knn_accuracy(encoder, task, k=5) == pytest.approx(100 / 3)
