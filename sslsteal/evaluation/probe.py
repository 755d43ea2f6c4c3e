"""Linear evaluation and k-NN accuracy on frozen features, and fidelity between two encoders.

Features are extracted once per split; a multinomial logistic-regression probe (scikit-learn, lbfgs, on
standardised features) is trained on the downstream train split and scored top-1 on its test split.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sslsteal.data.loaders import ImageSet
from sslsteal.models import Embed, Encoder, encode
from sslsteal.specs.datasets import DataRef

BulkEmbed = Callable[[Encoder, torch.Tensor], np.ndarray]
"""(encoder, images) -> features computed elsewhere: Ray Data batch inference in a sweep's trial."""
_BULK: tuple[int, BulkEmbed] | None = None


def embed_in_bulk(embed: BulkEmbed | None, min_images: int = 0) -> None:
    """Send an encoder's feature extraction over `min_images` images or more to `embed` in this process; None: all in-process."""
    global _BULK
    _BULK = None if embed is None else (min_images, embed)


@torch.no_grad()
def extract_features(encoder: nn.Module | Embed, images: torch.Tensor, batch_size: int = 512, device: torch.device | None = None) -> np.ndarray:
    """Representations of uint8 or float images, in eval mode, as a float32 (N, dim) array (large sets of an
    encoder's go to the `embed_in_bulk` route when one is installed)."""
    if _BULK is not None and isinstance(encoder, Encoder) and len(images) >= _BULK[0]:
        return _BULK[1](encoder, images)
    return encode(encoder, images, batch_size, device).numpy()


