"""HashCash challenges: issue, solve, verify, and the bit counting they rest on."""

from __future__ import annotations

import dataclasses

import pytest

from sslsteal.victim import pow as hashcash


def test_leading_zero_bits_reference_values() -> None:
    assert hashcash.leading_zero_bits(b"\x00\x0f" + b"\xff" * 30) == 12
    assert hashcash.leading_zero_bits(b"\x80") == 0
    assert hashcash.leading_zero_bits(b"\x01\x00") == 7
    assert hashcash.leading_zero_bits(b"\x00" * 32) == 256


def test_issue_is_fresh_and_checked() -> None:
    a, b = hashcash.issue(8), hashcash.issue(8)
    assert len(a.prefix) == 16 and a.prefix != b.prefix and a.bits == 8 and a.issued > 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.bits = 0  # type: ignore[misc]
    with pytest.raises(ValueError):
        hashcash.issue(-1)


def test_solve_then_verify() -> None:
    challenge = hashcash.issue(12)
    nonce, tried = hashcash.solve(challenge)
    assert tried == nonce + 1 and hashcash.verify(challenge, nonce)
    assert not any(hashcash.verify(challenge, n) for n in range(nonce))  # the solver returns the first solution
    assert not hashcash.verify(challenge, -1) and not hashcash.verify(challenge, 2**64)


def test_known_solution_and_rejections() -> None:
    """sha256(16 zero bytes + (67023).to_bytes(8, 'big')) = 00003010...: 18 leading zero bits."""
    challenge = hashcash.Challenge(bytes(16), 16, 0.0)
    assert hashcash.solve(challenge) == (67023, 67024)
    assert hashcash.verify(challenge, 67023) and hashcash.verify(dataclasses.replace(challenge, bits=18), 67023)
    assert not hashcash.verify(dataclasses.replace(challenge, bits=19), 67023)
    assert not hashcash.verify(challenge, 67024)  # wrong nonce
    assert not hashcash.verify(dataclasses.replace(challenge, prefix=b"\x01" * 16), 67023)  # another challenge


def test_zero_bits_and_budget() -> None:
    assert hashcash.solve(hashcash.issue(0)) == (0, 1)
    with pytest.raises(RuntimeError):
        hashcash.solve(hashcash.issue(40), max_hashes=100)
    assert hashcash.expected_hashes(10) == 1024.0
