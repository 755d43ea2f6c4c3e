"""SimCLR victim training (NT-Xent, Adam, cosine schedule) with the optional rotation watermark."""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from sslsteal.core.device import select_device
from sslsteal.data.augment import SimCLRAugment, to_float, watermark_views
from sslsteal.specs.victim import VictimSpec
from sslsteal.victim.checkpoint import Victim, build_victim, find_cached, save_victim, victims_dir


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's normalised-temperature cross entropy over 2N views: each view's positive is its twin."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = z1.shape[0]
    sim = z @ z.T / temperature
    sim.fill_diagonal_(float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, targets)


def train_victim(spec: VictimSpec, *, device: torch.device | None = None, progress: bool = True) -> Victim:
    """Train a victim from scratch as `spec` says; shows a progress bar with epochs and loss."""
    from sslsteal.data import loaders

    device = device or select_device()
    torch.manual_seed(spec.seed)
    images = loaders.load(spec.data, root=spec.data_root, size=spec.train_images, seed=spec.seed).to_shape(3, 32).images
    if len(images) < spec.batch_size:
        raise ValueError(f"batch_size {spec.batch_size} is larger than the {len(images)} training images")
    images = images.to(device)
    victim = build_victim(spec).to(device)
    params = [p for m in victim.modules() for p in m.parameters()]
    optimizer = torch.optim.Adam(params, lr=spec.lr, weight_decay=spec.weight_decay)
    steps_per_epoch = len(images) // spec.batch_size
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=spec.epochs * steps_per_epoch)
    augment = SimCLRAugment()
    gen = torch.Generator(device=device).manual_seed(spec.seed)
    cpu_gen = torch.Generator().manual_seed(spec.seed)
    for m in victim.modules():
        m.train()
    bar = tqdm(range(spec.epochs), desc=f"victim {spec.name}", unit="epoch", disable=not progress)
    for epoch in bar:
        start = time.perf_counter()
        order = torch.randperm(len(images), generator=gen, device=device)
        totals = {"loss": 0.0, "wm_loss": 0.0, "wm_acc": 0.0}
        for step in range(steps_per_epoch):
            x = to_float(images[order[step * spec.batch_size : (step + 1) * spec.batch_size]])
            b = x.shape[0]
            views = [augment(x, gen), augment(x, gen)]
            if spec.watermark:
                k = max(1, math.ceil(spec.watermark.fraction * b))
                wm_views, wm_labels = watermark_views(x[:k], cpu_gen)
                views.append(wm_views)
            reps = victim.encoder(torch.cat(views))
            z = victim.projection(reps[: 2 * b])
            loss = nt_xent(z[:b], z[b:], spec.temperature)
            totals["loss"] += loss.item()
            if spec.watermark:
                assert victim.predictor is not None  # build_victim gives a watermarked spec its predictor
                logits = victim.predictor(reps[2 * b :])
                wm_loss = F.cross_entropy(logits, wm_labels)
                loss = loss + spec.watermark.weight * wm_loss
                totals["wm_loss"] += wm_loss.item()
                totals["wm_acc"] += (logits.argmax(1) == wm_labels).float().mean().item()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
        record = {k: v / steps_per_epoch for k, v in totals.items() if spec.watermark or not k.startswith("wm")}
        record.update(epoch=epoch + 1, seconds=time.perf_counter() - start)
        victim.history.append(record)
        bar.set_postfix({k: f"{v:.3f}" for k, v in record.items() if k in ("loss", "wm_acc")})
    return victim.to(torch.device("cpu")).eval()


def get_or_train(spec: VictimSpec, *, config_path: str | Path | None = None, progress: bool = True, device: torch.device | None = None) -> tuple[Path, bool]:
    """The checkpoint for `spec`: a cached or shipped one when its hash matches, else trained now and cached.

    Returns (checkpoint path, whether it was trained now).
    """
    found = find_cached(spec, config_path)
    if found is not None:
        return found, False
    victim = train_victim(spec, device=device, progress=progress)
    return save_victim(victim, victims_dir() / spec.key), True
