"""Encoders under suspicion: saving a stolen encoder, and loading any encoder `sslsteal verify` may examine.

A stolen-encoder file holds the architecture name, the weights, the linear adapter a stolen encoder of
another architecture uses to reach the victim's space (when it has one), and where it came from.
A victim checkpoint also works as a suspect (its encoder), e.g. to check that an honest model passes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from sslsteal.attacks import StolenModel
from sslsteal.core.fileio import atomic_write
from sslsteal.models import build_encoder

KIND = "sslsteal.stolen_encoder"


def adapter(stolen: StolenModel) -> nn.Linear | None:
    """The linear map into the victim's space that `steal` adds when the stolen architecture's width differs."""
    return stolen.head if isinstance(stolen.head, nn.Linear) else None


def suspect_module(stolen: StolenModel) -> nn.Module:
    """The stolen encoder as the tests see it: in the victim's representation space (through its adapter if any)."""
    linear = adapter(stolen)
    return stolen.encoder if linear is None else nn.Sequential(stolen.encoder, linear).eval()


def save_stolen(stolen: StolenModel, path: str | Path, *, victim: str, attack: dict[str, Any]) -> Path:
    """Write the stolen encoder (and its adapter, if any) atomically; `victim` and `attack` record its origin."""
    linear = adapter(stolen)
    state = {
        "kind": KIND,
        "encoder_name": stolen.encoder.name,
        "encoder": stolen.encoder.state_dict(),
        "adapter": linear.state_dict() if linear is not None else None,
        "victim": victim,
        "attack": attack,
        "queries_used": stolen.queries_used,
    }
    target = Path(path)
    atomic_write(target, lambda f: torch.save(state, f))
    return target


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    """Whether two modules hold the same parameters and buffers, bit for bit (whatever files they came from)."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(sa[k].shape == sb[k].shape and torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa)


def load_suspect(path: str | Path) -> tuple[nn.Module, str]:
    """(encoder module in eval mode, one-line description) from a stolen-encoder file or a victim checkpoint."""
    from sslsteal.victim.checkpoint import CHECKPOINT, load_victim

    p = Path(path)
    if p.is_dir():
        p = p / CHECKPOINT
    if not p.is_file():
        raise FileNotFoundError(f"no encoder file at {p}")
    state = torch.load(p, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("kind") != KIND:
        victim = load_victim(p)
        return victim.encoder.eval(), f"victim checkpoint {victim.spec.key}"
    encoder = build_encoder(state["encoder_name"])
    encoder.load_state_dict(state["encoder"])
    module: nn.Module = encoder
    if state["adapter"] is not None:
        weight = state["adapter"]["weight"]
        linear = nn.Linear(weight.shape[1], weight.shape[0])
        linear.load_state_dict(state["adapter"])
        module = nn.Sequential(encoder, linear)
    attack = state["attack"]
    return module.eval(), f"stolen from {state['victim']} ({attack.get('method')}/{attack.get('loss')}, {state['queries_used']} queries)"
