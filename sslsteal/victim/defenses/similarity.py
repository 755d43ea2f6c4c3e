"""Similar-query detection (paper section 5.3, Tables 12-15): flag a query close to an earlier one of the same account."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from sslsteal.specs.defenses import DEFENSES, DetectorParams, SimilarityParams
from sslsteal.victim.defenses.base import Defense, standard_normal

PAPER_THRESHOLDS = {("head", "cosine"): 0.5, ("rep", "cosine"): 0.5, ("head", "l2"): 13.0, ("rep", "l2"): 18.0}
"""Middle rows of Tables 15 (cosine, head), 13 (l2, head) and 14 (l2, rep); cosine on rep has no table and reuses 0.5."""

CHUNK = 8192
"""History rows compared per matrix product, bounding the (batch, CHUNK) score matrix."""


class SimilarityDetector:
    """Keeps an account's query history and flags queries whose nearest earlier query is closer than the threshold."""

    def __init__(self, params: DetectorParams) -> None:
        self.params = params
        threshold = params.threshold if params.threshold is not None else PAPER_THRESHOLDS[params.space, params.metric]
        self.threshold = threshold
        # Closeness is cosine similarity or minus l2 distance, so both metrics flag `closeness > limit`.
        self.limit = threshold if params.metric == "cosine" else -threshold
        # Unit vectors lose nothing that matters in float16; raw l2 vectors keep float32 range and precision.
        self.dtype = torch.float16 if params.metric == "cosine" else torch.float32

    def init_state(self) -> dict[str, Any]:
        """Empty history (width fixed by the first query) and zero counters."""
        return {"history": torch.zeros(0, 0, dtype=self.dtype), "detections": 0}

    def _closeness(self, q: Tensor, h: Tensor) -> Tensor:
        """(len(q), len(h)) cosine similarities (rows already unit) or negated l2 distances."""
        return q @ h.T if self.params.metric == "cosine" else -torch.cdist(q, h)

    def __call__(self, state: dict[str, Any], rep: Tensor, head: Tensor) -> Tensor:
        """Flags (N,) for a batch, compared with the history and the batch's earlier rows; then adds the batch to the history."""
        q = (head if self.params.space == "head" else rep).detach().float()
        if self.params.metric == "cosine":
            q = F.normalize(q, dim=1)
        n = q.shape[0]
        within = self._closeness(q, q).masked_fill(torch.ones(n, n, dtype=torch.bool, device=q.device).triu(), -torch.inf)
        best = within.max(dim=1).values if n else within.new_zeros(0)
        history = state["history"]
        if history.shape[1] != q.shape[1]:
            if history.shape[0]:
                raise ValueError(f"query width {q.shape[1]} differs from this account's history width {history.shape[1]}")
            history = torch.zeros(0, q.shape[1], dtype=self.dtype)
        for start in range(0, history.shape[0], CHUNK):
            chunk = history[start : start + CHUNK].to(q.device, torch.float32)
            best = torch.maximum(best, self._closeness(q, chunk).max(dim=1).values)
        flagged = best > self.limit
        history = torch.cat([history, q.cpu().to(self.dtype)])
        # Clone when trimming so the pickled state does not carry the dropped rows' storage.
        state["history"] = history[-self.params.max_history :].clone() if len(history) > self.params.max_history else history
        state["detections"] += int(flagged.sum())
        return flagged


class DetectingDefense(Defense):
    """Base of defenses that run the similar-query detector on every account's stream."""

    def __init__(self, params: DetectorParams, seed: int = 0) -> None:
        super().__init__(params, seed)
        self.detector = SimilarityDetector(params)

    def init_state(self, account: str) -> dict[str, Any]:
        return super().init_state(account) | self.detector.init_state()


@DEFENSES.implements("similarity")
class SimilarityDefense(DetectingDefense):
    """Answers flagged (near-repeat) queries with N(mean_big, sigma) noise instead of the truth (Table 12)."""

    params: SimilarityParams

    def apply(self, state: dict[str, Any], out: Tensor, rep: Tensor, head: Tensor) -> tuple[Tensor, Tensor]:
        state["queries"] += out.shape[0]
        flagged = self.detector(state, rep, head).to(out.device)
        answers = out.float().clone()
        n_flagged = int(flagged.sum())
        if n_flagged:
            noise = standard_normal(state, (n_flagged, *out.shape[1:]), out.device)
            answers[flagged] = noise * self.params.sigma + self.params.mean_big
        return answers, flagged
