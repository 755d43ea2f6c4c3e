"""Tests for sslsteal.data.loaders: spec parsing, the registry, ImageSet helpers, the on-disk cache and each
source path (Parquet, torchvision files, Debian Fashion-MNIST, failed downloads) on tiny fake data."""

from __future__ import annotations

import dataclasses
import gzip
import io
import os
import pickle
import re
import struct
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch

from sslsteal.data import loaders
from sslsteal.data.loaders import ImageSet, cache_dir, data_roots, load
from sslsteal.specs.datasets import DATASETS, DatasetInfo, DatasetUnavailableError, UnknownDatasetError, declare, parse_spec


def scoped_datasets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let a test declare datasets of its own, forgotten when it ends."""
    monkeypatch.setattr(DATASETS, "_items", dict(DATASETS._items))
    monkeypatch.setattr(DATASETS, "_impls", dict(DATASETS._impls))


SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
REAL_ROOTS = data_roots()  # taken before the isolation fixture empties $SSLSTEAL_DATA


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own empty cache, no data roots and no downloads."""
    monkeypatch.setenv("SSLSTEAL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SSLSTEAL_DATA", "")
    monkeypatch.setenv("SSLSTEAL_OFFLINE", "1")
    return tmp_path


def random_images(n: int, shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8)


