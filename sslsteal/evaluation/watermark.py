"""The rotation watermark task, evaluated on any encoder through the victim's augmentation predictor."""

from __future__ import annotations

import numpy as np
import torch

from sslsteal.data.augment import to_float, watermark_views
from sslsteal.models import Embed


@torch.no_grad()
def watermark_correct(embed: Embed, predictor: torch.nn.Module, images: torch.Tensor, seed: int = 0, batch_size: int = 512) -> np.ndarray:
    """Per-view correctness (bool array of 2N) of the victim's predictor on `embed`'s representations of rotated views.

    The same seed gives the same rotation angles, so two encoders are compared on identical views.
    """
    predictor.eval()
    device = next(predictor.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    correct = []
    for start in range(0, len(images), batch_size):
        x = to_float(images[start : start + batch_size]).to(device)
        views, labels = watermark_views(x, gen)
        reps = embed(views).to(device)
        correct.append((predictor(reps).argmax(1) == labels).cpu())
    return torch.cat(correct).numpy()


def watermark_accuracy(embed: Embed, predictor: torch.nn.Module, images: torch.Tensor, seed: int = 0) -> float:
    """Watermark success rate (percent): how often the predictor tells the rotation interval from `embed`'s output."""
    return float(100.0 * watermark_correct(embed, predictor, images, seed).mean())
