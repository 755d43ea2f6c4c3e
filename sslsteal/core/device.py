"""Pick the torch device and CPU thread count from what this process was given (Ray or not)."""

from __future__ import annotations

import os

import torch


def select_device(prefer: str | None = None) -> torch.device:
    """The GPU this process may use (Ray narrows CUDA_VISIBLE_DEVICES to the assigned one), else the CPU.

    `prefer` ("cpu", "cuda", "cuda:1", ...) overrides the automatic choice.
    """
    if prefer:
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def set_threads(cpus: float | None = None) -> int:
    """Use as many intra-op threads as CPUs were granted (Ray sets OMP_NUM_THREADS=1 in workers)."""
    n = int(cpus) if cpus else (os.cpu_count() or 1)
    n = max(1, n)
    torch.set_num_threads(n)
    return n
