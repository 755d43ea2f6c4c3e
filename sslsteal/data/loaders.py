"""Dataset loaders (declared in `sslsteal.specs.datasets`): every dataset loads as uint8 NCHW image tensors plus int64 labels.

Sources are decoded once (torchvision files, Parquet files of encoded images, image folders, or generated)
and cached as ``.npy`` files under ``cache_dir()/datasets`` so later loads take well under
a second. torchvision, pyarrow and PIL are imported inside the loaders to keep import fast.
"""

from __future__ import annotations

import functools
import gzip
import os
import re
import shutil
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from sslsteal.core.fileio import atomic_write
from sslsteal.data.augment import LUMA
from sslsteal.data.image_files import decode_images
from sslsteal.specs.datasets import DATASETS, SYNTHETIC_SIZES, DataRef, DatasetInfo, DatasetUnavailableError, parse_ref, parse_spec

__all__ = [
    "DatasetUnavailableError",
    "ImageSet",
    "arrays",
    "cache_dir",
    "data_roots",
    "encoded_source",
    "finish_arrays",
    "fixed_order",
    "image_folder",
    "is_cached",
    "is_provided",
    "load",
    "provide",
    "store",
]

Arrays = tuple[np.ndarray, np.ndarray]
Maker = Callable[[Path, bool], Any]  # (root, download) -> torchvision dataset

# Where Debian's `dataset-fashion-mnist` package puts the original IDX files.
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
# Images converted per step in ImageSet.to_shape, to bound the float32 working memory.
_CHUNK = 4096
# Version of the decoded-array cache; bumped when decoding changes what a position means (v2: Parquet rows shuffled).
CACHE_FORMAT = 2
# Seed of the fixed row order encoded splits (Parquet, image folders) are served in (see fixed_order).
ORDER_SEED = 0


