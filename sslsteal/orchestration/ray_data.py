"""A sweep's datasets through Ray Data: each split read and decoded once on the cluster, then shared with every trial.

Parquet splits (`<root>/<name>/<split>.parquet`: encoded images and labels) are read with `ray.data.read_parquet`,
all of one dataset's files in one execution, and decoded by `map_batches` tasks across the cluster's CPUs; an image
folder (`<root>/<name>/<split>/<class>/<file>`) is read with `ray.data.read_images`, its files listed and labelled
on the driver. Read tasks are pinned to the driver's node (the node that has the files, so a copy only the head node
holds reaches trials on every node). The driver gathers the decoded rows into the arrays `sslsteal.data.loaders.load`
serves (the same fixed row order as an in-process load), writes its decoded-array cache and puts them in the object
store once, where every trial on every node reads them without copying. Splits from other sources (torchvision
files, the decoded-array cache, generated data) are loaded by `sslsteal.data.loaders` on the driver and put the same way.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DECODE_BATCH = 2048
"""Images per decode task's batch: large enough that task overhead is small, small enough to spread 10,000 images."""


@dataclass(frozen=True)
class SharedSplit:
    """One split in the object store: `arrays` is the ref of (images, labels) as `sslsteal.data.loaders.arrays` returns them;
    `decoded_by` says who made them ("ray-data" on a cold read, else "driver": cache, torchvision, generated)."""

    spec: str
    arrays: Any
    decoded_by: str


def _decode(batch: dict[str, Any], shape: tuple[int, int, int], parts: dict[str, int]) -> dict[str, Any]:
    """map_batches body: a batch of encoded images and labels, decoded to uint8 NHWC arrays, with the index in
    `parts` of the file each row came from."""
    import numpy as np

    from sslsteal.data.image_files import decode_images  # no torch: decode workers start quickly

    paths = list(dict.fromkeys(batch["path"]))
    part = np.array([parts[str(path)] for path in batch["path"]], dtype=np.int64)
    return {"image": decode_images(list(batch["image"]), shape, ", ".join(paths)), "label": np.asarray(batch["label"], dtype=np.int64), "part": part}


def _label_files(batch: dict[str, Any], rows: dict[str, int], labels: Any, shape: tuple[int, int, int]) -> dict[str, Any]:
    """map_batches body for image folders: decoded files with their row in the driver's listing and its label."""
    import numpy as np

    c, h, w = shape
    for path, image in zip(batch["path"], batch["image"], strict=True):
        if image.shape[:2] != (h, w):
            raise ValueError(f"{path}: decodes to {image.shape[1]}x{image.shape[0]} pixels, expected {w}x{h}")
    row = np.array([rows[path] for path in batch["path"]], dtype=np.int64)
    images = np.stack([image.reshape(h, w, c) for image in batch["image"]]).astype(np.uint8, copy=False)
    return {"image": images, "label": labels[row], "row": row}


def _pinned() -> dict[str, Any]:
    """Ray Data read options shared by every split: rows kept in file order and read tasks on the driver's node."""
    import ray

    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # block i holds the rows after block i-1: positions are rows
    return {"label_selector": {"ray.io/node-id": ray.get_runtime_context().get_node_id()}}  # Ray's own label for each node


def _blocks() -> int:
    """Blocks to decode in: one per CPU of the cluster or more, so decoding spreads."""
    import ray

    return max(2, int(ray.cluster_resources().get("CPU", 1)))


def read_parquet_files(paths: list[Path], shape: tuple[int, int, int]) -> Any:
    """Parquet files of one dataset as one Ray Data dataset of decoded rows: image, label, and `part`, the index in
    `paths` of each row's file (rows of one file in file order)."""
    import ray

    parts = {str(path): i for i, path in enumerate(paths)}
    blocks = _blocks()
    context = ray.data.DataContext.get_current()
    # Ray's row-group Parquet reader (the one before its V2 datasource): it has no file-listing task to start, and
    # was 20-40% faster on CIFAR-10 at 2 CPUs in one execution of both splits (6.2-8.8 s against 9.6-10.6 s).
    files_first, context.use_datasource_v2 = context.use_datasource_v2, False
    try:
        raw = ray.data.read_parquet(list(parts), include_paths=True, override_num_blocks=blocks, **_pinned())
    finally:
        context.use_datasource_v2 = files_first
    raw = raw.select_columns(["image", "label", "path"]).repartition(blocks)
    return raw.map_batches(functools.partial(_decode, shape=shape, parts=parts), batch_size=DECODE_BATCH, batch_format="numpy")


