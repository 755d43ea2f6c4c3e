"""Shared fixtures: an isolated cache per test session, the real CIFAR-10 Parquet root, tiny synthetic specs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

pytest_plugins = ["mlflow_server"]  # one real mlflow server per test session, fixture `mlflow_uri`


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep datasets, victims and baselines that tests create out of the user's ~/.cache."""
    os.environ["SSLSTEAL_CACHE"] = str(tmp_path_factory.mktemp("sslsteal-cache"))
    os.environ["SSLSTEAL_OFFLINE"] = "1"
    torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def cifar_root() -> Path:
    """The offline CIFAR-10 Parquet copy beside the repository (skips when absent)."""
    if not (SHARED_DATA / "cifar10" / "test.parquet").is_file():
        pytest.skip(f"real CIFAR-10 not found under {SHARED_DATA}")
    return SHARED_DATA


def tiny_victim_spec(**overrides: object) -> dict[str, object]:
    """A victim that trains in seconds on the synthetic dataset."""
    spec: dict[str, object] = {
        "name": "unit",
        "encoder": "small_cnn",
        "data": "synthetic:train",
        "train_images": 512,
        "epochs": 1,
        "batch_size": 128,
        "lr": 1e-3,
        "evaluate": {"downstream": ["synthetic"], "train_images": 500, "test_images": 200},
    }
    spec.update(overrides)
    return spec