@dataclass(frozen=True, eq=False, repr=False)
class ImageSet:
    """Images as one uint8 (N, C, H, W) tensor with int64 labels (-1 where unlabeled).

    `index` holds each image's position in its whole split (`name`), so any two sets drawn from one split
    can be checked for overlap, whatever slicing and subsetting made them.
    """

    name: str
    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    index: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            got = f"{self.images.dtype} {tuple(self.images.shape)}"
            raise ValueError(f"{self.name}: images must be uint8 (N, C, H, W), got {got}")
        if self.labels.dtype != torch.int64 or self.labels.shape != (len(self.images),):
            got = f"{self.labels.dtype} {tuple(self.labels.shape)}"
            raise ValueError(f"{self.name}: labels must be int64 of shape ({len(self.images)},), got {got}")
        if self.index is None:
            object.__setattr__(self, "index", torch.arange(len(self.images)))
        elif self.index.shape != (len(self.images),):
            raise ValueError(f"{self.name}: index must have shape ({len(self.images)},), got {tuple(self.index.shape)}")
        object.__setattr__(self, "images", self.images.contiguous())

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        shape = tuple(self.images.shape[1:])
        return f"ImageSet(name={self.name!r}, n={len(self)}, shape={shape}, num_classes={self.num_classes})"

    @property
    def positions(self) -> torch.Tensor:
        """Each image's position in its whole split (never None after construction)."""
        assert self.index is not None
        return self.index

    def take(self, rows: torch.Tensor | slice) -> ImageSet:
        """The items at `rows` (positions in this set, or a boolean mask), index carried along."""
        return ImageSet(self.name, self.images[rows], self.labels[rows], self.num_classes, self.positions[rows])

    def subset(self, n: int, seed: int = 0) -> ImageSet:
        """Return n items drawn without replacement, in random order, reproducibly from seed."""
        if n <= 0:
            raise ValueError(f"subset size must be positive, got n={n}")
        if n > len(self):
            raise ValueError(f"subset size n={n} exceeds the {len(self)} items of {self.name}")
        return self.take(torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n])

    def at_most(self, n: int, seed: int = 0) -> ImageSet:
        """All items when there are at most `n`, else a reproducible subset of `n` (ImageSet.subset with seed)."""
        return self.subset(n, seed) if n < len(self) else self

    def in_pool(self, pool: DataRef | None) -> torch.Tensor:
        """Boolean mask of the items that belong to `pool` (a slice of a split); all False for another split."""
        if pool is None or pool.base != self.name:
            return torch.zeros(len(self), dtype=torch.bool)
        return (self.positions >= pool.start) & (self.positions < pool.stop)

    def without(self, pool: DataRef | None) -> ImageSet:
        """This set minus every image of `pool`; unchanged when the pool is another split or misses it."""
        inside = self.in_pool(pool)
        return self if not bool(inside.any()) else self.take(~inside)

    def to_shape(self, channels: int, size: int) -> ImageSet:
        """Return the images as (channels, size, size): grey<->RGB, antialiased bilinear resize."""
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        if size <= 0:
            raise ValueError(f"size must be positive, got {size}")
        c, h, w = self.images.shape[1:]
        if (c, h, w) == (channels, size, size):
            return self
        if c not in (1, 3):
            raise ValueError(f"{self.name}: cannot convert {c}-channel images to {channels} channels")
        out = torch.empty((len(self), channels, size, size), dtype=torch.uint8)
        for start in range(0, len(self), _CHUNK):
            x = self.images[start : start + _CHUNK].float()
            if c == 3 and channels == 1:  # to grey before resizing: a third of the work
                x = (x * LUMA.view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
            if (h, w) != (size, size):
                x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
            if c == 1 and channels == 3:  # to RGB after resizing, for the same reason
                x = x.expand(-1, 3, -1, -1)
            out[start : start + _CHUNK] = x.round().clamp(0, 255).to(torch.uint8)
        return ImageSet(self.name, out, self.labels, self.num_classes, self.index)


def cache_dir() -> Path:
    """Root of everything sslsteal caches: $SSLSTEAL_CACHE, else ~/.cache/sslsteal."""
    return Path(os.environ.get("SSLSTEAL_CACHE") or "~/.cache/sslsteal").expanduser()


def data_roots(root: str | Path | None = None) -> list[Path]:
    """Folders searched for source files: root, then each $SSLSTEAL_DATA entry, then cache_dir()/data.

    The last one is also where downloads go.
    """
    candidates = [] if root is None else [Path(root)]
    candidates += [Path(p) for p in os.environ.get("SSLSTEAL_DATA", "").split(os.pathsep) if p]
    candidates.append(cache_dir() / "data")
    roots: list[Path] = []
    for path in (p.expanduser() for p in candidates):
        if path not in roots:
            roots.append(path)
    return roots


def load(spec: str, *, root: str | Path | None = None, size: int | None = None, seed: int = 0) -> ImageSet:
    """Load a dataset split or slice of one, decoding it on first use and from the on-disk cache afterwards.

    size: return a reproducible random subset of that many items (ImageSet.subset with seed).
    The cache is keyed by name and split only, so root matters only when nothing is cached.
    """
    ref = parse_ref(spec)
    name, split = ref.name, ref.split
    info = DATASETS[name]
    arrays = _PROVIDED.get(f"{name}:{split}") or (_read_cache(info, split) if info.cache else None)
    if arrays is None:
        arrays = _normalise(info, split, *DATASETS.implementation(name)(split, data_roots(root), cache_dir()))
        if info.cache:
            _write_cache(info.name, split, arrays)
    images, labels = arrays
    with warnings.catch_warnings():  # provided arrays live read-only in Ray's object store; nothing writes to loaded images
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable", category=UserWarning)
        dataset = ImageSet(f"{name}:{split}", torch.from_numpy(images), torch.from_numpy(labels), info.num_classes)
    if not ref.whole:
        dataset = dataset.take(slice(ref.start, ref.stop))
    return dataset if size is None else dataset.subset(size, seed)


_PROVIDED: dict[str, Arrays] = {}


def arrays(spec: str, *, root: str | Path | None = None) -> Arrays:
    """A whole split as (uint8 images, int64 labels) numpy arrays, e.g. to put in Ray's object store once."""
    dataset = load(parse_ref(spec).base, root=root)
    return dataset.images.numpy(), dataset.labels.numpy()


def provide(spec: str, split_arrays: Arrays) -> None:
    """Serve `load(spec)` from these arrays in this process (a sweep's trials get them from the object store)."""
    name, split = parse_spec(spec)
    _PROVIDED[f"{name}:{split}"] = split_arrays


def is_provided(spec: str) -> bool:
    """Whether `provide` already serves this split in this process."""
    name, split = parse_spec(spec)
    return f"{name}:{split}" in _PROVIDED


def store(spec: str, split_arrays: Arrays) -> None:
    """Write a whole split's arrays (as `arrays(spec)` returns them) to the on-disk cache, e.g. after a cluster decoded it."""
    name, split = parse_spec(spec)
    if DATASETS[name].cache:
        _write_cache(name, split, split_arrays)


def is_cached(spec: str) -> bool:
    """Whether this split's decoded arrays are in the on-disk cache (a load then reads two files and decodes nothing)."""
    name, split = parse_spec(spec)
    return DATASETS[name].cache and all(path.is_file() for path in _cache_paths(name, split))


# --------------------------------------------------------------------------- cache


def _cache_paths(name: str, split: str) -> tuple[Path, Path]:
    folder = cache_dir() / "datasets"
    stem = f"{name}-{split}.v{CACHE_FORMAT}"
    return folder / f"{stem}.images.npy", folder / f"{stem}.labels.npy"


def _read_cache(info: DatasetInfo, split: str) -> Arrays | None:
    """Return the cached arrays, or None when absent or not of the registered shape."""
    images_path, labels_path = _cache_paths(info.name, split)
    if not (images_path.is_file() and labels_path.is_file()):  # images are written last
        return None
    images, labels = np.load(images_path), np.load(labels_path)
    if images.dtype != np.uint8 or images.shape[1:] != info.shape or labels.shape != (len(images),):
        warnings.warn(f"ignoring stale cache {images_path}: shape {images.shape}, expected (N, *{info.shape})", stacklevel=2)
        return None
    return images, labels


def _write_cache(name: str, split: str, arrays: Arrays) -> None:
    """Write labels then images, each atomically, so readers never see a partial file."""
    images_path, labels_path = _cache_paths(name, split)
    try:
        for path, array in ((labels_path, arrays[1]), (images_path, arrays[0])):
            atomic_write(path, functools.partial(np.save, arr=array))
    except OSError as exc:
        warnings.warn(f"could not cache {name}:{split} under {images_path.parent}: {exc}", stacklevel=2)


def _normalise(info: DatasetInfo, split: str, images: Any, labels: Any) -> Arrays:
    """Return contiguous uint8 NCHW images and int64 labels from a loader's NHWC/NCHW/NHW output."""
    images = np.asarray(images)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    c, h, w = info.shape
    if images.ndim == 3 and c == 1:
        images = images[:, None]
    elif images.ndim == 4 and images.shape[1:] == (h, w, c) and images.shape[1:] != info.shape:
        images = images.transpose(0, 3, 1, 2)
    if images.dtype != np.uint8 or images.shape[1:] != info.shape or len(images) != len(labels):
        raise ValueError(
            f"{info.name}:{split} loader returned {images.dtype} images {images.shape} and {len(labels)} labels; expected uint8 (N, {c}, {h}, {w}) and N labels"
        )
    return np.ascontiguousarray(images), labels


# --------------------------------------------------------------------------- sources


def _offline() -> bool:
    """True when $SSLSTEAL_OFFLINE forbids download attempts (useful on machines without network)."""
    return os.environ.get("SSLSTEAL_OFFLINE", "").lower() in ("1", "true", "yes")


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _torchvision_arrays(dataset: Any) -> Arrays:
    """Images and labels of a torchvision dataset object (tensors or arrays, list or array labels)."""
    images, labels = dataset.data, getattr(dataset, "targets", None)
    if labels is None:
        labels = dataset.labels
    if isinstance(images, torch.Tensor):
        images = images.numpy()
    if isinstance(labels, torch.Tensor):
        labels = labels.numpy()
    return np.asarray(images), np.asarray(labels, dtype=np.int64)


def _decode_parquet(path: Path, shape: tuple[int, int, int]) -> Arrays:
    """Decode a Parquet file with columns image (encoded bytes) and label into NHWC uint8, in file order."""
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=["image", "label"])
    return decode_images(table.column("image").to_pylist(), shape, str(path)), table.column("label").to_numpy().astype(np.int64)


