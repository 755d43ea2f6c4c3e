"""`consistency` (ours): direct extraction plus a mean-teacher consistency term on pool images the attacker never
queries (Tarvainen and Valpola, NeurIPS 2017). The paid answers anchor the copy in the victim's space; on the free
images the copy's output for one view is pulled to an EMA copy's output for another, so the copy learns, without
paying, where the victim's augmentation invariance reaches beyond the few images it bought."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from sslsteal.attacks.base import AttackContext, StolenModel
from sslsteal.attacks.matching import in_victim_space, match_answers, new_encoder, pay, restrict_to, width_adapter
from sslsteal.core.seeding import generator
from sslsteal.data.augment import AUGMENTATIONS, to_float
from sslsteal.models import Encoder
from sslsteal.specs.methods import METHODS, Consistency

M = TypeVar("M", bound=nn.Module)


def consistency_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """1 - cos(student_i, teacher_i), averaged over the batch (the teacher's side carries no gradient)."""
    return (1 - F.cosine_similarity(student, teacher.detach(), dim=1)).mean()


def ema_update(teacher: nn.Module, student: nn.Module, decay: float) -> None:
    """teacher <- decay * teacher + (1 - decay) * student for weights; batch-norm statistics copied as they are."""
    with torch.no_grad():
        for t, s in zip(teacher.parameters(), student.parameters(), strict=True):
            t.mul_(decay).add_(s, alpha=1 - decay)
        for tb, sb in zip(teacher.buffers(), student.buffers(), strict=True):
            tb.copy_(sb)


def frozen_copy(module: M) -> M:
    """A copy of `module` in eval mode that no optimizer sees."""
    twin = copy.deepcopy(module).eval()
    twin.requires_grad_(False)
    return twin


@METHODS.implements("consistency")
def consistency(ctx: AttackContext) -> StolenModel:
    """Pay for `images_needed` of the drawn images (a seeded random choice), train as `direct` plus the consistency
    term on the rest."""
    options = ctx.spec.options
    assert isinstance(options, Consistency)
    spec = ctx.spec
    order = torch.randperm(len(ctx.images), generator=generator(spec.seed, "attacker.consistency"))
    asked, free = order[: spec.images_needed], order[spec.images_needed :]
    picked = restrict_to(ctx, asked)
    paid = pay(picked)
    encoder = new_encoder(ctx)
    dim = paid.answers.shape[1]
    adapter = width_adapter(ctx, encoder, dim)
    extra = _consistency_term(ctx, options, encoder, adapter, ctx.images[free]) if len(free) else None
    stolen = match_answers(picked, paid, encoder, head=adapter, frozen_head=False, dim=dim, extra=extra)
    stolen.source_images = spec.images_needed
    return stolen


def _consistency_term(ctx: AttackContext, options: Consistency, encoder: Encoder, adapter: nn.Module | None, pool: torch.Tensor) -> Callable[[], torch.Tensor]:
    """The term added to each step: first the teacher follows the student's last step, then a batch of free images in
    two views, the student's output on one pulled to the teacher's on the other."""
    spec, device = ctx.spec, ctx.device
    teacher_encoder, teacher_adapter = frozen_copy(encoder), frozen_copy(adapter) if adapter is not None else None
    student, teacher = in_victim_space(encoder, adapter), in_victim_space(teacher_encoder, teacher_adapter)
    aug = AUGMENTATIONS[options.augment]
    assert aug is not None
    draws = generator(spec.seed, "attacker.consistency.batches")
    views = generator(spec.seed, "attacker.consistency.views", device)

    def term() -> torch.Tensor:
        ema_update(teacher_encoder, encoder, options.decay)
        if adapter is not None and teacher_adapter is not None:
            ema_update(teacher_adapter, adapter, options.decay)
        x = to_float(pool[torch.randint(len(pool), (min(spec.batch_size, len(pool)),), generator=draws)]).to(device)
        with torch.no_grad():
            target = teacher(aug(x, views))
        return options.weight * consistency_loss(student(aug(x, views)), target)

    return term
