"""The shared victim: one process serving representations to many attacker accounts.

`VictimService` is a plain class (usable in-process) that Ray runs as a named, restartable, threaded
actor (`sslsteal.orchestration.actor.create_service`). Every account has a budget, its own defense state and its own lock; requests of
different accounts run concurrently, requests of one account in order. What must survive a restart
(queries used, detections, proof-of-work paid, defense state) is written to `state_dir` before the answer
leaves, and read back when Ray reruns the constructor.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sslsteal.core.fileio import atomic_write
from sslsteal.specs.victim import ServiceSpec
from sslsteal.victim import pow as hashcash
from sslsteal.victim.defenses import Defense
from sslsteal.victim.errors import InvalidQuery, ProofOfWorkRequired, QueryBudgetExceeded, UnknownAccount


@dataclass
class Account:
    """One attacker account: budget, usage, its defense's config and state (all picklable)."""

    name: str
    budget: int
    defense_config: dict[str, Any]
    used: int = 0
    detections: int = 0
    pow_hashes: float = 0.0
    defense: dict[str, Any] = field(default_factory=dict)
    answered: dict[str, str] = field(default_factory=dict)
    """Request ids of the latest idempotent requests -> the digest of what they asked (oldest first)."""
    pending: hashcash.Challenge | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def snapshot(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "budget": self.budget,
            "defense_config": self.defense_config,
            "used": self.used,
            "detections": self.detections,
            "pow_hashes": self.pow_hashes,
            "defense": self.defense,
            "answered": self.answered,
        }

    def stats(self) -> dict[str, Any]:
        return {
            "account": self.name,
            "budget": self.budget,
            "defense": self.defense_config.get("name", "none"),
            "queries_used": self.used,
            "detections": self.detections,
            "pow_hashes": self.pow_hashes,
        }


ACCEPTED_NUMPY = tuple(np.dtype(t) for t in ("uint8", "float16", "float32", "float64"))
"""Numpy dtypes a request may use; anything else (object, strings, bool, ints, complex, structured) is refused."""