def image_folder(path: Path, num_classes: int) -> tuple[list[str], np.ndarray]:
    """The image files of an ImageFolder layout (`<split>/<class>/<file>`) in torchvision's order, with their labels.

    Class folders named by number are those labels; named ones are numbered in sorted order (torchvision's rule,
    which is the label order of CIFAR-10, CIFAR-100 and STL-10).
    """
    from torchvision.datasets import ImageFolder

    try:
        folder = ImageFolder(str(path), loader=lambda file: file)  # lists and labels the files; decoding is ours
    except (FileNotFoundError, OSError) as exc:
        raise ValueError(f"{path}: not an image folder with one subfolder per class ({_one_line(str(exc))})") from exc
    numbered = all(c.isdigit() for c in folder.classes)
    labels = np.array([int(c) for c in folder.classes] if numbered else range(len(folder.classes)), dtype=np.int64)
    if len(folder.classes) > num_classes or labels.max() >= num_classes:
        raise ValueError(f"{path}: class folders {folder.classes[:12]} do not fit the dataset's {num_classes} classes")
    return [file for file, _ in folder.samples], labels[np.asarray(folder.targets, dtype=np.int64)]


def _decode_folder(path: Path, info: DatasetInfo) -> Arrays:
    """Decode an image folder into NHWC uint8 images and labels, in torchvision's file order."""
    files, labels = image_folder(path, info.num_classes)
    return decode_images([Path(file).read_bytes() for file in files], info.shape, str(path)), labels


