"""The paper's attacks share one loop: pay for the answers once, then train the copy (plus a head where the method
has one) so that its outputs match the answers under the chosen stealing loss (paper section 3.2)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from sslsteal.attacks.base import AttackContext, StolenModel
from sslsteal.attacks.query import collect_answers
from sslsteal.attacks.training import attacker_encoder, train
from sslsteal.core.seeding import generator, seeded
from sslsteal.data.augment import AUGMENTATIONS, to_float
from sslsteal.models import Encoder


@dataclass
class Answers:
    """What the budget bought: the inputs sent, the victim's answers and each input's source image."""

    sent: torch.Tensor
    answers: torch.Tensor
    source: torch.Tensor
    queries_used: int


def pay(ctx: AttackContext) -> Answers:
    """Query the victim as the spec's strategy says; `queries_used` is what the query function counted."""
    used_before = getattr(ctx.query, "used", 0)
    sent, answers, source = collect_answers(ctx.spec, ctx.query, ctx.images, generator(ctx.spec.seed, "attacker.views"))
    return Answers(sent, answers, source, getattr(ctx.query, "used", used_before + len(sent)) - used_before)


def match_answers(ctx: AttackContext, paid: Answers, encoder: Encoder, *, head: nn.Module | None, frozen_head: bool, dim: int) -> StolenModel:
    """Train `encoder` (then `head`, trained unless `frozen_head`) so its outputs match the answers under the spec's
    loss (of width `dim`); a frozen head also maps the answers, as Algorithm 2 compares both through it."""
    from sslsteal.losses import make_loss
    from sslsteal.specs.losses import LOSSES

    spec, device = ctx.spec, ctx.device
    with seeded(spec.seed, "attacker.loss_init"):
        loss_fn = make_loss(spec.loss, dim, **spec.loss_params)
    modules: list[nn.Module] = [encoder]
    if isinstance(loss_fn, nn.Module):
        loss_fn.to(device)
        modules.append(loss_fn)
    if head is not None and not frozen_head:
        modules.append(head)
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    needs_labels = LOSSES[spec.loss].needs_labels
    aug = AUGMENTATIONS[spec.augment]
    aug_gen = generator(spec.seed, "attacker.augment", device)
    sent_labels = ctx.labels[paid.source] if ctx.labels is not None else None
    targets = paid.answers.to(device)
    if head is not None and frozen_head:
        with torch.no_grad():
            targets = head(targets)

    def step(idx: torch.Tensor) -> torch.Tensor:
        x = to_float(paid.sent[idx]).to(device)
        if aug is not None:
            x = aug(x, aug_gen)
        out = encoder(x)
        if head is not None:
            out = head(out)
        kwargs = {"labels": sent_labels[idx].to(device)} if needs_labels and sent_labels is not None else {}
        return loss_fn(out, targets[idx.to(device)], **kwargs)

    def report(epoch: int, record: dict[str, float]) -> None:
        if ctx.on_epoch is not None:
            ctx.on_epoch(epoch, record, encoder)
            encoder.train()

    items = len(paid.sent)
    history = train(
        params=params,
        modules=modules,
        step=step,
        items=items,
        epochs=spec.epochs_for(items),
        spec=spec,
        role="attacker.order",
        desc=f"steal {spec.method}/{spec.loss}/{spec.queries}",
        progress=ctx.progress,
        on_epoch=report,
    )
    encoder.eval()
    return StolenModel(encoder, head, paid.queries_used, history)


def new_encoder(ctx: AttackContext) -> Encoder:
    """The copy's architecture (the victim's unless the spec names one) with the attacker's own initial weights."""
    return attacker_encoder(ctx.spec, ctx.encoder_name).to(ctx.device)