class VictimService:
    """Serves `embed(images, account)` from a victim checkpoint with per-account budgets and defenses."""

    def __init__(self, checkpoint: str | bytes, spec: dict[str, Any] | None = None) -> None:
        from sslsteal.core.device import select_device, set_threads
        from sslsteal.victim.checkpoint import load_victim

        self.spec = ServiceSpec.model_validate(spec or {})
        set_threads(max(1.0, self.spec.num_cpus))
        self.device = select_device()
        self.victim = load_victim(checkpoint).to(self.device).eval()
        self._defenses: dict[str, Defense] = {}
        self.input_shape = (3, 32, 32)
        self._accounts: dict[str, Account] = {}
        self._answers: dict[tuple[str, str], np.ndarray] = {}  # idempotent answers kept in memory (no state_dir)
        self._registry_lock = threading.Lock()
        self._state_dir = Path(self.spec.state_dir) if self.spec.state_dir else None
        self._restore()

    # -- accounts ---------------------------------------------------------------------------------
    def open_account(self, account: str, budget: int | None = None, defense: dict[str, Any] | None = None) -> dict[str, Any]:
        """Create `account` with its budget and defense (the service defaults when None); opening it again changes nothing.

        Per-account defenses let one shared victim serve a sweep over defense parameters.
        """
        name = self._check_account(account)
        return self._open(lambda: name, budget, defense)

    def open_fresh_account(self, prefix: str, budget: int | None = None, defense: dict[str, Any] | None = None) -> dict[str, Any]:
        """Open a new account `<prefix>.<n>` (n = 1, 2, ...) never used before, so a retried trial gets a fresh budget."""
        base = self._check_account(prefix)

        def fresh() -> str:
            n = 1
            while f"{base}.{n}" in self._accounts:  # accounts are never removed, so this is one past the last attempt
                n += 1
            return f"{base}.{n}"

        return self._open(fresh, budget, defense)

    def _open(self, choose_name: Callable[[], str], budget: int | None, defense: dict[str, Any] | None) -> dict[str, Any]:
        """Validate budget and defense, then create the account `choose_name()` (called under the registry lock) if new."""
        from sslsteal.specs.base import ConfigError

        if budget is not None and (not isinstance(budget, int) or isinstance(budget, bool) or budget <= 0):
            raise InvalidQuery(f"budget must be a positive int, got {budget!r}")
        config = dict(defense) if defense is not None else dict(self.spec.defense)
        try:
            guard = self._defense(config)
        except ConfigError as exc:
            raise InvalidQuery(str(exc).replace("\n", "; ")) from None
        with self._registry_lock:
            name = choose_name()
            acc = self._accounts.get(name)
            if acc is None:
                acc = Account(name, budget or self.spec.budget, config, defense=guard.init_state(name))
                self._accounts[name] = acc
                self._persist(acc)
        return acc.stats()

    def _defense(self, config: dict[str, Any]) -> Defense:
        """The defense for a config, built once and shared by the accounts using it (their states stay separate)."""
        from sslsteal.victim.defenses import build_defense

        key = json.dumps(config, sort_keys=True, default=str)
        if key not in self._defenses:
            self._defenses[key] = build_defense(config, seed=self.spec.seed)
        return self._defenses[key]

    def stats(self, account: str) -> dict[str, Any]:
        """Queries used, detections and proof-of-work paid by `account`."""
        return self._get(account).stats()

    def info(self) -> dict[str, Any]:
        """How the victim runs: process, device, shapes (for tests and dashboards); the actor adds its node and GPUs."""
        return {
            "node_id": None,
            "gpu_ids": [],
            "pid": os.getpid(),
            "device": str(self.device),
            "victim": self.victim.spec.key,
            "input_shape": self.input_shape,
            "rep_dim": self.victim.encoder.dim,
            "head_dim": None if self.victim.head is None else self.victim.head.out_dim,
            "default_defense": self.spec.defense.get("name", "none"),
            "accounts": len(self._accounts),
        }

    # -- proof of work ----------------------------------------------------------------------------
    def challenge(self, account: str) -> hashcash.Challenge | None:
        """The HashCash challenge the account must solve before its next request, or None when free."""
        acc = self._get(account)
        bits = self._defense(acc.defense_config).pow_bits(acc.defense)
        if bits <= 0 or self.spec.pow_mode == "charge":
            return None
        with acc.lock:
            acc.pending = hashcash.issue(bits)
            return acc.pending

    def _pay(self, acc: Account, proof: tuple[hashcash.Challenge, int] | None) -> None:
        bits = self._defense(acc.defense_config).pow_bits(acc.defense)
        if bits <= 0:
            return
        if self.spec.pow_mode == "charge":
            acc.pow_hashes += hashcash.expected_hashes(bits)
            return
        if acc.pending is None:
            acc.pending = hashcash.issue(bits)
            raise ProofOfWorkRequired(f"account {acc.name!r} must solve a {bits}-bit challenge first")
        if proof is None or proof[0] != acc.pending or not hashcash.verify(proof[0], int(proof[1])):
            raise ProofOfWorkRequired(f"account {acc.name!r}: missing or wrong proof of work for the pending {acc.pending.bits}-bit challenge")
        acc.pow_hashes += hashcash.expected_hashes(acc.pending.bits)
        acc.pending = None

    # -- serving ----------------------------------------------------------------------------------
    def embed(
        self, images: Any, account: str, head: bool = False, proof: tuple[hashcash.Challenge, int] | None = None, request_id: str | None = None
    ) -> np.ndarray:
        """Representations (or head outputs z when `head`) of a uint8 or [0,1] float batch, as float32.

        Each image answered counts one query; a request that would exceed the budget is refused whole. With a
        `request_id` the request is answered and charged once: a retry with the same id and the same images gets
        the stored answer free (the latest `spec.idempotent_requests` ids per account are kept, on disk with
        `state_dir`), and the same id with other images is refused.
        """
        acc = self._get(account)
        if head and self.victim.head is None:
            raise InvalidQuery(f"victim {self.victim.spec.key} has no projection head (an external encoder): query its representations")
        x = self._validate(images)
        n = len(x)
        digest = None if request_id is None else self._request_digest(request_id, x, head)
        with acc.lock:
            if request_id is not None and request_id in acc.answered:
                if acc.answered[request_id] != digest:
                    raise InvalidQuery(f"request id {request_id!r:.80} was used before for other images; use a new id for a new request")
                return self._stored_answer(acc, request_id)
            if acc.used + n > acc.budget:
                raise QueryBudgetExceeded(f"account {acc.name!r}: request for {n} images exceeds the budget ({acc.used} of {acc.budget} used)")
            self._pay(acc, proof)
            with torch.inference_mode():
                batch = x.to(self.device, non_blocking=True)
                batch = batch.float().div_(255.0) if batch.dtype == torch.uint8 else batch.float()
                rep = self.victim.encoder(batch).float()
                z = rep if self.victim.head is None else self.victim.head(rep).float()  # no head: head-space defenses read representations
            answer, flagged = self._defense(acc.defense_config).apply(acc.defense, z if head else rep, rep, z)
            out = answer.float().cpu().numpy()
            evicted = [] if digest is None else self._store_answer(acc, str(request_id), digest, out)  # before the charge that records it
            acc.used += n
            acc.detections += int(flagged.sum())
            self._persist(acc)
            for old in evicted:  # only once the account no longer lists them
                self._drop_answer(acc.name, old)
            return out

    # -- idempotent requests ----------------------------------------------------------------------
    @staticmethod
    def _request_digest(request_id: Any, x: torch.Tensor, head: bool) -> str:
        """What a request id stands for: the images (dtype, shape, bytes) and whether the head was asked for."""
        if not isinstance(request_id, str) or not 0 < len(request_id) <= 200:
            raise InvalidQuery(f"request id must be a non-empty string of at most 200 characters, got {type(request_id).__name__}")
        h = hashlib.sha256(f"{x.dtype}|{tuple(x.shape)}|{head}|".encode())
        h.update(x.contiguous().numpy().tobytes())
        return h.hexdigest()

    def _answer_path(self, account: str, request_id: str) -> Path:
        assert self._state_dir is not None
        return self._state_dir / "answers" / f"{hashlib.sha256(f'{account}|{request_id}'.encode()).hexdigest()[:32]}.npy"

    def _store_answer(self, acc: Account, request_id: str, digest: str, answer: np.ndarray) -> list[str]:
        """Keep `answer` for `request_id` and forget the account's oldest ids beyond the window, returned so that
        their answers are dropped once the account is persisted (the caller holds acc.lock)."""
        if self._state_dir is not None:
            atomic_write(self._answer_path(acc.name, request_id), lambda f: np.save(f, answer, allow_pickle=False))
        else:
            self._answers[(acc.name, request_id)] = answer
        acc.answered[request_id] = digest
        evicted = list(acc.answered)[: max(0, len(acc.answered) - self.spec.idempotent_requests)]
        for old in evicted:
            del acc.answered[old]
        return evicted

    def _drop_answer(self, account: str, request_id: str) -> None:
        if self._state_dir is not None:
            self._answer_path(account, request_id).unlink(missing_ok=True)
        else:
            self._answers.pop((account, request_id), None)

    def _stored_answer(self, acc: Account, request_id: str) -> np.ndarray:
        if self._state_dir is None:
            return self._answers[(acc.name, request_id)]
        return np.load(self._answer_path(acc.name, request_id), allow_pickle=False)

    # -- validation -------------------------------------------------------------------------------
    @staticmethod
    def _check_account(account: Any) -> str:
        if not isinstance(account, str) or not account or len(account) > 200:
            raise InvalidQuery(f"account must be a non-empty string of at most 200 characters, got {type(account).__name__} {account!r:.50}")
        return account

    def _get(self, account: Any) -> Account:
        name = self._check_account(account)
        acc = self._accounts.get(name)
        if acc is None:
            raise UnknownAccount(f"account {name!r} was never opened (open_account first)")
        return acc

    def _validate(self, images: Any) -> torch.Tensor:
        if isinstance(images, np.ndarray):
            if images.dtype not in ACCEPTED_NUMPY:
                raise InvalidQuery(f"images must be uint8 or float, got numpy {images.dtype}")
            # arrays from Ray's object store are read-only and views may have negative strides; torch needs neither
            x = torch.from_numpy(np.array(images, copy=not images.flags.writeable or not images.flags.c_contiguous, order="C"))
        elif isinstance(images, torch.Tensor):
            if images.layout != torch.strided:
                raise InvalidQuery(f"images must be a dense tensor, got layout {images.layout}")
            x = images.detach().cpu()
        else:
            raise InvalidQuery(f"images must be a numpy array or torch tensor, got {type(images).__name__}")
        if x.dim() != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise InvalidQuery(f"images must have shape (N, {', '.join(map(str, self.input_shape))}), got {tuple(x.shape)}")
        if len(x) == 0:
            raise InvalidQuery("empty batch: send at least one image")
        if len(x) > self.spec.max_batch:
            raise InvalidQuery(f"batch of {len(x)} images exceeds max_batch {self.spec.max_batch}")
        if x.dtype == torch.uint8:
            return x
        if x.dtype not in (torch.float16, torch.float32, torch.float64, torch.bfloat16):
            raise InvalidQuery(f"images must be uint8 or float, got {x.dtype}")
        if not bool(torch.isfinite(x).all()):
            raise InvalidQuery("images contain NaN or infinite values")
        if float(x.min()) < 0.0 or float(x.max()) > 1.0:
            raise InvalidQuery(f"float images must lie in [0, 1], got range [{float(x.min()):.3g}, {float(x.max()):.3g}]")
        return x

    # -- persistence ------------------------------------------------------------------------------
    def _state_path(self, name: str) -> Path:
        assert self._state_dir is not None
        return self._state_dir / f"{hashlib.sha256(name.encode()).hexdigest()[:24]}.pkl"

    def _persist(self, acc: Account) -> None:
        if self._state_dir is None:
            return
        snapshot = acc.snapshot()
        atomic_write(self._state_path(acc.name), lambda f: pickle.dump(snapshot, f, protocol=pickle.HIGHEST_PROTOCOL))

    def _restore(self) -> None:
        if self._state_dir is None or not self._state_dir.is_dir():
            return
        for path in self._state_dir.glob("*.pkl"):
            with path.open("rb") as f:
                snap = pickle.load(f)
            self._accounts[snap["name"]] = Account(**snap)
