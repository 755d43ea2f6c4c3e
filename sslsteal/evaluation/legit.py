"""A legitimate user of the defended API: it queries the victim for a downstream task and trains a probe on the answers.

Its accuracy (`legit_acc.<dataset>`) is what a defense costs honest users, reported next to the damage
the defense does to attackers (paper appendix E, Tables 10-12).
"""

from __future__ import annotations

import numpy as np
import torch

from sslsteal.evaluation.probe import ProbeData, linear_probe
from sslsteal.models import Embed


def answers(query: Embed, images: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """The API's answers for every image, requested in batches."""
    return torch.cat([query(images[i : i + batch_size]).float() for i in range(0, len(images), batch_size)]).numpy()


def legit_accuracy(query: Embed, task: ProbeData, batch_size: int = 256) -> float:
    """Top-1 accuracy (percent) of a linear probe trained on the API's answers for `task`'s train split."""
    train_x = answers(query, task.train_images, batch_size)
    test_x = answers(query, task.test_images, batch_size)
    return linear_probe(train_x, task.train_labels, test_x, task.test_labels)
