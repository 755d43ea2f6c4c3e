"""Independent random streams: every random choice draws from a stream named by (seed, role).

A victim trains from its own raw `seed`; attackers, random-floor encoders and validation draws use
streams derived from their seed and a role name, so no attacker can share the victim's initial weights,
data order or augmentations, and two roles of one seed never share a stream.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

import torch


def derive_seed(seed: int, role: str) -> int:
    """A 63-bit seed for `role` under `seed` (SHA-256 of both): distinct roles or seeds give unrelated streams."""
    digest = hashlib.sha256(f"sslsteal:{role}:{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def generator(seed: int, role: str, device: torch.device | str | None = None) -> torch.Generator:
    """A torch generator on `device` seeded for `role`."""
    return torch.Generator(device=device or "cpu").manual_seed(derive_seed(seed, role))


@contextmanager
def seeded(seed: int, role: str) -> Iterator[None]:
    """Seed torch's global stream for `role` inside the block (module initialisation draws from it), then restore it."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, role))
        yield
