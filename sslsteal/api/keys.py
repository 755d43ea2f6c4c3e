"""KEYS.yaml: the API's accounts, each an API key with its own budget and defense. Keys are stored as SHA-256 digests
(or read from the server's environment), compared in constant time, and never logged or echoed."""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from sslsteal.specs.base import ConfigError, StrictModel, load, repeated
from sslsteal.specs.defenses import defense_params


def digest(key: str) -> str:
    """The SHA-256 hex digest a key is stored and compared as."""
    return hashlib.sha256(key.encode()).hexdigest()


class KeySpec(StrictModel):
    """One account: its name (what usage and logs show), its key as a digest or an environment variable, its budget
    and its defense."""

    name: str = Field(..., min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    key_sha256: str | None = Field(
        None, pattern=r"^[0-9a-f]{64}$", description="hex SHA-256 of the key: python -c \"import hashlib; print(hashlib.sha256(b'KEY').hexdigest())\""
    )
    key_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="an environment variable of the server holding the key")
    budget: int | None = Field(None, gt=0, description="images this key may have answered; the service's default when null")
    defense: dict[str, Any] | None = Field(None, description="this account's defense; the service's default when null")

    @model_validator(mode="after")
    def _one_key(self) -> KeySpec:
        if (self.key_sha256 is None) == (self.key_env is None):
            raise ValueError(f"account {self.name}: give exactly one of key_sha256, key_env")
        return self

    @field_validator("defense")
    @classmethod
    def _valid_defense(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is not None:
            name, _ = defense_params(v)
            if name == "pow":
                raise ValueError("pow: proof of work is not offered over HTTP (its challenges need a client that solves them); use it through sweeps")
        return v


class KeysSpec(StrictModel):
    """The accounts of one served victim."""

    accounts: list[KeySpec] = Field(..., min_length=1)

    @field_validator("accounts")
    @classmethod
    def _distinct(cls, accounts: list[KeySpec]) -> list[KeySpec]:
        twice = repeated([a.name for a in accounts])
        if twice:
            raise ValueError(f"account names must be distinct: {', '.join(twice)} appear twice")
        return accounts


@dataclass(frozen=True)
class Account:
    """A resolved account: name, key digest, budget and defense (None: the service's defaults)."""

    name: str
    digest: str
    budget: int | None
    defense: dict[str, Any] | None


def load_keys(path: str | Path) -> list[Account]:
    """The accounts of a KEYS.yaml, keys read from the environment where it says; ConfigError naming the problem."""
    spec = load(KeysSpec, path)
    accounts = []
    for i, entry in enumerate(spec.accounts):
        if entry.key_env is not None:
            key = os.environ.get(entry.key_env)
            if not key:
                raise ConfigError([f"accounts[{i}].key_env: the environment variable {entry.key_env} is not set or empty"], str(path))
            hashed = digest(key)
        else:
            assert entry.key_sha256 is not None
            hashed = entry.key_sha256
        accounts.append(Account(entry.name, hashed, entry.budget, entry.defense))
    digests = [a.digest for a in accounts]
    if len(set(digests)) != len(digests):
        raise ConfigError(["accounts: two accounts share one key; each key must name one account"], str(path))
    return accounts


def find_account(accounts: list[Account], key: str | None) -> Account | None:
    """The account whose key this is, or None; every account is compared, in constant time, whatever matches."""
    if not key:
        return None
    presented = digest(key)
    found = None
    for account in accounts:
        if hmac.compare_digest(presented, account.digest):
            found = account
    return found
