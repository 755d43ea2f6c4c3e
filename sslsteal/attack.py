"""Stealing an encoder through a query function `query(images) -> outputs` (Ray-free, so it runs anywhere).

Methods (paper section 3.2):
- `direct` (Algorithm 1): the stolen encoder's representation is matched to the victim's.
- `recreate_head` (Algorithm 2): a head is first trained on the victim's outputs of two views of each image
  (NT-Xent, as SimCLR trains its head), then frozen; stolen and victim outputs are compared through it.
- `access_head`: the victim answers with its projection-head output z; the attacker trains its encoder
  plus its own head to match z.
Query strategies: `once` sends each image once and trains on cached answers with local augmentations
only (StolenEncoder-style); `augmented` sends `views` fresh SimCLR views per image, each paid for.
Either way the budget counts images the victim answered and is never exceeded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from sslsteal.augment import AUGMENTATIONS, SimCLRAugment, to_float
from sslsteal.data import ImageSet
from sslsteal.models import Embed, Encoder, ProjectionHead, build_encoder
from sslsteal.seeding import generator, seeded
from sslsteal.specs.attack import AttackSpec
from sslsteal.victim.errors import QueryBudgetExceeded

EpochCallback = Callable[[int, dict[str, float], Encoder], None]


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


@dataclass
class StolenModel:
    """The attacker's result: its encoder (what is evaluated) plus any head it trained."""

    encoder: Encoder
    head: nn.Module | None
    queries_used: int
    history: list[dict[str, float]] = field(default_factory=list)
    queried: ImageSet | None = None
    """The query images with their positions in the split (set by `steal_and_evaluate`), for overlap checks."""


def collect_answers(spec: AttackSpec, query: Embed, images: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Spend the budget: returns (inputs sent, victim answers, index of each input's source image)."""
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


def _train(
    params: list[nn.Parameter],
    modules: list[nn.Module],
    step: Callable[[torch.Tensor], torch.Tensor],
    n: int,
    epochs: int,
    spec: AttackSpec,
    desc: str,
    progress: bool,
    on_epoch: Callable[[int, dict[str, float]], None] | None,
    role: str,
) -> list[dict[str, float]]:
    """Adam + cosine schedule over `epochs` passes of `n` items in shuffled batches (order from the attacker's
    `role` stream); `step(idx)` returns the loss."""
    optimizer = torch.optim.Adam(params, lr=spec.lr, weight_decay=spec.weight_decay)
    batch = min(spec.batch_size, n)
    steps = max(1, n // batch)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps)
    gen = generator(spec.seed, role)
    history = []
    for m in modules:
        m.train()
    bar = tqdm(range(epochs), desc=desc, unit="epoch", disable=not progress, leave=False)
    for epoch in bar:
        order = torch.randperm(n, generator=gen)
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


def attacker_encoder(spec: AttackSpec, victim_encoder: str) -> Encoder:
    """The stolen encoder's initial weights: the attacker's own init stream, never the victim's."""
    with seeded(spec.seed, "attacker.init"):
        return build_encoder(spec.encoder or victim_encoder)


def recreate_head(spec: AttackSpec, answers: torch.Tensor, source: torch.Tensor, device: torch.device, progress: bool) -> nn.Module:
    """Algorithm 2: train a head on the victim's outputs of two views of each image with NT-Xent; returned frozen."""
    from sslsteal.victim.train import nt_xent

    with seeded(spec.seed, "attacker.head_init"):
        head = ProjectionHead(answers.shape[1], spec.head_hidden, spec.head_dim).to(device)
    order = torch.argsort(source, stable=True)
    pairs = answers[order].view(-1, spec.views, answers.shape[1])[:, :2].to(device)  # (images, 2, dim)

    def step(idx: torch.Tensor) -> torch.Tensor:
        z = head(pairs[idx].flatten(0, 1)).view(len(idx), 2, -1)
        return nt_xent(z[:, 0], z[:, 1], temperature=0.5)

    _train(list(head.parameters()), [head], step, len(pairs), spec.head_epochs, spec, "recreate head", progress, None, "attacker.head_order")
    head.eval()
    for p in head.parameters():
        p.requires_grad_(False)
    return head


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
    """Run the attack `spec` with `images` (uint8, exactly spec.images_needed of them) through `query`.

    `query` answers representations (direct, recreate_head) or head outputs (access_head); wrap it in
    BudgetedQuery to enforce the budget. `on_epoch(epoch, record, encoder)` is called after every epoch.
    """
    from sslsteal.losses import make_loss
    from sslsteal.specs.losses import LOSSES

    device = device or torch.device("cpu")
    used_before = getattr(query, "used", 0)
    sent, answers, source = collect_answers(spec, query, images, generator(spec.seed, "attacker.views"))
    queries_used = getattr(query, "used", used_before + len(sent)) - used_before

    encoder = attacker_encoder(spec, encoder_name).to(device)
    head: nn.Module | None = None
    target_head: nn.Module | None = None
    if spec.method == "recreate_head":
        target_head = recreate_head(spec, answers, source, device, progress)
        head = target_head
        dim = spec.head_dim
    else:
        dim = answers.shape[1]
        with seeded(spec.seed, "attacker.head_init"):
            if spec.method == "access_head":
                head = ProjectionHead(encoder.dim, spec.head_hidden, dim).to(device)
            elif encoder.dim != dim:  # a different architecture: a linear adapter maps into the victim's space
                head = nn.Linear(encoder.dim, dim).to(device)

    with seeded(spec.seed, "attacker.loss_init"):
        loss_fn = make_loss(spec.loss, dim, **spec.loss_params)
    modules: list[nn.Module] = [encoder]
    if isinstance(loss_fn, nn.Module):
        loss_fn.to(device)
        modules.append(loss_fn)
    trainable = [head] if head is not None and head is not target_head else []
    modules += trainable
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    needs_labels = LOSSES[spec.loss].needs_labels
    aug = AUGMENTATIONS[spec.augment]
    aug_gen = generator(spec.seed, "attacker.augment", device)
    sent_labels = labels[source] if labels is not None else None
    targets = answers.to(device)
    if target_head is not None:
        with torch.no_grad():
            targets = target_head(targets)

    def step(idx: torch.Tensor) -> torch.Tensor:
        x = to_float(sent[idx]).to(device)
        if aug is not None:
            x = aug(x, aug_gen)
        out = encoder(x)
        if head is not None:
            out = head(out)
        kwargs = {"labels": sent_labels[idx].to(device)} if needs_labels and sent_labels is not None else {}
        return loss_fn(out, targets[idx.to(device)], **kwargs)

    def report(epoch: int, record: dict[str, float]) -> None:
        if on_epoch is not None:
            on_epoch(epoch, record, encoder)
            encoder.train()

    epochs_desc = f"steal {spec.method}/{spec.loss}/{spec.queries}"
    history = _train(params, modules, step, len(sent), spec.epochs_for(len(sent)), spec, epochs_desc, progress, report, "attacker.order")
    encoder.eval()
    return StolenModel(encoder, head, queries_used, history)
