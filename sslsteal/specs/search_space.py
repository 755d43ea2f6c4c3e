"""Search-space syntax in sweep YAML (Ray Tune's domains are built from it in `sslsteal.orchestration.tune_space`).

Any value may be written as a one-key mapping: `{grid: [a, b]}`, `{choice: [a, b]}`, `{uniform: [low, high]}`,
`{loguniform: [low, high]}` or `{randint: [low, high]}` (high exclusive, as in Ray Tune).
"""

from __future__ import annotations

import copy
import itertools
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sslsteal.specs.base import ConfigError

KINDS = ("grid", "choice", "uniform", "loguniform", "randint")
Path_ = tuple[str, ...]


@dataclass(frozen=True)
class SearchSpace:
    """One searched value: its kind and arguments (values for grid/choice, bounds otherwise)."""

    kind: str
    args: tuple[Any, ...]

    def candidates(self) -> list[Any]:
        """Values to validate: every listed value, or the bounds of a range (randint's high is exclusive)."""
        if self.kind in ("grid", "choice"):
            return list(self.args)
        low, high = self.args
        return [low, high - 1] if self.kind == "randint" else [low, high]

    def sample(self, rng: random.Random) -> Any:
        """One value drawn as Tune would (used for previews only)."""
        if self.kind == "choice":
            return rng.choice(self.args)
        low, high = self.args
        if self.kind == "uniform":
            return rng.uniform(low, high)
        if self.kind == "loguniform":
            return math.exp(rng.uniform(math.log(low), math.log(high)))
        return rng.randrange(low, high)


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def parse_space(value: Any, key: str) -> SearchSpace | None:
    """The search space `value` denotes, None for a plain value; ConfigError naming `key` when malformed."""
    if not (isinstance(value, dict) and len(value) == 1 and next(iter(value)) in KINDS):
        return None
    kind, args = next(iter(value.items()))
    where = f"{key}.{kind}"
    if not isinstance(args, list) or not args:
        raise ConfigError([f"{where}: expected a non-empty list"])
    if kind in ("grid", "choice"):
        return SearchSpace(kind, tuple(args))
    if len(args) != 2 or not all(_number(a) for a in args):
        raise ConfigError([f"{where}: expected [low, high] numbers, got {args!r}"])
    low, high = args
    if not low < high:
        raise ConfigError([f"{where}: low {low} must be below high {high}"])
    if kind == "loguniform" and low <= 0:
        raise ConfigError([f"{where}: bounds must be positive, got {low}"])
    if kind == "randint" and not all(isinstance(a, int) for a in args):
        raise ConfigError([f"{where}: bounds must be integers, got {args!r}"])
    return SearchSpace(kind, (low, high))


def find_spaces(tree: Any, prefix: Path_ = ()) -> dict[Path_, SearchSpace]:
    """Every search space in a nested mapping, by key path; all malformed ones reported together."""
    found: dict[Path_, SearchSpace] = {}
    problems: list[str] = []
    if not isinstance(tree, dict):
        return found
    for key, value in tree.items():
        path = (*prefix, str(key))
        try:
            space = parse_space(value, ".".join(path))
        except ConfigError as exc:
            problems += exc.problems
            continue
        if space is not None:
            found[path] = space
        elif isinstance(value, dict):
            try:
                found.update(find_spaces(value, path))
            except ConfigError as exc:
                problems += exc.problems
    if problems:
        raise ConfigError(problems)
    return found


def substitute(tree: dict[str, Any], values: Mapping[Path_, Any]) -> dict[str, Any]:
    """A deep copy of `tree` with the value at each path replaced."""
    out = copy.deepcopy(tree)
    for path, value in values.items():
        node = out
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return out


def trial_count(spaces: dict[Path_, SearchSpace], num_samples: int = 1) -> int:
    """Trials Tune runs: the grid product times num_samples (each sample draws the random spaces anew)."""
    return math.prod(len(s.args) for s in spaces.values() if s.kind == "grid") * num_samples


def preview(spaces: dict[Path_, SearchSpace], num_samples: int = 1, limit: int = 5, seed: int = 0) -> list[dict[str, Any]]:
    """The first `limit` trials' searched values as {dotted key: value}, grid in Tune's order, samples drawn."""
    rng = random.Random(seed)
    grid = {p: s for p, s in spaces.items() if s.kind == "grid"}
    rows: list[dict[str, Any]] = []
    for _ in range(num_samples):
        for combo in itertools.product(*(s.args for s in grid.values())):
            row = {".".join(p): v for p, v in zip(grid, combo, strict=True)}
            row.update({".".join(p): s.sample(rng) for p, s in spaces.items() if s.kind != "grid"})
            rows.append(row)
            if len(rows) >= limit:
                return rows
    return rows
