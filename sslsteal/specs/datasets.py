"""The datasets a spec may name: their splits, sizes, classes and image shape, and the `name:split[start:stop]`
references (`DataRef`) that say which images a role uses. Torch-free: the loaders live in `sslsteal.data.loaders`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator

from sslsteal.core.registry import Registry, unknown_name

DEFAULT_SPLIT = "train"
SYNTHETIC_SIZES = {"train": 2000, "test": 500}


class DatasetUnavailableError(RuntimeError):
    """A registered dataset whose files are neither on disk nor downloadable."""


class UnknownDatasetError(ValueError):
    """A dataset spec naming a dataset or split that is not registered."""


@dataclass(frozen=True)
class DatasetInfo:
    """A declared dataset: its splits and their sizes, classes, image shape (C, H, W), and whether its decoded
    arrays are cached (False for generated data, which is quicker to rebuild than to read)."""

    name: str
    sizes: dict[str, int]
    num_classes: int
    shape: tuple[int, int, int]
    description: str
    cache: bool = True

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self.sizes)


DATASETS: Registry[DatasetInfo] = Registry("dataset")


def declare(info: DatasetInfo) -> DatasetInfo:
    """Declare a dataset under its own name (its loader attaches with `@DATASETS.implements(name)`)."""
    if ":" in info.name:
        raise ValueError(f"dataset name {info.name!r} must not contain ':'")
    DATASETS.add(info.name, info)
    return info


for _info in (
    DatasetInfo(
        "cifar10", {"train": 50_000, "test": 10_000}, 10, (3, 32, 32), "CIFAR-10: 50k/10k 32x32 colour photos, 10 classes (torchvision files or Parquet)"
    ),
    DatasetInfo("cifar100", {"train": 50_000, "test": 10_000}, 100, (3, 32, 32), "CIFAR-100: 50k/10k 32x32 colour photos, 100 fine classes"),
    DatasetInfo("svhn", {"train": 73_257, "test": 26_032}, 10, (3, 32, 32), "SVHN: 73k/26k 32x32 house-number digits, 10 classes (digit 0 is label 0)"),
    DatasetInfo(
        "stl10",
        {"train": 5_000, "test": 8_000, "unlabeled": 100_000},
        10,
        (3, 96, 96),
        "STL-10: 5k/8k labelled and 100k unlabeled (label -1) 96x96 colour photos, 10 classes",
    ),
    DatasetInfo(
        "fashion_mnist",
        {"train": 60_000, "test": 10_000},
        10,
        (1, 28, 28),
        "Fashion-MNIST: 60k/10k 28x28 grey clothing images, 10 classes (torchvision files or Debian package)",
    ),
    DatasetInfo(
        "synthetic",
        SYNTHETIC_SIZES,
        10,
        (3, 32, 32),
        "Generated in milliseconds for tests: per-class colour and stripe orientation, plus noise (2000/500)",
        cache=False,
    ),
):
    declare(_info)


@dataclass(frozen=True)
class DataRef:
    """A contiguous slice `[start, stop)` of one dataset split, written `name:split[start:stop]` (the whole split without brackets)."""

    name: str
    split: str
    start: int
    stop: int

    @property
    def base(self) -> str:
        """The whole split this slice is part of, `name:split`."""
        return f"{self.name}:{self.split}"

    @property
    def size(self) -> int:
        return self.stop - self.start

    @property
    def whole(self) -> bool:
        return self.start == 0 and self.stop == DATASETS[self.name].sizes[self.split]

    def overlap(self, other: DataRef) -> int:
        """Images the two slices share (0 for different splits)."""
        return max(0, min(self.stop, other.stop) - max(self.start, other.start)) if self.base == other.base else 0

    def __str__(self) -> str:
        return self.base if self.whole else f"{self.base}[{self.start}:{self.stop}]"


_REF = re.compile(r"^(?P<name>[^:\[\]]+)(?::(?P<split>[^:\[\]]*))?(?:\[(?P<start>\d*):(?P<stop>\d*)\])?$")


def parse_ref(spec: str) -> DataRef:
    """Parse "name[:split][[start:stop]]" (split defaults to "train"; the slice to the whole split) and check it."""
    match = _REF.match(spec.strip())
    if match is None:
        raise UnknownDatasetError(f"malformed dataset spec {spec!r}; expected name:split or name:split[start:stop], e.g. cifar10:test[:9000]")
    name, split = match["name"], DEFAULT_SPLIT if match["split"] is None else match["split"]
    if name not in DATASETS:
        raise UnknownDatasetError(f"{unknown_name('dataset', name, DATASETS)} (in {spec!r})")
    if split not in DATASETS[name].splits:
        allowed = ", ".join(DATASETS[name].splits)
        raise UnknownDatasetError(f"unknown split {split!r} of dataset {name!r}; allowed: {allowed}")
    size = DATASETS[name].sizes[split]
    start = int(match["start"]) if match["start"] else 0
    stop = int(match["stop"]) if match["stop"] else size
    if not 0 <= start < stop <= size:
        raise UnknownDatasetError(f"slice [{start}:{stop}] of {name}:{split} ({size} images) is empty or out of range")
    return DataRef(name, split, start, stop)


def _checked(spec: str) -> str:
    parse_ref(spec)
    return spec


DataRefText = Annotated[str, AfterValidator(_checked)]
"""A spec field holding a `name:split[start:stop]` reference, checked against the declared datasets."""


def parse_spec(spec: str) -> tuple[str, str]:
    """(name, split) of a dataset spec, slice allowed and ignored; checks both are registered."""
    ref = parse_ref(spec)
    return ref.name, ref.split