def read_image_folder(path: Path, num_classes: int, shape: tuple[int, int, int]) -> Any:
    """An image folder as a Ray Data dataset of decoded rows: image, label, and `row`, each file's position in the
    driver's listing (`sslsteal.data.loaders.image_folder`)."""
    import ray

    from sslsteal.data.loaders import image_folder

    files, labels = image_folder(path, num_classes)
    rows = {file: row for row, file in enumerate(files)}
    mode = "RGB" if shape[0] == 3 else "L"
    raw = ray.data.read_images(files, include_paths=True, mode=mode, override_num_blocks=_blocks(), **_pinned())
    label = functools.partial(_label_files, rows=rows, labels=labels, shape=shape)
    return raw.map_batches(label, batch_size=DECODE_BATCH, batch_format="numpy")


def _gather(dataset: Any) -> dict[str, Any]:
    """Every row of a decoded dataset on the driver, its columns concatenated in block order."""
    import numpy as np

    batches = list(dataset.iter_batches(batch_size=None, batch_format="numpy"))
    return {column: np.concatenate([b[column] for b in batches]) for column in batches[0]}


def decode_splits(specs: list[str], root: str | None = None) -> dict[str, tuple[Any, Any]]:
    """The arrays `sslsteal.data.loaders.arrays` would give for each split whose source is Parquet or an image folder,
    decoded by Ray Data: one execution per dataset's Parquet files, one per image folder. Other splits are left out."""
    import numpy as np

    from sslsteal.data.loaders import encoded_source, finish_arrays
    from sslsteal.specs.datasets import DATASETS, parse_spec

    parquet: dict[str, list[tuple[str, Path]]] = {}
    decoded: dict[str, tuple[Any, Any]] = {}
    for spec in specs:
        source = encoded_source(spec, root)
        name = parse_spec(spec)[0]
        if source is None:
            continue
        if source[0] == "parquet":
            parquet.setdefault(name, []).append((spec, source[1]))
            continue
        columns = _gather(read_image_folder(source[1], DATASETS[name].num_classes, DATASETS[name].shape))
        listing = np.argsort(columns["row"])  # files back in the driver's listing order
        decoded[spec] = finish_arrays(spec, columns["image"][listing], columns["label"][listing])
    for name, found in parquet.items():
        columns = _gather(read_parquet_files([path for _, path in found], DATASETS[name].shape))
        for i, (spec, _) in enumerate(found):
            mine = columns["part"] == i
            decoded[spec] = finish_arrays(spec, columns["image"][mine], columns["label"][mine])
    return decoded


def share_datasets(splits: list[str], root: str | None = None) -> dict[str, SharedSplit]:
    """Every split in the object store, each read and decoded once: Parquet and image folders through Ray Data (then
    written to the driver's decoded-array cache), cached or other splits by `sslsteal.data.loaders` on the driver."""
    import ray

    from sslsteal.data import loaders

    decoded = decode_splits([spec for spec in splits if not loaders.is_cached(spec)], root)
    shared = {}
    for spec in splits:
        if spec in decoded:
            loaders.store(spec, decoded[spec])  # the next sweep on this machine reads the cache instead
            shared[spec] = SharedSplit(spec, ray.put(decoded[spec]), "ray-data")
        else:
            shared[spec] = SharedSplit(spec, ray.put(loaders.arrays(spec, root=root)), "driver")
    return shared


def install_datasets(shared: dict[str, SharedSplit]) -> None:
    """In a trial: serve `sslsteal.data.loaders.load` for the shared splits (read from the object store without a copy)."""
    import ray

    from sslsteal.data import loaders

    for spec, split in shared.items():
        if not loaders.is_provided(spec):
            loaders.provide(spec, ray.get(split.arrays))
