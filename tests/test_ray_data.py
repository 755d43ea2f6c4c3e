"""The sweep's Ray Data path on the real CIFAR-10 Parquet copy: the same arrays as an in-process load, for one split
and for two splits read in one execution, on one node and on a worker node of a two-node cluster that cannot see
the files (only the driver's node had them); and on an image folder of real CIFAR-10 test images (`read_images`),
locally and read on the head node for a trial on the worker node."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import ray
from ray.cluster_utils import Cluster

from sslsteal.data import loaders
from sslsteal.orchestration.ray_data import SharedSplit, read_parquet_files, share_datasets

pytestmark = pytest.mark.slow


@pytest.fixture
def private_root(cifar_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A root holding the only copies of CIFAR-10's test split and of the train split's first 2,000 rows (real
    Parquet files), an empty decoded-array cache and no other data root."""
    import pyarrow.parquet as pq

    root = tmp_path / "data"
    (root / "cifar10").mkdir(parents=True)
    shutil.copy(cifar_root / "cifar10" / "test.parquet", root / "cifar10" / "test.parquet")
    pq.write_table(pq.read_table(cifar_root / "cifar10" / "train.parquet").slice(0, 2000), root / "cifar10" / "train.parquet")
    monkeypatch.setenv("SSLSTEAL_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SSLSTEAL_DATA", raising=False)
    return root


def _in_process(root: Path, monkeypatch: pytest.MonkeyPatch, cache: Path, spec: str = "cifar10:test") -> tuple[np.ndarray, np.ndarray]:
    """What `sslsteal.data.loaders` serves for `spec`, decoded in this process into a cache of its own."""
    monkeypatch.setenv("SSLSTEAL_CACHE", str(cache))
    return loaders.arrays(spec, root=root)


