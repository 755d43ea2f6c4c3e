"""One minus the mean cosine similarity of paired rows: MSE between L2-normalised rows, halved."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from sslsteal.specs.losses import LOSSES

from .checks import check_pair


@LOSSES.implements("cosine")
def cosine(stolen: Tensor, victim: Tensor) -> Tensor:
    """1 - mean_i cos(stolen_i, victim_i); ignores the scale of each row."""
    check_pair(stolen, victim)
    return 1 - F.cosine_similarity(stolen, victim.detach(), dim=1).mean()