def fixed_order(rows: int) -> np.ndarray:
    """The fixed row order an encoded split (Parquet rows, image-folder files) is served in: file order permuted with
    `ORDER_SEED`.

    Such copies are often sorted by class (the offline CIFAR-10 Parquet is; an image folder always is), which
    would make a slice such as `cifar10:test[9000:]` one class; the fixed permutation gives slices a class mix.
    """
    return np.random.default_rng(ORDER_SEED).permutation(rows)


def encoded_source(spec: str, root: str | Path | None = None) -> tuple[str, Path] | None:
    """The encoded source `load(spec)` decodes when nothing is cached, ("parquet" | "images", path), or None when
    torchvision files (or nothing) come first."""
    name, split = parse_spec(spec)
    folder = _torchvision_folder(name, split)
    if folder is None:
        return None
    found = next(_sources(name, split, data_roots(root), folder), None)
    return None if found is None or found[0] == "torchvision" else found


def finish_arrays(spec: str, images: np.ndarray, labels: np.ndarray) -> Arrays:
    """Rows decoded from `encoded_source(spec)` in file order, as `arrays(spec)` serves them (fixed order, NCHW)."""
    name, split = parse_spec(spec)
    order = fixed_order(len(images))
    return _normalise(DATASETS[name], split, images[order], labels.astype(np.int64)[order])


def _sources(name: str, split: str, roots: list[Path], folder: str) -> Iterator[tuple[str, Path]]:
    """Candidate sources in the order tried: per root, torchvision files under <root>/<folder>, else
    <root>/<name>/<split>.parquet, else the image folder <root>/<name>/<split>/."""
    for root in roots:
        if (root / folder).exists():
            yield "torchvision", root
        if (root / name / f"{split}.parquet").is_file():
            yield "parquet", root / name / f"{split}.parquet"
        elif (root / name / split).is_dir():
            yield "images", root / name / split


def _search_roots(name: str, split: str, roots: list[Path], folder: str, make: Maker) -> Arrays | None:
    """The first source that loads (a corrupt torchvision copy is skipped with a warning)."""
    info = DATASETS[name]
    for kind, path in _sources(name, split, roots, folder):
        if kind == "torchvision":
            try:
                return _torchvision_arrays(make(path, False))
            except RuntimeError as exc:  # torchvision's "not found or corrupted"
                warnings.warn(f"{name}:{split}: skipping {path / folder}: {_one_line(str(exc))}", stacklevel=2)
                continue
        images, labels = _decode_parquet(path, info.shape) if kind == "parquet" else _decode_folder(path, info)
        return finish_arrays(f"{name}:{split}", images, labels)
    return None


def _download_or_raise(name: str, split: str, roots: list[Path], folder: str, make: Maker) -> Arrays:
    """Try torchvision's download into the last root; on failure explain where we looked."""
    target = roots[-1]
    looked = f"no {folder}, {name}/{split}.parquet or {name}/{split}/ in {', '.join(map(str, roots))}"
    hint = f"set SSLSTEAL_DATA to a folder holding {folder}, {name}/{split}.parquet or an image folder {name}/{split}/<class>/"
    if _offline():
        raise DatasetUnavailableError(f"{name}:{split} is unavailable: {looked}; SSLSTEAL_OFFLINE forbids downloads; {hint}")
    try:
        return _torchvision_arrays(make(target, True))
    except Exception as exc:  # network, HTTP and checksum failures all mean "not available"
        failed = f"download into {target} failed ({_one_line(f'{type(exc).__name__}: {exc}')})"
        raise DatasetUnavailableError(f"{name}:{split} is unavailable: {looked}; {failed}; {hint}") from exc


