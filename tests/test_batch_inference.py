"""Bulk embedding through Ray Data batch inference on real CIFAR-10: the same features as the in-process path, the
size threshold that routes a set there, and a Tune trial running the pool inside the bundles it reserved."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import ray
import torch
from ray import tune

from sslsteal.data import loaders
from sslsteal.evaluation.probe import embed_in_bulk, extract_features
from sslsteal.models import build_encoder
from sslsteal.orchestration.batch_inference import bulk_needed, embed, trial_resources
from sslsteal.specs.sweep import BulkInference, Resources


def _encoder(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_encoder("small_cnn").eval()


def test_large_sets_of_an_encoder_go_to_the_bulk_route_and_small_ones_stay() -> None:
    encoder = _encoder(0)
    images = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8)
    calls: list[int] = []

    def recorder(enc: torch.nn.Module, imgs: torch.Tensor) -> np.ndarray:
        calls.append(len(imgs))
        return np.zeros((len(imgs), 7), dtype=np.float32)

    embed_in_bulk(recorder, min_images=30)
    try:
        assert extract_features(encoder, images).shape == (40, 7)
        assert extract_features(encoder, images[:29]).shape == (29, 256)  # under the threshold: in-process
        assert extract_features(lambda x: x.flatten(1)[:, :5], images).shape == (40, 5)  # an API, not an encoder: in-process
    finally:
        embed_in_bulk(None)
    assert calls == [40]
    assert extract_features(encoder, images).shape == (40, 256)


def test_bulk_is_on_only_when_a_split_reaches_the_threshold() -> None:
    splits = ["cifar10:train", "cifar10:test"]
    assert bulk_needed(BulkInference(), splits) is None  # 50,000 < the default 100,000: CIFAR-10 stays in-process
    assert bulk_needed(BulkInference(min_images=50_000), splits) == BulkInference(min_images=50_000)
    assert trial_resources(Resources(cpu=1), None) == {"cpu": 1, "gpu": 0}
    pg = trial_resources(Resources(cpu=1, gpu=0.5), BulkInference(actors=2, cpu=2, gpu=1))
    assert pg.bundles == [{"CPU": 1, "GPU": 0.5}, {"CPU": 2, "GPU": 1}, {"CPU": 2, "GPU": 1}]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ray_data_features_equal_the_in_process_ones(cifar_root: Path) -> None:
    images = loaders.load("cifar10:test", root=cifar_root).images[:2500]
    encoder = _encoder(1)
    expected = extract_features(encoder, images)
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        got = embed(encoder, images, BulkInference(min_images=1, actors=2, batch_size=300))
    finally:
        ray.shutdown()
    assert got.dtype == np.float32 and got.shape == expected.shape == (2500, 256)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)  # same rows in the same order
    assert np.abs(np.diff(got[:50], axis=0)).max() > 1e-3  # distinct images give distinct features


@pytest.mark.slow
@pytest.mark.timeout(300)  # an actor scheduled outside the trial's placement group would wait forever on 2 CPUs
def test_a_trial_runs_its_pool_inside_the_bundles_it_reserved(cifar_root: Path, tmp_path: Path) -> None:
    """Two CPUs, one per bundle: the pool's actor can only start in the trial's own placement group."""
    bulk = BulkInference(min_images=1000, actors=1, batch_size=512)
    images = loaders.load("cifar10:test", root=cifar_root).images[:1200]
    encoder = _encoder(2)
    expected = extract_features(encoder, images)

    def trial(config: dict[str, object]) -> None:
        from sslsteal.orchestration import batch_inference

        embed_in_bulk(lambda enc, imgs: batch_inference.embed(enc, imgs, bulk), bulk.min_images)
        features = extract_features(encoder, images)
        tune.report({"max_error": float(np.abs(features - expected).max()), "pg": ray.util.get_current_placement_group() is not None})

    ray.init(num_cpus=2, include_dashboard=False)
    try:
        run_config = tune.RunConfig(storage_path=str(tmp_path), verbose=0)
        results = tune.Tuner(tune.with_resources(trial, trial_resources(Resources(cpu=1), bulk)), run_config=run_config).fit()
        assert ray.cluster_resources()["CPU"] == 2
    finally:
        ray.shutdown()
    [result] = list(results)
    assert result.error is None
    assert result.metrics["pg"] is True
    assert result.metrics["max_error"] <= 1e-5
