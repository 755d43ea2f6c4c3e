"""HashCash proof-of-work: the service issues a challenge, the client finds a nonce, the service checks it in one hash."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

DIGEST_BITS = 256
NONCE_BYTES = 8


@dataclass(frozen=True)
class Challenge:
    """Find a nonce with sha256(prefix + nonce as 8 big-endian bytes) starting with `bits` zero bits."""

    prefix: bytes
    bits: int
    issued: float


def issue(bits: int) -> Challenge:
    """A fresh challenge with 16 random prefix bytes, so solutions cannot be precomputed or replayed."""
    if not 0 <= bits <= DIGEST_BITS:
        raise ValueError(f"bits must be in [0, {DIGEST_BITS}], got {bits}")
    return Challenge(secrets.token_bytes(16), bits, time.time())


def leading_zero_bits(digest: bytes) -> int:
    """Number of leading zero bits of a byte string."""
    value = int.from_bytes(digest, "big")
    return len(digest) * 8 - value.bit_length()


def _meets(digest: bytes, bits: int) -> bool:
    return int.from_bytes(digest, "big") >> (DIGEST_BITS - bits) == 0


def verify(challenge: Challenge, nonce: int) -> bool:
    """Whether `nonce` solves the challenge (one hash; out-of-range nonces fail)."""
    if not 0 <= nonce < 2 ** (8 * NONCE_BYTES):
        return False
    return _meets(hashlib.sha256(challenge.prefix + nonce.to_bytes(NONCE_BYTES, "big")).digest(), challenge.bits)


def solve(challenge: Challenge, max_hashes: int | None = None) -> tuple[int, int]:
    """(nonce, hashes tried): the client's brute-force search from nonce 0; RuntimeError after `max_hashes` misses."""
    base = hashlib.sha256(challenge.prefix)
    nonce = 0
    while max_hashes is None or nonce < max_hashes:
        h = base.copy()
        h.update(nonce.to_bytes(NONCE_BYTES, "big"))
        if _meets(h.digest(), challenge.bits):
            return nonce, nonce + 1
        nonce += 1
    raise RuntimeError(f"no solution to a {challenge.bits}-bit challenge within {max_hashes} hashes")


def expected_hashes(bits: int) -> float:
    """Mean hashes a client needs for `bits` (2**bits): the cost to charge when not burning CPU on real solving."""
    return 2.0**bits