TORCHVISION_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python", "stl10": "stl10_binary", "fashion_mnist": "FashionMNIST/raw"}
"""The folder torchvision's class for each dataset reads under a root (its classes' `base_folder`; spelled out here
because importing torchvision.datasets takes seconds, and a sweep's driver only needs the names)."""


def _torchvision_folder(name: str, split: str) -> str | None:
    """The file or folder torchvision's class for `name` reads under a root (None: not a torchvision dataset)."""
    folders = TORCHVISION_FOLDERS | {"svhn": f"{split}_32x32.mat"}
    return folders.get(name)


def _load_torchvision(name: str, split: str, roots: list[Path], make: Maker) -> Arrays:
    folder = _torchvision_folder(name, split)
    if folder is None:
        raise ValueError(f"{name} is not a torchvision dataset")
    found = _search_roots(name, split, roots, folder, make)
    return found if found is not None else _download_or_raise(name, split, roots, folder, make)


@DATASETS.implements("cifar10")
def _cifar10(split: str, roots: list[Path], cache: Path) -> Arrays:
    from torchvision.datasets import CIFAR10

    return _load_torchvision("cifar10", split, roots, lambda root, download: CIFAR10(root, train=split == "train", download=download))


@DATASETS.implements("cifar100")
def _cifar100(split: str, roots: list[Path], cache: Path) -> Arrays:
    from torchvision.datasets import CIFAR100

    return _load_torchvision("cifar100", split, roots, lambda root, download: CIFAR100(root, train=split == "train", download=download))


@DATASETS.implements("svhn")
def _svhn(split: str, roots: list[Path], cache: Path) -> Arrays:
    from torchvision.datasets import SVHN

    return _load_torchvision("svhn", split, roots, lambda root, download: SVHN(root, split=split, download=download))


@DATASETS.implements("stl10")
def _stl10(split: str, roots: list[Path], cache: Path) -> Arrays:
    from torchvision.datasets import STL10

    return _load_torchvision("stl10", split, roots, lambda root, download: STL10(root, split=split, download=download))


@DATASETS.implements("fashion_mnist")
def _fashion_mnist(split: str, roots: list[Path], cache: Path) -> Arrays:
    from torchvision.datasets import FashionMNIST

    def make(root: Path, download: bool) -> Any:
        return FashionMNIST(root, train=split == "train", download=download)

    folder = _torchvision_folder("fashion_mnist", split) or ""
    found = _search_roots("fashion_mnist", split, roots, folder, make)
    if found is not None:
        return found
    if (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file():
        torchvision_root = cache / "torchvision"
        _unpack_gz(DEBIAN_FASHION_MNIST, torchvision_root / folder)
        return _torchvision_arrays(make(torchvision_root, False))
    return _download_or_raise("fashion_mnist", split, roots, folder, make)


def _unpack_gz(source: Path, target: Path) -> None:
    """Gunzip every source/*.gz into target, skipping files already there."""
    for gz in sorted(source.glob("*.gz")):
        out = target / gz.stem
        if not out.is_file():
            with gzip.open(gz, "rb") as src:
                atomic_write(out, functools.partial(shutil.copyfileobj, src))


@DATASETS.implements("synthetic")
def _synthetic(split: str, roots: list[Path], cache: Path) -> Arrays:
    """Class c: colour prototype c and stripes at angle c*18 degrees; random phase, tint and noise.

    Prototypes are shared by both splits; each split has its own seed, so train and test differ.
    """
    prototypes = np.random.default_rng(0).uniform(60, 195, size=(10, 3))
    rng = np.random.default_rng({"train": 1, "test": 2}[split])
    n = SYNTHETIC_SIZES[split]
    labels = rng.permutation(np.arange(n) % 10)
    angles = labels * (np.pi / 10)
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float32)
    along = np.cos(angles)[:, None, None] * xx + np.sin(angles)[:, None, None] * yy
    stripes = np.sin(2 * np.pi / 6 * along + rng.uniform(0, 2 * np.pi, size=(n, 1, 1)))
    tint = prototypes[labels] + rng.normal(0, 25, size=(n, 3))
    images = rng.standard_normal(size=(n, 3, 32, 32), dtype=np.float32) * 20
    images += (tint[:, :, None, None] + 45 * stripes[:, None]).astype(np.float32)
    return np.clip(np.rint(images), 0, 255).astype(np.uint8), labels.astype(np.int64)
