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
from pydantic import Field, field_validator
from torch import nn

from sslsteal.augment import to_float
from sslsteal.config import StrictModel

Embed = Callable[[torch.Tensor], torch.Tensor]


@torch.no_grad()
def extract_features(encoder: nn.Module | Embed, images: torch.Tensor, batch_size: int = 512, device: torch.device | None = None) -> np.ndarray:
    """Representations of uint8 or float images, in eval mode, as a float32 (N, dim) array."""
    if isinstance(encoder, nn.Module):
        encoder.eval()
        if device is None:
            device = next(encoder.parameters()).device
    out = []
    for start in range(0, len(images), batch_size):
        batch = to_float(images[start : start + batch_size])
        if device is not None:
            batch = batch.to(device, non_blocking=True)
        out.append(encoder(batch).float().cpu())
    return torch.cat(out).numpy()


def linear_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, max_iter: int = 1000, seed: int = 0) -> float:
    """Top-1 test accuracy (percent) of a multinomial logistic regression fitted on frozen train features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train_x)
    clf = LogisticRegression(max_iter=max_iter, C=1.0, random_state=seed)
    clf.fit(scaler.transform(train_x), train_y)
    return float(100.0 * (clf.predict(scaler.transform(test_x)) == test_y).mean())


def known_datasets(names: list[str]) -> list[str]:
    """`names` unchanged when every one is a registered dataset; ValueError naming the first unknown one."""
    from sslsteal.data import DATASETS

    unknown = [n for n in names if n not in DATASETS]
    if unknown:
        raise ValueError(f"unknown dataset {unknown[0]!r}; known: {', '.join(sorted(DATASETS))}")
    return names


class ProbeSpec(StrictModel):
    """The linear-evaluation protocol: downstream datasets and (optionally) subset sizes of their splits."""

    downstream: list[str] = Field(default_factory=lambda: ["cifar10"], min_length=1)
    train_images: int | None = Field(None, gt=0, description="probe-training images per dataset; all when null")
    test_images: int | None = Field(None, gt=0, description="probe-test images per dataset; all when null")

    @field_validator("downstream")
    @classmethod
    def _known(cls, names: list[str]) -> list[str]:
        return known_datasets(names)

    def key(self, dataset: str) -> str:
        """Cache key of one dataset's result under this protocol."""
        return f"{dataset}|train={self.train_images or 'all'}|test={self.test_images or 'all'}"


@dataclass(frozen=True)
class ProbeData:
    """A downstream task's images in the encoder's input shape, ready for linear evaluation."""

    name: str
    train_images: torch.Tensor
    train_labels: np.ndarray
    test_images: torch.Tensor
    test_labels: np.ndarray


def probe_data(dataset: str, *, channels: int = 3, size: int = 32, train_images: int | None = None, test_images: int | None = None, seed: int = 0, root: str | None = None) -> ProbeData:
    """Load `dataset`'s train and test splits (optionally deterministic subsets) shaped for the encoder."""
    from sslsteal import data

    train = data.load(f"{dataset}:train", root=root, size=train_images, seed=seed).to_shape(channels, size)
    test = data.load(f"{dataset}:test", root=root, size=test_images, seed=seed).to_shape(channels, size)
    return ProbeData(dataset, train.images, train.labels.numpy(), test.images, test.labels.numpy())


def holdout_task(dataset: str, train_images: int, test_images: int, *, seed: int = 0, root: str | None = None) -> ProbeData:
    """A small task drawn from `dataset`'s train split only (disjoint train/test parts), for monitoring during
    training: choices made on it (pruning) never look at the test split the final evaluation uses."""
    from sslsteal import data

    drawn = data.load(f"{dataset}:train", root=root, size=train_images + test_images, seed=seed).to_shape(3, 32)
    labels = drawn.labels.numpy()
    return ProbeData(dataset, drawn.images[:train_images], labels[:train_images], drawn.images[train_images:], labels[train_images:])


def linear_eval(encoder: nn.Module | Embed, task: ProbeData, device: torch.device | None = None) -> float:
    """Linear-evaluation top-1 accuracy (percent) of `encoder` on `task`."""
    train_x = extract_features(encoder, task.train_images, device=device)
    test_x = extract_features(encoder, task.test_images, device=device)
    return linear_probe(train_x, task.train_labels, test_x, task.test_labels)


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
