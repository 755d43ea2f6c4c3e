"""The sweep's Ray Data path on the real CIFAR-10 Parquet copy: the same arrays as an in-process load, on one node
and on a worker node of a two-node cluster that cannot see the file (only the driver's node had it); and on an
image folder of real CIFAR-10 test images (`read_images`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import ray
from ray.cluster_utils import Cluster

from sslsteal import data
from sslsteal.orchestration.ray_data import SharedSplit, read_split, share_datasets, split_arrays

pytestmark = pytest.mark.slow


@pytest.fixture
def private_root(cifar_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A root holding the only copy of CIFAR-10's test split, an empty decoded-array cache and no other data root."""
    root = tmp_path / "data"
    (root / "cifar10").mkdir(parents=True)
    shutil.copy(cifar_root / "cifar10" / "test.parquet", root / "cifar10" / "test.parquet")
    monkeypatch.setenv("SSLSTEAL_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SSLSTEAL_DATA", raising=False)
    return root


def _in_process(root: Path, monkeypatch: pytest.MonkeyPatch, cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """What `sslsteal.data` serves for cifar10:test, decoded in this process into a cache of its own."""
    monkeypatch.setenv("SSLSTEAL_CACHE", str(cache))
    return data.arrays("cifar10:test", root=root)


def test_ray_data_split_equals_the_in_process_load(private_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        assert not data.is_cached("cifar10:test")
        dataset = read_split("cifar10:test", str(private_root))
        assert dataset is not None
        [shared] = share_datasets(["cifar10:test"], str(private_root)).values()
        assert shared.blocks is not None and len(shared.blocks) > 1  # decoded in several tasks, not one
        served = split_arrays(shared)
        assert data.is_cached("cifar10:test")  # written on the driver from the decoded blocks: the next sweep reads it
        [again] = share_datasets(["cifar10:test"], str(private_root)).values()
        assert again.blocks is None
        np.testing.assert_array_equal(split_arrays(again)[0], served[0])
    finally:
        ray.shutdown()
    expected = _in_process(private_root, monkeypatch, tmp_path / "other-cache")
    assert served[0].shape == (10_000, 3, 32, 32) and served[0].dtype == np.uint8
    np.testing.assert_array_equal(served[1], expected[1])
    np.testing.assert_array_equal(served[0], expected[0])
    assert np.bincount(served[1][:1000], minlength=10).min() > 50  # positions in the fixed shuffled order, not class-sorted


def test_splits_that_are_not_parquet_are_shared_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSLSTEAL_CACHE", str(tmp_path / "cache"))
    assert read_split("synthetic:test") is None
    ray.init(num_cpus=1, include_dashboard=False)
    try:
        [shared] = share_datasets(["synthetic:test"]).values()
        assert shared.blocks is None
        images, labels = split_arrays(shared)
    finally:
        ray.shutdown()
    np.testing.assert_array_equal(images, data.arrays("synthetic:test")[0])
    np.testing.assert_array_equal(labels, data.arrays("synthetic:test")[1])


def test_a_worker_node_gets_a_split_only_the_head_had_on_disk(private_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1, resources={"far": 1})
    cluster.wait_for_nodes()
    source = private_root / "cifar10" / "test.parquet"
    try:
        ray.init(address=cluster.address)
        head = ray.get_runtime_context().get_node_id()
        [shared] = share_datasets(["cifar10:test"], str(private_root)).values()
        expected = _in_process(private_root, monkeypatch, tmp_path / "other-cache")
        source.unlink()  # from here on no process can read the file: the worker node gets the blocks from the cluster

        @ray.remote(resources={"far": 1}, num_cpus=1)
        def assemble_far_away(shared: SharedSplit, path: str) -> tuple[str, bool, tuple[np.ndarray, np.ndarray]]:
            """On the worker node (this test module is not importable there, so the function travels by value)."""
            return ray.get_runtime_context().get_node_id(), Path(path).exists(), split_arrays(shared)

        node, file_seen, served = ray.get(assemble_far_away.remote(shared, str(source)))
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert node != head
    assert not file_seen
    np.testing.assert_array_equal(served[1], expected[1])
    np.testing.assert_array_equal(served[0], expected[0])


def test_an_image_folder_through_read_images_equals_the_in_process_load(cifar_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """2,000 real CIFAR-10 test images as PNGs under class-named folders (torchvision's ImageFolder layout)."""
    from PIL import Image

    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]  # sorted: CIFAR-10's label order
    images, labels = data.arrays("cifar10:test", root=cifar_root)
    root = tmp_path / "data"
    for i in range(2000):
        folder = root / "cifar10" / "test" / names[labels[i]]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[i].transpose(1, 2, 0)).save(folder / f"{i:05d}.png")
    monkeypatch.delenv("SSLSTEAL_DATA", raising=False)
    monkeypatch.setenv("SSLSTEAL_CACHE", str(tmp_path / "cache"))
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        [shared] = share_datasets(["cifar10:test"], str(root)).values()
        assert shared.blocks is not None  # read and decoded by Ray Data, not in this process
        served = split_arrays(shared)
    finally:
        ray.shutdown()
    expected = _in_process(root, monkeypatch, tmp_path / "other-cache")
    np.testing.assert_array_equal(served[0], expected[0])
    np.testing.assert_array_equal(served[1], expected[1])
    source = {images[i].tobytes(): labels[i] for i in range(2000)}  # every file came back once, with its own label
    assert sorted(source[image.tobytes()] for image in served[0]) == sorted(labels[:2000].tolist())
    assert [source[image.tobytes()] for image in served[0]] == served[1].tolist()
