"""Spending the budget: the client-side budget check and the strategies that decide which images the victim answers."""

from __future__ import annotations

import time

import torch

from sslsteal.data.augment import SimCLRAugment, to_float
from sslsteal.models import Embed
from sslsteal.specs.attack import AttackSpec
from sslsteal.victim.errors import QueryBudgetExceeded


class BudgetedQuery:
    """Counts the images answered through `query` (each one forward pass of the victim) and the seconds spent waiting
    for them, and refuses any request that would exceed `budget`."""

    def __init__(self, query: Embed, budget: int) -> None:
        self.query = query
        self.budget = budget
        self.used = 0
        self.seconds = 0.0

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        n = len(images)
        if self.used + n > self.budget:
            raise QueryBudgetExceeded(f"request for {n} images exceeds the budget: {self.used} of {self.budget} used")
        start = time.perf_counter()
        out = self.query(images)
        self.seconds += time.perf_counter() - start
        self.used += n
        return out


def collect_answers(spec: AttackSpec, query: Embed, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Spend the budget as the paper's strategies do: returns (inputs sent, victim answers, index of each input's
    source image). Strategy `once` sends each image once; `augmented` sends `views` fresh SimCLR views per image."""
    per = spec.views_per_image
    return buy_views(query, images, per=per, augment=SimCLRAugment() if per > 1 else None, generator=generator, batch=spec.query_batch)


def buy_views(
    query: Embed, images: torch.Tensor, *, per: int, augment: SimCLRAugment | None, generator: torch.Generator, batch: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Send `per` views of every image (each `augment`ed afresh, or the image itself when `augment` is None), every
    one a paid query: returns (inputs sent as uint8, victim answers, index of each input's source image)."""
    sent, answers, source = [], [], []
    for start in range(0, len(images), batch):
        chunk = images[start : start + batch]
        idx = torch.arange(start, start + len(chunk))
        for _ in range(per):
            x = chunk if augment is None else augment(to_float(chunk), generator).mul(255).round().to(torch.uint8)
            answers.append(query(x).detach().float().cpu())
            sent.append(x)
            source.append(idx)
    return torch.cat(sent), torch.cat(answers), torch.cat(source)
