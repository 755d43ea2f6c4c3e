"""A sweep's datasets through Ray Data: each split read and decoded once on the cluster, then shared with every trial.

A split stored as Parquet (`<root>/<name>/<split>.parquet`: encoded images and labels) is read with
`ray.data.read_parquet` and decoded by `map_batches` tasks across the cluster's CPUs; an image folder
(`<root>/<name>/<split>/<class>/<file>`) is read with `ray.data.read_images`, its files listed and labelled on the
driver. Read tasks are pinned to the driver's node (the node that has the files, so a copy only the head node holds
reaches trials on every node). The decoded blocks stay in the object store; a trial assembles them into the arrays
`sslsteal.data.load` serves, in the same fixed row order as an in-process load. Splits from other sources
(torchvision files, the decoded-array cache, generated data) are loaded once by `sslsteal.data` on the driver and
put in the object store whole.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

DECODE_BATCH = 2048
"""Images per decode task's batch: large enough that task overhead is small, small enough to spread 10,000 images."""


@dataclass(frozen=True)
class SharedSplit:
    """One split in the object store: decoded Ray Data blocks in file order (`blocks`), or whole arrays (`arrays`)."""

    spec: str
    blocks: list[Any] | None = None
    arrays: Any = None


def _decode(batch: dict[str, Any], shape: tuple[int, int, int], where: str) -> dict[str, Any]:
    """map_batches body: a batch of encoded images and labels, decoded to uint8 NHWC arrays."""
    import numpy as np

    from sslsteal.image_files import decode_images  # no torch: decode workers start quickly

    return {"image": decode_images(list(batch["image"]), shape, where), "label": np.asarray(batch["label"], dtype=np.int64)}


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


def read_split(spec: str, root: str | None = None) -> Any | None:
    """The split as a Ray Data dataset of decoded images (columns image, label; image folders add each file's `row`
    in the listing), Parquet in file order; None unless the split's source is Parquet or an image folder."""
    import ray

    from sslsteal.data import encoded_source, image_folder
    from sslsteal.specs.datasets import DATASETS, parse_spec

    source = encoded_source(spec, root)
    if source is None:
        return None
    kind, path = source
    info = DATASETS[parse_spec(spec)[0]]
    here = {"ray.io/node-id": ray.get_runtime_context().get_node_id()}  # Ray's own label for each node
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # block i holds the rows after block i-1: positions are rows
    blocks = max(2, int(ray.cluster_resources().get("CPU", 1)))  # one split per CPU or more, so decoding spreads
    if kind == "images":
        files, labels = image_folder(path, info.num_classes)
        rows = {file: row for row, file in enumerate(files)}
        mode = "RGB" if info.shape[0] == 3 else "L"
        raw = ray.data.read_images(files, include_paths=True, mode=mode, label_selector=here, override_num_blocks=blocks)
        label = functools.partial(_label_files, rows=rows, labels=labels, shape=info.shape)
        return raw.map_batches(label, batch_size=DECODE_BATCH, batch_format="numpy")
    raw = ray.data.read_parquet(str(path), label_selector=here, override_num_blocks=blocks).select_columns(["image", "label"]).repartition(blocks)
    return raw.map_batches(functools.partial(_decode, shape=info.shape, where=str(path)), batch_size=DECODE_BATCH, batch_format="numpy")


def share_datasets(splits: list[str], root: str | None = None) -> dict[str, SharedSplit]:
    """Every split in the object store, each read and decoded once: Parquet and image folders through Ray Data (then
    written to the driver's decoded-array cache), cached or other splits in-process."""
    import ray

    from sslsteal import data

    shared = {}
    for spec in splits:
        dataset = None if data.is_cached(spec) else read_split(spec, root)
        if dataset is None:
            shared[spec] = SharedSplit(spec, arrays=ray.put(data.arrays(spec, root=root)))
        else:
            shared[spec] = SharedSplit(spec, blocks=dataset.materialize().to_numpy_refs())
            data.store(spec, split_arrays(shared[spec]))  # the next sweep on this machine reads the cache instead
    return shared


def split_arrays(split: SharedSplit) -> tuple[Any, Any]:
    """The (images, labels) arrays of a shared split, in the order `sslsteal.data.load` serves them."""
    import numpy as np
    import ray

    from sslsteal import data

    if split.blocks is None:
        images, labels = ray.get(split.arrays)
        return images, labels
    blocks = ray.get(split.blocks)
    images, labels = np.concatenate([b["image"] for b in blocks]), np.concatenate([b["label"] for b in blocks])
    if "row" in blocks[0]:  # an image folder: files back in the driver's listing order
        listing = np.argsort(np.concatenate([b["row"] for b in blocks]))
        images, labels = images[listing], labels[listing]
    return data.finish_arrays(split.spec, images, labels)


def install_datasets(shared: dict[str, SharedSplit]) -> None:
    """In a trial: serve `sslsteal.data.load` for the shared splits (assembled once per worker process)."""
    from sslsteal import data

    for spec, split in shared.items():
        if not data.is_provided(spec):
            data.provide(spec, split_arrays(split))
