"""What attack methods share: paying for the answers, the copy's initial weights and width adapter, the training run
with its epoch reports, and the paper's loop (train the copy, plus a head where the method has one, so that its
outputs match the answers under the chosen stealing loss; paper section 3.2)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import nn

from sslsteal.attacks.base import AttackContext, StolenModel
from sslsteal.attacks.query import buy_views, collect_answers
from sslsteal.attacks.training import attacker_encoder, train
from sslsteal.core.seeding import generator, seeded
from sslsteal.data.augment import AUGMENTATIONS, SimCLRAugment, to_float
from sslsteal.models import Encoder


@dataclass
class Answers:
    """What the budget bought: the inputs sent, the victim's answers and each input's source image."""

    sent: torch.Tensor
    answers: torch.Tensor
    source: torch.Tensor
    queries_used: int


def pay(ctx: AttackContext, *, per: int | None = None, augment: SimCLRAugment | None = None) -> Answers:
    """Query the victim: as the spec's strategy says, or `per` views of each image made by `augment`; `queries_used`
    is what the query function counted."""
    used_before = getattr(ctx.query, "used", 0)
    views = generator(ctx.spec.seed, "attacker.views")
    if per is None:
        sent, answers, source = collect_answers(ctx.spec, ctx.query, ctx.images, views)
    else:
        sent, answers, source = buy_views(ctx.query, ctx.images, per=per, augment=augment, generator=views, batch=ctx.spec.query_batch)
    return Answers(sent, answers, source, getattr(ctx.query, "used", used_before + len(sent)) - used_before)


def restrict_to(ctx: AttackContext, index: torch.Tensor) -> AttackContext:
    """The context with only the drawn images at `index` (and their labels): what a method that chooses its query
    images among those drawn pays for."""
    return replace(ctx, images=ctx.images[index], labels=ctx.labels[index] if ctx.labels is not None else None)


def width_adapter(ctx: AttackContext, encoder: Encoder, dim: int) -> nn.Module | None:
    """A linear map from the copy's width into the victim's answers of width `dim` (None when they match), from the
    attacker's own init stream."""
    if encoder.dim == dim:
        return None
    with seeded(ctx.spec.seed, "attacker.head_init"):
        return nn.Linear(encoder.dim, dim).to(ctx.device)


def in_victim_space(encoder: Encoder, adapter: nn.Module | None) -> Callable[[torch.Tensor], torch.Tensor]:
    """The copy's outputs in the victim's space: its encoder, through the width adapter when it has one."""
    if adapter is None:
        return encoder
    return lambda x: adapter(encoder(x))


def fit(
    ctx: AttackContext, encoder: Encoder, others: list[nn.Module | None], step: Callable[[torch.Tensor], torch.Tensor], items: int
) -> list[dict[str, float]]:
    """Train `encoder` and `others` (the modules with trainable weights beside it) with the spec's recipe over `items`
    training items, `step(idx)` giving a batch's loss; every epoch is reported to `ctx.on_epoch`."""
    spec = ctx.spec
    modules: list[nn.Module] = [encoder, *(m for m in others if m is not None)]
    params = [p for m in modules for p in m.parameters() if p.requires_grad]

    def report(epoch: int, record: dict[str, float]) -> None:
        if ctx.on_epoch is not None:
            ctx.on_epoch(epoch, record, encoder)
            encoder.train()

    history = train(
        params=params,
        modules=modules,
        step=step,
        items=items,
        epochs=spec.epochs_for(items),
        spec=spec,
        role="attacker.order",
        desc=f"steal {spec.method}/{spec.loss if not spec.options.own_objective else 'own'}/{spec.queries}",
        progress=ctx.progress,
        on_epoch=report,
    )
    encoder.eval()
    return history


def match_answers(
    ctx: AttackContext,
    paid: Answers,
    encoder: Encoder,
    *,
    head: nn.Module | None,
    frozen_head: bool,
    dim: int,
    extra: Callable[[], torch.Tensor] | None = None,
) -> StolenModel:
    """Train `encoder` (then `head`, trained unless `frozen_head`) so its outputs match the answers under the spec's
    loss (of width `dim`); a frozen head also maps the answers, as Algorithm 2 compares both through it. `extra()`:
    a term added to every step's loss (the consistency attack's)."""
    from sslsteal.losses import make_loss
    from sslsteal.specs.losses import LOSSES

    spec, device = ctx.spec, ctx.device
    with seeded(spec.seed, "attacker.loss_init"):
        loss_fn = make_loss(spec.loss, dim, **spec.loss_params)
    trainable: list[nn.Module | None] = [loss_fn.to(device) if isinstance(loss_fn, nn.Module) else None, None if frozen_head else head]
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
        loss = loss_fn(out, targets[idx.to(device)], **kwargs)
        return loss if extra is None else loss + extra()

    history = fit(ctx, encoder, trainable, step, len(paid.sent))
    return StolenModel(encoder, head, paid.queries_used, history)


def new_encoder(ctx: AttackContext) -> Encoder:
    """The copy's architecture (the victim's unless the spec names one) with the attacker's own initial weights."""
    return attacker_encoder(ctx.spec, ctx.encoder_name).to(ctx.device)