def write_parquet(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """Write NCHW RGB images as PNG bytes in the shared/data Parquet layout (image, label, path)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    blobs = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image.transpose(1, 2, 0)).save(buffer, format="PNG")
        blobs.append(buffer.getvalue())
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({"image": pa.array(blobs, pa.binary()), "label": pa.array(labels, pa.int64()), "path": [f"img/{i}.png" for i in range(len(labels))]})
    pq.write_table(table, path)


# --------------------------------------------------------------------------- specs and registry


def test_parse_spec() -> None:
    assert parse_spec("cifar10:test") == ("cifar10", "test")
    assert parse_spec("cifar10") == ("cifar10", "train")
    assert parse_spec("stl10:unlabeled") == ("stl10", "unlabeled")


def test_parse_spec_unknown_dataset_lists_known_names() -> None:
    with pytest.raises(UnknownDatasetError, match="'imagenet'") as info:
        parse_spec("imagenet:train")
    for name in DATASETS:
        assert name in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("spec", ["cifar10:val", "cifar10:", "stl10:train+unlabeled"])
def test_parse_spec_unknown_split(spec: str) -> None:
    split = spec.partition(":")[2]
    with pytest.raises(UnknownDatasetError, match=f"unknown split {re.escape(repr(split))}.*allowed: train, test"):
        parse_spec(spec)


def test_registry_has_every_dataset() -> None:
    expected = {
        "cifar10": (("train", "test"), 10, (3, 32, 32)),
        "cifar100": (("train", "test"), 100, (3, 32, 32)),
        "svhn": (("train", "test"), 10, (3, 32, 32)),
        "stl10": (("train", "test", "unlabeled"), 10, (3, 96, 96)),
        "fashion_mnist": (("train", "test"), 10, (1, 28, 28)),
        "synthetic": (("train", "test"), 10, (3, 32, 32)),
    }
    assert {name: (i.splits, i.num_classes, i.shape) for name, i in DATASETS.items()} == expected
    assert all(info.name == name and info.description for name, info in DATASETS.items())


def test_register_dataset_normalises_nhwc_and_caches(monkeypatch: pytest.MonkeyPatch) -> None:
    scoped_datasets(monkeypatch)
    source = random_images(6, (4, 5, 3))  # NHWC, non-square
    calls = []
    declare(DatasetInfo("toy", {"all": 6}, 3, (3, 4, 5), "toy"))

    @DATASETS.implements("toy")
    def toy(split: str, roots: list[Path], cache: Path) -> tuple[np.ndarray, np.ndarray]:
        calls.append((split, roots, cache))
        return source, np.arange(6) % 3

    first, second = load("toy:all"), load("toy:all")
    assert len(calls) == 1 and calls[0][2] == cache_dir()
    for s in (first, second):
        assert s.name == "toy:all" and s.images.shape == (6, 3, 4, 5) and s.images.is_contiguous()
        assert torch.equal(s.images, torch.from_numpy(source).permute(0, 3, 1, 2))
        assert s.labels.tolist() == [0, 1, 2, 0, 1, 2]
    with pytest.raises(ValueError, match="registered twice"):
        declare(DatasetInfo("toy", {"all": 6}, 3, (3, 4, 5), "again"))
    with pytest.raises(ValueError, match="implemented twice"):
        DATASETS.implements("toy")(toy)


def test_loader_with_wrong_shape_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    scoped_datasets(monkeypatch)
    declare(DatasetInfo("bad", {"train": 2}, 2, (3, 8, 8), "bad"))
    DATASETS.implements("bad")(lambda split, roots, cache: (random_images(2, (3, 9, 9)), np.zeros(2)))
    with pytest.raises(ValueError, match=r"bad:train loader returned uint8 images \(2, 3, 9, 9\)"):
        load("bad")


def test_data_roots_and_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSLSTEAL_DATA", os.pathsep.join([str(tmp_path / "a"), "", str(tmp_path / "b")]))
    assert cache_dir() == tmp_path / "cache"
    assert data_roots(tmp_path / "x") == [tmp_path / "x", tmp_path / "a", tmp_path / "b", tmp_path / "cache" / "data"]
    assert data_roots(str(tmp_path / "a")) == [tmp_path / "a", tmp_path / "b", tmp_path / "cache" / "data"]
    monkeypatch.delenv("SSLSTEAL_CACHE")
    assert cache_dir() == Path.home() / ".cache" / "sslsteal"


# --------------------------------------------------------------------------- synthetic and ImageSet


def test_synthetic_shapes_and_determinism() -> None:
    train, test = load("synthetic"), load("synthetic:test")
    assert (len(train), len(test)) == (2000, 500)
    assert train.images.dtype == torch.uint8 and train.images.shape == (2000, 3, 32, 32)
    assert train.labels.dtype == torch.int64 and train.num_classes == 10
    assert torch.bincount(train.labels).tolist() == [200] * 10
    again = load("synthetic")
    assert torch.equal(train.images, again.images) and torch.equal(train.labels, again.labels)
    assert not torch.equal(train.images[:500], test.images)
    assert not (cache_dir() / "datasets").exists()  # generated data is not cached


def test_synthetic_has_class_structure() -> None:
    """Nearest class mean on raw pixels, fit on train, beats chance (10%) by far on test."""
    train, test = load("synthetic"), load("synthetic:test")
    x, xt = train.images.flatten(1).float(), test.images.flatten(1).float()
    means = torch.stack([x[train.labels == c].mean(0) for c in range(10)])
    accuracy = (torch.cdist(xt, means).argmin(1) == test.labels).float().mean().item()
    assert accuracy > 0.5


def test_subset_is_deterministic_and_validated() -> None:
    full = load("synthetic:test")
    a, b, c = full.subset(100, seed=1), full.subset(100, seed=1), full.subset(100, seed=2)
    assert len(a) == 100 and torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, c.images)
    sized = load("synthetic:test", size=100, seed=1)
    assert torch.equal(sized.images, a.images) and sized.name == "synthetic:test"
    index = [next(j for j in range(len(full)) if torch.equal(full.images[j], img)) for img in a.images[:5]]
    assert full.labels[index].tolist() == a.labels[:5].tolist()
    with pytest.raises(ValueError, match="n=501 exceeds the 500 items"):
        full.subset(501)
    with pytest.raises(ValueError, match="n=0"):
        full.subset(0)


def test_imageset_validates_dtypes() -> None:
    with pytest.raises(ValueError, match="uint8"):
        ImageSet("x", torch.zeros(2, 3, 4, 4), torch.zeros(2, dtype=torch.int64), 2)
    with pytest.raises(ValueError, match="int64"):
        ImageSet("x", torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.zeros(3, dtype=torch.int64), 2)
    s = ImageSet("x", torch.zeros(2, 4, 4, 3, dtype=torch.uint8).permute(0, 3, 1, 2), torch.zeros(2, dtype=torch.int64), 2)
    assert s.images.is_contiguous() and "n=2" in repr(s)


def test_to_shape() -> None:
    rgb = load("synthetic:test").subset(8)
    assert rgb.to_shape(3, 32) is rgb
    grey = rgb.to_shape(1, 32)
    weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    expected = (rgb.images.float() * weights).sum(1, keepdim=True).round().to(torch.uint8)
    assert grey.images.shape == (8, 1, 32, 32) and torch.equal(grey.images, expected)
    back = grey.to_shape(3, 32)
    assert torch.equal(back.images, grey.images.expand(-1, 3, -1, -1))
    small = rgb.to_shape(3, 16)
    assert small.images.shape == (8, 3, 16, 16) and small.images.dtype == torch.uint8
    assert abs(small.images.float().mean() - rgb.images.float().mean()) < 1.0
    flat = ImageSet("flat", torch.full((2, 1, 28, 28), 77, dtype=torch.uint8), torch.zeros(2, dtype=torch.int64), 1)
    assert (flat.to_shape(3, 32).images == 77).all()
    assert torch.equal(small.labels, rgb.labels)
    with pytest.raises(ValueError, match="channels must be 1 or 3, got 2"):
        rgb.to_shape(2, 32)


# --------------------------------------------------------------------------- sources and cache


def test_parquet_source_round_trips_and_is_cached(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = isolated / "data"
    images, labels = random_images(12, (3, 32, 32)), np.arange(12) % 10
    write_parquet(root / "cifar10" / "train.parquet", images, labels)
    monkeypatch.setenv("SSLSTEAL_DATA", str(root))

    first = load("cifar10")
    assert first.name == "cifar10:train" and first.num_classes == 10
    # rows come back in the fixed shuffled order, images still paired with their labels
    order = np.random.default_rng(loaders.ORDER_SEED).permutation(12)
    assert not np.array_equal(order, np.arange(12))
    assert np.array_equal(first.images.numpy(), images[order]) and first.labels.tolist() == labels[order].tolist()
    assert (cache_dir() / "datasets" / "cifar10-train.v2.images.npy").is_file()

    (root / "cifar10" / "train.parquet").unlink()
    monkeypatch.setattr(loaders, "_decode_parquet", lambda *a: pytest.fail("cache was not used"))
    second = load("cifar10")
    assert torch.equal(second.images, first.images) and torch.equal(second.labels, first.labels)
    assert not list((cache_dir() / "datasets").glob("*.tmp"))


def _write_folder(split: Path, images: np.ndarray, labels: np.ndarray, names: list[str]) -> None:
    """An ImageFolder layout: one PNG per image under <split>/<class name>/."""
    from PIL import Image

    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        (split / names[label]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.transpose(1, 2, 0)).save(split / names[label] / f"{i:03d}.png")


def test_image_folder_loads_in_torchvision_order_then_the_fixed_order(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = isolated / "data"
    images, labels = random_images(30, (3, 32, 32)), np.arange(30) % 3
    _write_folder(root / "cifar10" / "test", images, labels, ["7", "2", "5"])  # numbered folders are the labels
    monkeypatch.setenv("SSLSTEAL_DATA", str(root))
    assert loaders.encoded_source("cifar10:test") == ("images", root / "cifar10" / "test")
    loaded = load("cifar10:test")
    listing = sorted(range(30), key=lambda i: (["7", "2", "5"][labels[i]], i))  # torchvision: class folders sorted, then files
    served = np.array(listing)[loaders.fixed_order(30)]
    assert np.array_equal(loaded.images.numpy(), images[served])
    assert loaded.labels.tolist() == [[7, 2, 5][labels[i]] for i in served]


def test_named_class_folders_are_numbered_in_sorted_order_and_bad_folders_are_named(isolated: Path) -> None:
    split = isolated / "folder"
    _write_folder(split, random_images(4, (3, 32, 32)), np.array([0, 1, 1, 0]), ["cat", "airplane"])
    files, labels = loaders.image_folder(split, 10)
    assert [Path(f).parent.name for f in files] == ["airplane", "airplane", "cat", "cat"] and labels.tolist() == [0, 0, 1, 1]
    with pytest.raises(ValueError, match="do not fit the dataset's 1 classes"):
        loaders.image_folder(split, 1)
    (isolated / "empty").mkdir()
    with pytest.raises(ValueError, match="not an image folder with one subfolder per class"):
        loaders.image_folder(isolated / "empty", 10)


def test_parquet_comes_before_an_image_folder_in_the_same_root(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = isolated / "data"
    write_parquet(root / "cifar10" / "test.parquet", random_images(5, (3, 32, 32)), np.zeros(5))
    _write_folder(root / "cifar10" / "test", random_images(3, (3, 32, 32)), np.zeros(3, dtype=np.int64), ["0"])
    monkeypatch.setenv("SSLSTEAL_DATA", str(root))
    assert loaders.encoded_source("cifar10:test") == ("parquet", root / "cifar10" / "test.parquet")
    assert len(load("cifar10:test")) == 5


def test_sorted_parquet_slices_hold_every_class(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Parquet split stored sorted by class (as the offline CIFAR-10 is) still gives class-mixed slices."""
    root = isolated / "data"
    labels = np.repeat(np.arange(10), 100)  # sorted: the last 100 rows are all class 9
    write_parquet(root / "cifar10" / "test.parquet", random_images(1000, (3, 32, 32)), labels)
    monkeypatch.setenv("SSLSTEAL_DATA", str(root))
    monkeypatch.setitem(DATASETS._items, "cifar10", dataclasses.replace(DATASETS["cifar10"], sizes={"train": 50_000, "test": 1000}))
    tail = load("cifar10:test[900:]")
    assert len(tail) == 100 and len(np.unique(tail.labels.numpy())) == 10


def write_fake_cifar10(folder: Path, train: np.ndarray, test: np.ndarray) -> None:
    """Write NCHW arrays as the pickled batches torchvision's CIFAR10 reads (label = index % 10)."""
    folder.mkdir(parents=True)
    batches = {f"data_batch_{i + 1}": index for i, index in enumerate(np.array_split(np.arange(len(train)), 5))}
    for name, index in [*batches.items(), ("test_batch", np.arange(len(test)))]:
        images = train[index] if name != "test_batch" else test
        with open(folder / name, "wb") as f:
            pickle.dump({"data": images.reshape(len(images), -1), "labels": (index % 10).tolist()}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, f)


def test_torchvision_cifar10_folder_is_preferred(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets.cifar

    # The fake batches cannot match torchvision's md5 sums; accept any file that exists.
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda path, md5=None: os.path.isfile(path))
    root = isolated / "data"
    train, test = random_images(10, (3, 32, 32), seed=1), random_images(4, (3, 32, 32), seed=2)
    write_fake_cifar10(root / "cifar-10-batches-py", train, test)
    write_parquet(root / "cifar10" / "test.parquet", random_images(3, (3, 32, 32)), np.zeros(3, dtype=np.int64))

    loaded = load("cifar10:test", root=root)
    assert np.array_equal(loaded.images.numpy(), test) and loaded.labels.tolist() == [0, 1, 2, 3]
    loaded = load("cifar10:train", root=root)
    assert np.array_equal(loaded.images.numpy(), train) and loaded.labels.tolist() == list(range(10))


def test_torchvision_folder_names_are_torchvisions_own() -> None:
    from torchvision.datasets import CIFAR10, CIFAR100, STL10, FashionMNIST

    expected = {"cifar10": CIFAR10.base_folder, "cifar100": CIFAR100.base_folder, "stl10": STL10.base_folder, "fashion_mnist": f"{FashionMNIST.__name__}/raw"}
    assert expected == loaders.TORCHVISION_FOLDERS


def test_corrupt_torchvision_folder_falls_back_to_parquet(isolated: Path) -> None:
    root = isolated / "data"
    (root / "cifar-10-batches-py").mkdir(parents=True)  # empty: torchvision reports it corrupted
    images = random_images(3, (3, 32, 32))
    write_parquet(root / "cifar10" / "test.parquet", images, np.array([4, 5, 6]))
    with pytest.warns(UserWarning, match="skipping .*cifar-10-batches-py"):
        loaded = load("cifar10:test", root=root)
    order = np.random.default_rng(loaders.ORDER_SEED).permutation(3)
    assert np.array_equal(loaded.images.numpy(), images[order]) and loaded.labels.tolist() == np.array([4, 5, 6])[order].tolist()


@pytest.mark.parametrize("spec", ["cifar10:test", "cifar100:train", "svhn:test", "stl10:unlabeled", "fashion_mnist:train"])
def test_unavailable_offline(spec: str, isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loaders, "DEBIAN_FASHION_MNIST", isolated / "no-debian")
    with pytest.raises(DatasetUnavailableError, match="SSLSTEAL_OFFLINE") as info:
        load(spec, root=isolated / "empty")
    message = str(info.value)
    assert "\n" not in message and spec in message
    assert str(isolated / "empty") in message and "set SSLSTEAL_DATA to a folder holding" in message


def test_unavailable_when_download_fails(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets.cifar
    import torchvision.datasets.svhn

    def no_network(*args: object, **kwargs: object) -> None:
        raise URLError("no network in tests")

    monkeypatch.delenv("SSLSTEAL_OFFLINE")
    monkeypatch.setattr(torchvision.datasets.svhn, "download_url", no_network)
    monkeypatch.setattr(torchvision.datasets.cifar, "download_and_extract_archive", no_network)
    for spec, folder in [("svhn:train", "train_32x32.mat"), ("cifar100:test", "cifar-100-python")]:
        with pytest.raises(DatasetUnavailableError, match="no network in tests") as info:
            load(spec, root=isolated / "empty")
        message = str(info.value)
        assert f"download into {cache_dir() / 'data'} failed (URLError" in message
        assert f"holding {folder}, {spec.replace(':', '/')}.parquet or an image folder {spec.replace(':', '/')}/<class>/" in message


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array in the gzipped IDX format of the MNIST family."""
    magic = 0x800 + array.ndim
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(f">{array.ndim + 1}i", magic, *array.shape) + array.tobytes())


def test_fashion_mnist_from_debian_files(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    debian = isolated / "debian"
    debian.mkdir()
    train, test = random_images(7, (28, 28), seed=3), random_images(5, (28, 28), seed=4)
    for prefix, images in [("train", train), ("t10k", test)]:
        write_idx(debian / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(debian / f"{prefix}-labels-idx1-ubyte.gz", np.arange(len(images), dtype=np.uint8))
    monkeypatch.setattr(loaders, "DEBIAN_FASHION_MNIST", debian)

    loaded = load("fashion_mnist:test")
    assert loaded.images.shape == (5, 1, 28, 28) and np.array_equal(loaded.images.numpy()[:, 0], test)
    assert loaded.labels.tolist() == [0, 1, 2, 3, 4]
    assert (cache_dir() / "torchvision" / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").is_file()
    assert np.array_equal(load("fashion_mnist").images.numpy()[:, 0], train)


@pytest.mark.skipif(
    not loaders.DEBIAN_FASHION_MNIST.is_dir(), reason="Debian package dataset-fashion-mnist not installed (apt-get install dataset-fashion-mnist)"
)
def test_real_fashion_mnist_test_split() -> None:
    loaded = load("fashion_mnist:test")
    assert loaded.images.shape == (10000, 1, 28, 28) and torch.bincount(loaded.labels).tolist() == [1000] * 10
    rgb = loaded.subset(64).to_shape(3, 32)
    assert rgb.images.shape == (64, 3, 32, 32)
    assert torch.equal(rgb.images[:, 0], rgb.images[:, 2])


@pytest.mark.parametrize("name", ["svhn", "stl10", "cifar100"])
def test_real_torchvision_datasets_when_present(name: str) -> None:
    """Runs only where the real files sit in a data root of the environment the tests started in."""
    folder = {"svhn": "test_32x32.mat", "stl10": "stl10_binary", "cifar100": "cifar-100-python"}[name]
    root = next((r for r in REAL_ROOTS if (r / folder).exists()), None)
    if root is None:
        pytest.skip(f"{name}: no {folder} in {', '.join(map(str, REAL_ROOTS))} (not available offline)")
    loaded = load(f"{name}:test", root=root)
    assert loaded.images.shape[1:] == DATASETS[name].shape
    assert loaded.labels.min() >= 0 and loaded.labels.max() < DATASETS[name].num_classes


@pytest.mark.slow
def test_real_cifar10_test_from_shared_parquet() -> None:
    if not (SHARED_DATA / "cifar10" / "test.parquet").is_file():
        pytest.skip(f"real CIFAR-10 Parquet not found under {SHARED_DATA}")
    loaded = load("cifar10:test", root=SHARED_DATA)
    assert loaded.images.shape == (10000, 3, 32, 32) and loaded.images.dtype == torch.uint8
    assert torch.bincount(loaded.labels).tolist() == [1000] * 10
    assert 60 < loaded.images.float().mean() < 200


def test_provided_arrays_serve_load_without_the_disk_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a sweep trial does with the object store's read-only arrays: load() serves them, subsets copy them."""
    from sslsteal.data import loaders

    images = np.arange(4 * 3 * 32 * 32, dtype=np.uint8).reshape(4, 3, 32, 32) % 251
    labels = np.array([0, 1, 2, 3], dtype=np.int64)
    images.flags.writeable = False
    monkeypatch.setattr(loaders, "_PROVIDED", {})
    monkeypatch.setenv("SSLSTEAL_CACHE", str(tmp_path / "empty-cache"))
    loaders.provide("synthetic:test", (images, labels))
    whole = loaders.load("synthetic:test")
    assert len(whole) == 4 and torch.equal(whole.images, torch.from_numpy(images.copy()))
    part = loaders.load("synthetic:test", size=2, seed=0)
    assert len(part) == 2 and part.images.is_contiguous()
    assert not (tmp_path / "empty-cache").exists()  # nothing decoded or cached
    assert loaders.load("synthetic:train").images.shape[0] == DATASETS["synthetic"].sizes["train"]  # others still load normally
    arrays = loaders.arrays("synthetic:test")
    assert np.shares_memory(arrays[0], images)  # no copy on the way through
