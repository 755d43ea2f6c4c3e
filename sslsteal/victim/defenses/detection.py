"""Detector error rates on a legitimate and an attacker stream (paper Tables 13-15)."""

from __future__ import annotations

import torch
from torch import Tensor

from sslsteal.victim.defenses.base import Defense

Stream = Tensor | tuple[Tensor, Tensor]
"""Victim outputs for a stream of queries: a (rep, head) pair, or one tensor used as both."""


def _flags(defense: Defense, account: str, stream: Stream, batch: int) -> Tensor:
    """Flag mask of a stream fed in order, in batches, under one fresh account."""
    rep, head = stream if isinstance(stream, tuple) else (stream, stream)
    if rep.shape[0] != head.shape[0]:
        raise ValueError(f"rep has {rep.shape[0]} rows but head has {head.shape[0]}")
    state = defense.init_state(account)
    flags = [defense.apply(state, rep[i : i + batch], rep[i : i + batch], head[i : i + batch])[1].cpu() for i in range(0, rep.shape[0], batch)]
    return torch.cat(flags) if flags else torch.zeros(0, dtype=torch.bool)


def detection_rates(defense: Defense, legit: Stream, attacker: Stream, *, views: int = 2, batch: int = 256) -> dict[str, float]:
    """False-positive rate on distinct legitimate queries; detection (true-positive) and false-negative rates on the
    attacker's repeated views, where the attacker stream holds `views` consecutive rows per image and every view after
    an image's first should be flagged."""
    if views < 2 or batch < 1:
        raise ValueError(f"need views >= 2 and batch >= 1, got views={views}, batch={batch}")
    legit_flags = _flags(defense, "legit", legit, batch)
    attack_flags = _flags(defense, "attacker", attacker, batch)
    if len(attack_flags) % views:
        raise ValueError(f"attacker stream has {len(attack_flags)} rows, not a multiple of views={views}")
    repeats = attack_flags.reshape(-1, views)[:, 1:]
    fpr = legit_flags.float().mean().item() if len(legit_flags) else 0.0
    tpr = repeats.float().mean().item() if repeats.numel() else 0.0
    return {"false_positive_rate": fpr, "true_positive_rate": tpr, "detection_rate": tpr, "false_negative_rate": 1.0 - tpr}
