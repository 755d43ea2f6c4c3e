"""The attacker's optimisation loop and initial weights, shared by every attack method."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from sslsteal.core.seeding import generator, seeded
from sslsteal.models import Encoder, build_encoder
from sslsteal.specs.attack import AttackSpec


def attacker_encoder(spec: AttackSpec, victim_encoder: str) -> Encoder:
    """The stolen encoder's initial weights: the attacker's own init stream, never the victim's."""
    with seeded(spec.seed, "attacker.init"):
        return build_encoder(spec.encoder or victim_encoder)


def train(
    *,
    params: list[nn.Parameter],
    modules: list[nn.Module],
    step: Callable[[torch.Tensor], torch.Tensor],
    items: int,
    epochs: int,
    spec: AttackSpec,
    role: str,
    desc: str,
    progress: bool = False,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> list[dict[str, float]]:
    """Adam + cosine schedule over `epochs` passes of `items` training items in shuffled batches (the order from
    the attacker's `role` stream); `step(idx)` returns the loss of the batch `idx`. Returns one record per epoch."""
    optimizer = torch.optim.Adam(params, lr=spec.lr, weight_decay=spec.weight_decay)
    batch = min(spec.batch_size, items)
    steps = max(1, items // batch)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps)
    gen = generator(spec.seed, role)
    history = []
    for m in modules:
        m.train()
    bar = tqdm(range(epochs), desc=desc, unit="epoch", disable=not progress, leave=False)
    for epoch in bar:
        order = torch.randperm(items, generator=gen)
        total = 0.0
        for s in range(steps):
            loss = step(order[s * batch : (s + 1) * batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += loss.item()
        record = {"epoch": epoch + 1, "loss": total / steps}
        history.append(record)
        bar.set_postfix(loss=f"{record['loss']:.4f}")
        if on_epoch is not None:
            on_epoch(epoch + 1, record)
    return history