def linear_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, max_iter: int = 1000, seed: int = 0) -> float:
    """Top-1 test accuracy (percent) of a multinomial logistic regression fitted on frozen train features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train_x)
    clf = LogisticRegression(max_iter=max_iter, C=1.0, random_state=seed)
    clf.fit(scaler.transform(train_x), train_y)
    return float(100.0 * (clf.predict(scaler.transform(test_x)) == test_y).mean())


@dataclass(frozen=True)
class ProbeData:
    """A downstream task's images in the encoder's input shape, ready for linear evaluation.

    `val_rows` (optional) are rows of the train part held out as a validation set: a second probe fitted on
    the other train rows scores them, so a search can optimise `val_acc` without ever seeing the test part.
    """

    name: str
    train: ImageSet
    test: ImageSet
    val_rows: torch.Tensor | None = None

    @property
    def train_images(self) -> torch.Tensor:
        return self.train.images

    @property
    def train_labels(self) -> np.ndarray:
        return self.train.labels.numpy()

    @property
    def test_images(self) -> torch.Tensor:
        return self.test.images

    @property
    def test_labels(self) -> np.ndarray:
        return self.test.labels.numpy()

    @property
    def val(self) -> ImageSet | None:
        return None if self.val_rows is None else self.train.take(self.val_rows)


def probe_data(
    dataset: str,
    *,
    channels: int = 3,
    size: int = 32,
    train_images: int | None = None,
    test_images: int | None = None,
    val_images: int = 0,
    pool: DataRef | None = None,
    seed: int = 0,
    root: str | None = None,
) -> ProbeData:
    """`dataset`'s train split and its test split minus the attacker's query `pool`, optionally as deterministic
    subsets, shaped for the encoder; with `val_images`, that many train images outside the pool are held out."""
    from sslsteal.core.seeding import derive_seed
    from sslsteal.data import loaders

    train = loaders.load(f"{dataset}:train", root=root, size=train_images, seed=seed)
    test = loaders.load(f"{dataset}:test", root=root).without(pool)
    if test_images is not None:
        test = test.at_most(test_images, seed)
    val_rows = None
    if val_images:
        outside = torch.nonzero(~train.in_pool(pool)).flatten()
        if val_images > len(train) // 2:
            raise ValueError(f"val_images={val_images} is more than half of the {len(train)} {dataset}:train images the probe trains on")
        if len(outside) < val_images:
            raise ValueError(f"{dataset}:train has {len(outside)} images outside the query pool {pool}, fewer than val_images={val_images}")
        pick = torch.randperm(len(outside), generator=torch.Generator().manual_seed(derive_seed(seed, "validation")))[:val_images]
        val_rows = outside[pick]
    return ProbeData(dataset, train.to_shape(channels, size), test.to_shape(channels, size), val_rows)


def holdout_task(dataset: str, train_images: int, test_images: int, *, pool: DataRef | None = None, seed: int = 0, root: str | None = None) -> ProbeData:
    """A small task drawn from `dataset`'s train split outside the query pool (disjoint train/test parts), for
    monitoring during training: choices made on it (pruning) never look at the test split or at queried images."""
    from sslsteal.data import loaders

    drawn = loaders.load(f"{dataset}:train", root=root).without(pool)
    n = min(len(drawn), train_images + test_images)
    drawn = drawn.subset(n, seed).to_shape(3, 32)
    cut = max(1, n * train_images // (train_images + test_images))
    return ProbeData(dataset, drawn.take(slice(0, cut)), drawn.take(slice(cut, n)))


@dataclass(frozen=True)
class ProbeResult:
    """Top-1 accuracies (percent) of a linear probe and the image counts they rest on."""

    acc: float
    test_images: int
    val_acc: float | None = None
    val_images: int = 0


def probe(encoder: nn.Module | Embed, task: ProbeData, device: torch.device | None = None) -> ProbeResult:
    """Linear evaluation on `task`: a probe fitted on all train rows scores the test part; with validation rows,
    a second probe fitted on the remaining train rows scores them."""
    train_x = extract_features(encoder, task.train_images, device=device)
    test_x = extract_features(encoder, task.test_images, device=device)
    labels = task.train_labels
    acc = linear_probe(train_x, labels, test_x, task.test_labels)
    if task.val_rows is None:
        return ProbeResult(acc, len(test_x))
    rows = task.val_rows.numpy()
    keep = np.ones(len(train_x), dtype=bool)
    keep[rows] = False
    val_acc = linear_probe(train_x[keep], labels[keep], train_x[rows], labels[rows])
    return ProbeResult(acc, len(test_x), val_acc, len(rows))


def linear_eval(encoder: nn.Module | Embed, task: ProbeData, device: torch.device | None = None) -> float:
    """Linear-evaluation top-1 test accuracy (percent) of `encoder` on `task`."""
    return probe(encoder, task, device).acc


def knn_accuracy(encoder: nn.Module | Embed, task: ProbeData, k: int = 20, device: torch.device | None = None) -> float:
    """Top-1 accuracy (percent) of a cosine k-NN majority vote over `task`'s train features: cheap enough to run every epoch."""
    train_x = F.normalize(torch.from_numpy(extract_features(encoder, task.train_images, device=device)), dim=1)
    test_x = F.normalize(torch.from_numpy(extract_features(encoder, task.test_images, device=device)), dim=1)
    train_y = torch.from_numpy(task.train_labels)
    nearest = (test_x @ train_x.T).topk(min(k, len(train_x)), dim=1).indices
    votes = F.one_hot(train_y[nearest], int(train_y.max()) + 1).sum(dim=1)
    return float(100.0 * (votes.argmax(dim=1).numpy() == task.test_labels).mean())


def fidelity(stolen: np.ndarray, victim: np.ndarray) -> dict[str, float]:
    """Mean cosine similarity and mean l2 distance between paired representations."""
    s = torch.as_tensor(stolen, dtype=torch.float64)
    v = torch.as_tensor(victim, dtype=torch.float64)
    cos = torch.nn.functional.cosine_similarity(s, v, dim=1).mean().item()
    l2 = (s - v).norm(dim=1).mean().item()
    return {"fidelity.cosine": cos, "fidelity.l2": l2}
