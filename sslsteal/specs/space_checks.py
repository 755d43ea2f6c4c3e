"""Validating a tree that holds search spaces (sweep and optimize files alike): each candidate value is checked in
a concrete tree, and each problem is relabelled with the key of the space that caused it (`attack.loss.grid[2]: ...`,
or `... (with attack.method = 'recreate_head')` when the problem is about another key)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from typing import Any

from sslsteal.specs.attack import signed_answers
from sslsteal.specs.search_space import Path_, SearchSpace

Labeller = Callable[[Path_, SearchSpace, int | None], str]
"""(path, space, candidate index) -> how a problem names that candidate; index None is an interior point of a range."""
Candidates = Callable[[SearchSpace], list[tuple[int | None, Any]]]
"""A space -> the (label index, value) pairs to check."""
Context = Callable[[Path_, dict[Path_, Any]], dict[Path_, Any] | str]
"""(path, first values) -> the values to check `path`'s candidates among, or why `path` never applies."""

SIGN_KEYS: tuple[Path_, ...] = (("attack", "method"), ("attack", "loss"), ("attack", "loss_params"), ("defense",))
"""What `attack.signed_answers` reads: the spaces whose combinations the sign check enumerates."""


def label(path: Path_, space: SearchSpace, index: int | None) -> str:
    """`attack.loss.grid[2]`, `attack.lr.loguniform.low` / `.high`, or `attack.lr.uniform` for an interior point."""
    key = ".".join(path)
    if index is None:
        return f"{key}.{space.kind}"
    if space.kind in ("grid", "choice"):
        return f"{key}.{space.kind}[{index}]"
    return f"{key}.{space.kind}.{'low' if index == 0 else 'high'}"


def under(problem: str, key: str) -> bool:
    """Whether a problem line is about `key` (or a key inside it)."""
    return problem.startswith(key + ":") or problem.startswith(key + ".")


def relabel(problem: str, varied: Mapping[Path_, tuple[int | None, Any]], axes: Mapping[Path_, SearchSpace], name: Labeller = label) -> str:
    """`problem` with the key of the varied space it is about replaced by its candidate's label, and the other varied
    values appended as `(with key = value)` (a space labelled under another key, e.g. `optimize.budgets[1]`, by its label)."""
    shown = []
    owned = False
    for path, (index, value) in varied.items():
        key, where = ".".join(path), name(path, axes[path], index)
        if not owned and under(problem, key):
            problem, owned = problem.replace(key, where, 1), True
        else:
            shown.append(f"{key if where.startswith(key) else where} = {value!r}")
    return f"{problem} (with {', '.join(shown)})" if shown else problem


def first_values(axes: Mapping[Path_, SearchSpace]) -> dict[Path_, Any]:
    """The fallback tree's values: each space's first candidate."""
    return {path: space.candidates()[0] for path, space in axes.items()}


def listed(space: SearchSpace) -> list[tuple[int | None, Any]]:
    """Every listed value, or both bounds of a range."""
    return list(enumerate(space.candidates()))


def candidate_problems(
    axes: Mapping[Path_, SearchSpace],
    problems_of: Callable[[Mapping[Path_, Any]], list[str]],
    *,
    name: Labeller = label,
    candidates: Candidates = listed,
    context: Context | None = None,
) -> list[str]:
    """Problems of the fallback tree, then those each other candidate adds when it alone changes (within `context`,
    the first values by default), each labelled with its space; an interior point is skipped once a bound failed."""
    firsts = first_values(axes)
    base = problems_of(firsts)
    out: list[str] = []
    for problem in base:
        owner = next((p for p in axes if under(problem, ".".join(p))), None)
        out.append(relabel(problem, {owner: (0, firsts[owner])}, axes, name) if owner else problem)
    for path, space in axes.items():
        where = firsts if context is None else context(path, firsts)
        if isinstance(where, str):
            out.append(where)
            continue
        at_firsts = where == firsts
        known = base if at_firsts else problems_of(where)
        bounds_bad = at_firsts and any(p.startswith(name(path, space, 0)) for p in out)
        for index, value in candidates(space):
            if (at_firsts and index == 0) or (index is None and bounds_bad):
                continue
            for problem in problems_of({**where, path: value}):
                if problem not in known:
                    out.append(relabel(problem, {path: (index, value)}, axes, name))
                    bounds_bad = True
    return list(dict.fromkeys(out))


def _overlaps(a: Path_, b: Path_) -> bool:
    """One path is a prefix of the other (a grid over a whole section holds the keys inside it)."""
    return a[: len(b)] == b[: len(a)]


def signed_answer_problems(axes: Mapping[Path_, SearchSpace], concrete: Callable[[Mapping[Path_, Any]], dict[str, Any]], name: Labeller = label) -> list[str]:
    """`attack.signed_answers` in every combination of the searched method, loss and defense values (a loss from one
    space meets a defense from another), built by `concrete`; one line per candidate of the key a problem is about."""
    reads = [path for path in axes if any(_overlaps(path, key) for key in SIGN_KEYS)]
    firsts = first_values(axes)
    out: dict[str, str] = {}
    for combo in itertools.product(*(enumerate(axes[path].candidates()) for path in reads)):
        picked = dict(zip(reads, combo, strict=True))
        tree = concrete({**firsts, **{path: value for path, (_, value) in picked.items()}})
        problem = signed_answers(tree["attack"], tree["defense"])
        if problem is None:
            continue
        owner = next((path for path in reads if under(problem, ".".join(path))), None)
        head = name(owner, axes[owner], picked[owner][0]) if owner else problem.split(":", 1)[0]
        varied = {path: pick for path, pick in picked.items() if path == owner or pick[0] != 0}
        out.setdefault(head, relabel(problem, varied, axes, name))
    return list(out.values())
