"""Bucks for Buckets (B4B, Dubiński et al., NeurIPS 2023): noise grows with embedding-space coverage; secret per-account maps stop sybils."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from sslsteal.specs.defenses import DEFENSES, B4BParams
from sslsteal.victim.defenses.base import Defense, account_seed, no_flags, seeded_generator, standard_normal

SCALE_RANGE = 2.0
"""Per-dimension secret scales are log-uniform in [1/SCALE_RANGE, SCALE_RANGE]."""


@DEFENSES.implements("b4b")
class B4BDefense(Defense):
    """Answers T_account(out + N(0, sigma(coverage))) with sigma = sigma0 + alpha * coverage**beta, per query."""

    params: B4BParams

    def init_state(self, account: str) -> dict[str, Any]:
        """Counters, noise generator, no visited bucket yet, and the seed of the account's secret transformation."""
        visited = torch.zeros(2**self.params.n_planes, dtype=torch.bool)
        return super().init_state(account) | {"visited": visited, "transform_seed": account_seed(self.seed, account)}

    @staticmethod
    def coverage(state: dict[str, Any]) -> float:
        """Share of buckets the account has visited."""
        return state["visited"].float().mean().item()

    def sigma(self, coverage: Tensor) -> Tensor:
        """Noise std for each coverage value."""
        return self.params.sigma0 + self.params.alpha * coverage.pow(self.params.beta)

    def buckets(self, vectors: Tensor) -> Tensor:
        """SimHash bucket of each row: the sign pattern against hyperplanes shared by all accounts (fixed by the seed)."""
        gen = seeded_generator(self.seed, "", "b4b-planes")
        planes = torch.randn(vectors.shape[1], self.params.n_planes, generator=gen).to(vectors.device)
        bits = (vectors.float() @ planes > 0).long()
        return (bits << torch.arange(self.params.n_planes, device=vectors.device)).sum(dim=1).cpu()

    def secret_transform(self, account: str, dim: int) -> tuple[Tensor, Tensor, Tensor]:
        """(orthogonal Q, positive scales, permutation) of the map x -> ((x @ Q) * scales)[:, perm], fixed by (seed, account)."""
        return self._secret_parts(account_seed(self.seed, account), dim)

    @staticmethod
    def _secret_parts(transform_seed: int, dim: int) -> tuple[Tensor, Tensor, Tensor]:
        """The secret parts drawn from a transform seed (QR of a Gaussian for Q, then scales, then the shuffle)."""
        gen = torch.Generator().manual_seed(transform_seed)
        q, r = torch.linalg.qr(torch.randn(dim, dim, generator=gen, dtype=torch.float64))
        q = q * torch.sign(torch.diagonal(r))  # Haar-distributed rotation
        scales = torch.exp((torch.rand(dim, generator=gen, dtype=torch.float64) * 2 - 1) * math.log(SCALE_RANGE))
        return q.float(), scales.float(), torch.randperm(dim, generator=gen)

    def _matrix(self, state: dict[str, Any], dim: int) -> Tensor:
        """The account's secret map as one (dim, dim) matrix, built on first use and kept in the state."""
        if state.get("matrix") is None or state["matrix"].shape[0] != dim:
            q, scales, perm = self._secret_parts(state["transform_seed"], dim)
            state["matrix"] = (q * scales)[:, perm]
        return state["matrix"]

    def apply(self, state: dict[str, Any], out: Tensor, rep: Tensor, head: Tensor) -> tuple[Tensor, Tensor]:
        state["queries"] += out.shape[0]
        codes = self.buckets((rep if self.params.space == "rep" else head).detach())
        visited: Tensor = state["visited"]
        # Coverage after each query in order, so splitting a batch does not change the noise anyone gets.
        unique, inverse = torch.unique(codes, return_inverse=True)
        order = torch.arange(len(codes))
        first = torch.full((len(unique),), len(codes)).scatter_reduce(0, inverse, order, "amin")
        new = (first[inverse] == order) & ~visited[codes]
        coverage = (visited.sum() + new.cumsum(0)).double() / visited.numel()
        state["visited"] = visited.index_fill(0, codes, True)  # not in place: inputs may be inference tensors
        noise = standard_normal(state, tuple(out.shape), out.device) * self.sigma(coverage).float().to(out.device)[:, None]
        answers = out.float() + noise
        if self.params.transform:
            answers = answers @ self._matrix(state, out.shape[1]).to(out.device)
        return answers, no_flags(out)
