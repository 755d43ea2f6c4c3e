"""SimSiam-style symmetrized loss with a trainable predictor (Chen & He 2021): the predictor maps
each side onto the other, negative cosine similarity, stop-gradient on the target side."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from sslsteal.specs.losses import LOSSES

from .checks import check_pair


def _neg_cosine(p: Tensor, z: Tensor) -> Tensor:
    return -F.cosine_similarity(p, z.detach(), dim=1).mean()


@LOSSES.implements("simsiam")
class SimSiamLoss(nn.Module):
    """0.5 * D(h(s), sg(v)) + 0.5 * D(h(v), sg(s)), D = -mean cosine; h = dim -> pred_dim -> dim MLP.

    The second term trains only the predictor h. Add `parameters()` to the optimizer."""

    def __init__(self, dim: int, *, pred_dim: int = 512) -> None:
        super().__init__()
        self.predictor = nn.Sequential(
            nn.Linear(dim, pred_dim, bias=False),
            nn.BatchNorm1d(pred_dim),
            nn.ReLU(inplace=True),
            nn.Linear(pred_dim, dim),
        )

    def forward(self, stolen: Tensor, victim: Tensor) -> Tensor:
        check_pair(stolen, victim)
        victim = victim.detach()
        return 0.5 * _neg_cosine(self.predictor(stolen), victim) + 0.5 * _neg_cosine(self.predictor(victim), stolen)
