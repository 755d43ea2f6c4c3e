"""What every attack method takes and returns, and `steal`, which runs the method `spec.method` names.

A method is a function `(AttackContext) -> StolenModel` registered with `@METHODS.implements(name)` in its own
file of this package; `METHODS` (sslsteal.specs.methods) declares it with its options. Whatever it does, it queries only through
`ctx.query` (so every answered image is counted against the budget) and draws randomness only from the attacker's
streams (`sslsteal.core.seeding`, roles `attacker.*`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from sslsteal.data.loaders import ImageSet
from sslsteal.models import Embed, Encoder
from sslsteal.specs.attack import AttackSpec
from sslsteal.specs.methods import METHODS

EpochCallback = Callable[[int, dict[str, float], Encoder], None]


@dataclass
class StolenModel:
    """The attacker's result: its encoder (what is evaluated) plus any head it trained."""

    encoder: Encoder
    head: nn.Module | None
    queries_used: int
    history: list[dict[str, float]] = field(default_factory=list)
    queried: ImageSet | None = None
    """The images drawn from the pool with their positions in the split (set by `steal_and_evaluate`), for overlap
    checks: the query images, or the candidates they were chosen from."""
    source_images: int | None = None
    """Distinct images the victim was asked about, when the method chose them among more it drew (else all drawn)."""


@dataclass(frozen=True)
class AttackContext:
    """One attack's inputs: the spec, the victim's query function, the attacker's images (uint8, exactly
    `spec.images_drawn`: its query images, or the candidates it chooses them from), their labels when it has any, the
    victim's architecture name and where to train."""

    spec: AttackSpec
    query: Embed
    images: torch.Tensor
    labels: torch.Tensor | None
    encoder_name: str
    device: torch.device
    progress: bool = False
    on_epoch: EpochCallback | None = None


AttackMethod = Callable[[AttackContext], StolenModel]


def steal(
    spec: AttackSpec,
    query: Embed,
    images: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    encoder_name: str,
    device: torch.device | None = None,
    progress: bool = False,
    on_epoch: EpochCallback | None = None,
) -> StolenModel:
    """Run the attack `spec` with `images` (uint8, exactly spec.images_drawn of them) through `query`.

    `query` answers representations (direct, recreate_head) or head outputs (access_head); wrap it in
    BudgetedQuery to enforce the budget. `on_epoch(epoch, record, encoder)` is called after every epoch.
    """
    import sslsteal.attacks  # noqa: F401  (attach the methods' implementations)

    method: AttackMethod = METHODS.implementation(spec.method)
    context = AttackContext(spec, query, images, labels, encoder_name, device or torch.device("cpu"), progress, on_epoch)
    return method(context)