def test_parquet_splits_through_ray_data_equal_the_in_process_loads(private_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both files in one Ray Data execution: each split gets exactly its own rows, in the in-process order."""
    splits = ["cifar10:test", "cifar10:train"]
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        assert not any(loaders.is_cached(spec) for spec in splits)
        decoded = read_parquet_files([private_root / "cifar10" / "test.parquet"], (3, 32, 32)).materialize()
        assert decoded.num_blocks() > 1  # decoded in several tasks, not one
        shared = share_datasets(splits, str(private_root))
        assert {split.decoded_by for split in shared.values()} == {"ray-data"}
        served = {spec: ray.get(split.arrays) for spec, split in shared.items()}
        assert all(loaders.is_cached(spec) for spec in splits)  # written on the driver from the decoded rows: the next sweep reads it
        again = share_datasets(splits, str(private_root))
        assert {split.decoded_by for split in again.values()} == {"driver"}
        np.testing.assert_array_equal(ray.get(again["cifar10:test"].arrays)[0], served["cifar10:test"][0])
    finally:
        ray.shutdown()
    assert served["cifar10:test"][0].shape == (10_000, 3, 32, 32) and served["cifar10:test"][0].dtype == np.uint8
    assert len(served["cifar10:train"][1]) == 2000
    for spec in splits:
        expected = _in_process(private_root, monkeypatch, tmp_path / f"other-cache-{spec}", spec)
        np.testing.assert_array_equal(served[spec][1], expected[1])
        np.testing.assert_array_equal(served[spec][0], expected[0])
    assert np.bincount(served["cifar10:test"][1][:1000], minlength=10).min() > 50  # positions in the fixed shuffled order, not class-sorted


def test_splits_that_are_not_parquet_are_shared_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSLSTEAL_CACHE", str(tmp_path / "cache"))
    ray.init(num_cpus=1, include_dashboard=False)
    try:
        [shared] = share_datasets(["synthetic:test"]).values()
        assert shared.decoded_by == "driver"
        images, labels = ray.get(shared.arrays)
    finally:
        ray.shutdown()
    np.testing.assert_array_equal(images, loaders.arrays("synthetic:test")[0])
    np.testing.assert_array_equal(labels, loaders.arrays("synthetic:test")[1])


def _image_folder(root: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """Real CIFAR-10 images as PNGs under class-named folders (torchvision's ImageFolder layout) at `root`."""
    from PIL import Image

    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]  # sorted: CIFAR-10's label order
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        folder = root / names[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.transpose(1, 2, 0)).save(folder / f"{i:05d}.png")


def test_a_worker_node_gets_splits_only_the_head_had_on_disk(cifar_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """cifar10:train as Parquet (the real file's first 2,000 rows) and cifar10:test as an image folder (500 real
    test images), both only under the head node's root and deleted once shared."""
    import pyarrow.parquet as pq

    root = tmp_path / "data"
    (root / "cifar10").mkdir(parents=True)
    pq.write_table(pq.read_table(cifar_root / "cifar10" / "train.parquet").slice(0, 2000), root / "cifar10" / "train.parquet")
    images, labels = loaders.arrays("cifar10:test", root=cifar_root)
    _image_folder(root / "cifar10" / "test", images[:500], labels[:500])
    monkeypatch.delenv("SSLSTEAL_DATA", raising=False)
    expected = {}
    for spec in ("cifar10:train", "cifar10:test"):
        monkeypatch.setenv("SSLSTEAL_CACHE", str(tmp_path / "other-cache"))
        expected[spec] = loaders.arrays(spec, root=root)
    monkeypatch.setenv("SSLSTEAL_CACHE", str(tmp_path / "cache"))
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1, resources={"far": 1})
    cluster.wait_for_nodes()
    try:
        ray.init(address=cluster.address)
        head = ray.get_runtime_context().get_node_id()
        shared = share_datasets(list(expected), str(root))
        shutil.rmtree(root)  # from here on no process can read the files: the worker node gets the arrays from the cluster

        @ray.remote(resources={"far": 1}, num_cpus=1)
        def read_far_away(shared: dict[str, SharedSplit], path: str) -> tuple[str, bool, dict[str, tuple[np.ndarray, np.ndarray]]]:
            """On the worker node (this test module is not importable there, so the function travels by value)."""
            return ray.get_runtime_context().get_node_id(), Path(path).exists(), {spec: ray.get(split.arrays) for spec, split in shared.items()}

        node, files_seen, served = ray.get(read_far_away.remote(shared, str(root)))
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert node != head
    assert not files_seen
    assert {split.decoded_by for split in shared.values()} == {"ray-data"}
    assert [len(served[spec][1]) for spec in expected] == [2000, 500]
    for spec, (images, labels) in expected.items():
        np.testing.assert_array_equal(served[spec][1], labels)
        np.testing.assert_array_equal(served[spec][0], images)


def test_an_image_folder_through_read_images_equals_the_in_process_load(cifar_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """2,000 real CIFAR-10 test images as PNGs under class-named folders."""
    images, labels = loaders.arrays("cifar10:test", root=cifar_root)
    root = tmp_path / "data"
    _image_folder(root / "cifar10" / "test", images[:2000], labels[:2000])
    monkeypatch.delenv("SSLSTEAL_DATA", raising=False)
    monkeypatch.setenv("SSLSTEAL_CACHE", str(tmp_path / "cache"))
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        [shared] = share_datasets(["cifar10:test"], str(root)).values()
        assert shared.decoded_by == "ray-data"  # read and decoded by Ray Data, not in this process
        served = ray.get(shared.arrays)
    finally:
        ray.shutdown()
    expected = _in_process(root, monkeypatch, tmp_path / "other-cache")
    np.testing.assert_array_equal(served[0], expected[0])
    np.testing.assert_array_equal(served[1], expected[1])
    source = {images[i].tobytes(): labels[i] for i in range(2000)}  # every file came back once, with its own label
    assert sorted(source[image.tobytes()] for image in served[0]) == sorted(labels[:2000].tolist())
    assert [source[image.tobytes()] for image in served[0]] == served[1].tolist()
