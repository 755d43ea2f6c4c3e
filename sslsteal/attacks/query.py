"""Spending the budget: the client-side budget check and the strategies that decide which images the victim answers."""

from __future__ import annotations

import torch

from sslsteal.data.augment import SimCLRAugment, to_float
from sslsteal.models import Embed
from sslsteal.specs.attack import AttackSpec
from sslsteal.victim.errors import QueryBudgetExceeded


class BudgetedQuery:
    """Counts the images answered through `query` and refuses any request that would exceed `budget`."""

    def __init__(self, query: Embed, budget: int) -> None:
        self.query = query
        self.budget = budget
        self.used = 0

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        n = len(images)
        if self.used + n > self.budget:
            raise QueryBudgetExceeded(f"request for {n} images exceeds the budget: {self.used} of {self.budget} used")
        out = self.query(images)
        self.used += n
        return out


def collect_answers(spec: AttackSpec, query: Embed, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Spend the budget: returns (inputs sent, victim answers, index of each input's source image).

    Strategy `once` sends each image once; `augmented` sends `views` fresh SimCLR views per image, each paid for."""
    per = spec.views_per_image
    view_aug = SimCLRAugment()
    sent, answers, source = [], [], []
    for start in range(0, len(images), spec.query_batch):
        batch = images[start : start + spec.query_batch]
        idx = torch.arange(start, start + len(batch))
        for _ in range(per):
            x = batch if per == 1 else (view_aug(to_float(batch), generator).mul(255).round().to(torch.uint8))
            answers.append(query(x).detach().float().cpu())
            sent.append(x)
            source.append(idx)
    return torch.cat(sent), torch.cat(answers), torch.cat(source)
