"""Bucks for Buckets (B4B, Dubinski et al., NeurIPS 2023): noise grows with the share of the embedding space an
account's queries cover (LSH buckets), and secret per-account transformations stop sybils from pooling answers.

The defaults follow the authors' scripts: coverage in % of 2**12 buckets averaged over 20 independent hyperplane
families, sigma(n) = lam * (exp(ln(alpha / lam) * n / beta) - 1) with lam 1e-7, alpha 1, beta 80, and an affine map
(scale and shift per dimension, each uniform in [-1, 1]) followed by padding with random dimensions and a shuffle.
The polynomial calibration, one hyperplane family and the rotation are ours (docs/defenses.md).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from sslsteal.specs.defenses import DEFENSES, B4BParams
from sslsteal.victim.defenses.base import Defense, account_seed, no_flags, seeded_generator, standard_normal

SCALE_RANGE = 2.0
"""The rotation's per-dimension secret scales are log-uniform in [1/SCALE_RANGE, SCALE_RANGE]."""


def exponential_sigma(percent: Tensor, lam: float, alpha: float, beta: float) -> Tensor:
    """The authors' cost: lam * (exp(ln(alpha / lam) * n / beta) - 1) at n % coverage, never below 0."""
    return (lam * (torch.exp(math.log(alpha / lam) * percent / beta) - 1)).clamp(min=0)


@DEFENSES.implements("b4b")
class B4BDefense(Defense):
    """Answers T_account(out + N(0, sigma(coverage))), coverage counted after each query in order."""

    params: B4BParams

    def init_state(self, account: str) -> dict[str, Any]:
        """Counters, noise generator, no visited bucket yet in any family, and the seed of the account's secret map."""
        visited = torch.zeros(self.params.projections, 2**self.params.n_planes, dtype=torch.bool)
        return super().init_state(account) | {"visited": visited, "transform_seed": account_seed(self.seed, account)}

    @staticmethod
    def coverage(state: dict[str, Any]) -> float:
        """Share of buckets the account has visited, averaged over the hyperplane families."""
        return state["visited"].float().mean().item()

    def sigma(self, coverage: Tensor) -> Tensor:
        """Noise std for each coverage value (a share in [0, 1])."""
        p = self.params
        assert p.alpha is not None and p.beta is not None  # filled in by the calibration's defaults
        if p.calibration == "exponential":
            return exponential_sigma(100.0 * coverage, p.lam, p.alpha, p.beta)
        return p.sigma0 + p.alpha * coverage.pow(p.beta)

    def buckets(self, vectors: Tensor) -> Tensor:
        """Each row's bucket in every family, shape (projections, rows): the sign pattern against hyperplanes shared by
        all accounts (fixed by the seed)."""
        gen = seeded_generator(self.seed, "", "b4b-planes")
        planes = torch.randn(self.params.projections, vectors.shape[1], self.params.n_planes, generator=gen).to(vectors.device)
        bits = (torch.einsum("nd,pdk->pnk", vectors.float(), planes) > 0).long()
        return (bits << torch.arange(self.params.n_planes, device=vectors.device)).sum(dim=2).cpu()

    def answer_width(self, width: int) -> int:
        return width + (self.params.pad_dim or width) if "pad" in self.params.transform else width

    def secret_transform(self, account: str, dim: int) -> dict[str, Tensor]:
        """The parts of the account's secret map for answers of width `dim`, fixed by (seed, account)."""
        return self._secret_parts(account_seed(self.seed, account), dim)

    def _secret_parts(self, transform_seed: int, dim: int) -> dict[str, Tensor]:
        """Affine: `scale`, `shift`; pad-and-shuffle: `pad` (fixed random dimensions) and `perm`; rotation: `matrix`."""
        kind = self.params.transform
        gen = torch.Generator().manual_seed(transform_seed)
        parts: dict[str, Tensor] = {}
        if kind == "rotation":
            q, r = torch.linalg.qr(torch.randn(dim, dim, generator=gen, dtype=torch.float64))
            q = q * torch.sign(torch.diagonal(r))  # Haar-distributed rotation
            scales = torch.exp((torch.rand(dim, generator=gen, dtype=torch.float64) * 2 - 1) * math.log(SCALE_RANGE))
            parts["matrix"] = (q.float() * scales.float())[:, torch.randperm(dim, generator=gen)]
        if kind in ("affine", "affine_pad_shuffle"):
            parts["scale"] = torch.rand(dim, generator=gen) * 2 - 1
            parts["shift"] = torch.rand(dim, generator=gen) * 2 - 1
        if kind in ("pad_shuffle", "affine_pad_shuffle"):
            pad = self.params.pad_dim or dim
            parts["pad"] = torch.randn(pad, generator=gen)
            parts["perm"] = torch.randperm(dim + pad, generator=gen)
        return parts

    def _transform(self, state: dict[str, Any], x: Tensor) -> Tensor:
        """The account's secret map applied to a batch (its parts built on first use and kept in the state)."""
        dim = x.shape[1]
        if state.get("transform_dim") != dim:
            state["transform_parts"], state["transform_dim"] = self._secret_parts(state["transform_seed"], dim), dim
        parts = {k: v.to(x.device) for k, v in state["transform_parts"].items()}
        if "matrix" in parts:
            x = x @ parts["matrix"]
        if "scale" in parts:
            x = x * parts["scale"] + parts["shift"]
        if "perm" in parts:
            x = torch.cat([x, parts["pad"].expand(len(x), -1)], dim=1)[:, parts["perm"]]
        return x

    def apply(self, state: dict[str, Any], out: Tensor, rep: Tensor, head: Tensor) -> tuple[Tensor, Tensor]:
        state["queries"] += out.shape[0]
        codes = self.buckets((rep if self.params.space == "rep" else head).detach())
        visited: Tensor = state["visited"]
        # Coverage after each query in order, so splitting a batch does not change the noise anyone gets.
        order = torch.arange(codes.shape[1])
        covered = torch.empty(codes.shape, dtype=torch.float64)
        for family, (row, seen) in enumerate(zip(codes, visited, strict=True)):
            unique, inverse = torch.unique(row, return_inverse=True)
            first = torch.full((len(unique),), len(row)).scatter_reduce(0, inverse, order, "amin")
            new = (first[inverse] == order) & ~seen[row]
            covered[family] = (seen.sum() + new.cumsum(0)).double() / seen.numel()
        state["visited"] = visited.scatter(1, codes, True)  # not in place: inputs may be inference tensors
        noise = standard_normal(state, tuple(out.shape), out.device) * self.sigma(covered.mean(0)).float().to(out.device)[:, None]
        answers = out.float() + noise
        if self.params.transform != "none":
            answers = self._transform(state, answers)
        return answers, no_flags(out)
