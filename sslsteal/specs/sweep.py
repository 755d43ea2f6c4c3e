"""Sweep YAML -> a validated plan: fixed values and search spaces for attack, defense and evaluation.

Validation never starts Ray: every listed value of every search space (and both bounds of every range) is
checked against the same specs a single run uses, so is every combination of loss, method and defense values
for a loss that needs non-negative answers meeting signed ones, and all problems are reported together with key
paths such as `attack.loss.grid[2]`.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError

from sslsteal.specs.attack import AttackSpec
from sslsteal.specs.base import ConfigError, StrictModel, apply_overrides, errors_of, parse, read_yaml
from sslsteal.specs.defenses import defense_params
from sslsteal.specs.evaluate import EvaluateSpec
from sslsteal.specs.external import ExternalVictimSpec
from sslsteal.specs.protocol import protocol_problems
from sslsteal.specs.search_space import Path_, SearchSpace, find_spaces, preview, substitute, trial_count
from sslsteal.specs.space_checks import candidate_problems, signed_answer_problems
from sslsteal.specs.victim import RemoteVictimSpec, VictimRef, VictimSpec, read_victim

SEARCHABLE = ("attack", "defense", "evaluate")


class Resources(StrictModel):
    """What Ray reserves for each trial."""

    cpu: float = Field(1.0, gt=0)
    gpu: float = Field(0.0, ge=0)


class BulkInference(StrictModel):
    """Ray Data batch inference for large embedding jobs: an encoder's features over `min_images` images or more
    (a probe's train split, a fidelity set) are computed by a pool of `actors` Ray actors reserved beside each trial."""

    min_images: int = Field(100_000, gt=0, description="smaller sets are embedded in the trial's own process")
    actors: int = Field(1, gt=0)
    cpu: float = Field(1.0, gt=0, description="CPUs per actor")
    gpu: float = Field(0.0, ge=0, description="GPUs per actor (the trial's own resources are run.resources_per_trial)")
    batch_size: int = Field(1024, gt=0)


class RunSettings(StrictModel):
    """How the sweep runs: seeds, repetitions, concurrency, resources, retries."""

    seed: int = Field(0, description="seed of the search-space sampler (random spaces)")
    seeds: list[int] | None = Field(None, min_length=1, description="attacker seeds: every configuration is repeated once per seed (a grid over attack.seed)")
    num_samples: int = Field(1, gt=0, description="repetitions of the grid; random spaces are drawn anew each time")
    max_concurrent_trials: int = Field(2, gt=0)
    resources_per_trial: Resources = Field(default_factory=Resources)
    bulk_inference: BulkInference = Field(default_factory=BulkInference)
    max_failures: int = Field(2, ge=0, description="retries of a failed trial")
    data_root: str | None = None


class TrackingSpec(StrictModel):
    """Where results go: an MLflow tracking URI (a local SQLite file when null)."""

    uri: str | None = None


class SweepSpec(StrictModel):
    """The whole sweep file; `attack`, `defense` and `evaluate` may hold search spaces anywhere."""

    name: str = Field(..., min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    victim: VictimRef
    attack: dict[str, Any]
    defense: dict[str, Any] = Field(default_factory=lambda: {"name": "none"})
    evaluate: dict[str, Any] = Field(default_factory=dict)
    service: dict[str, Any] = Field(default_factory=dict, description="victim service options (budget default, limits, resources)")
    run: RunSettings = Field(default_factory=RunSettings)
    tracking: TrackingSpec = Field(default_factory=TrackingSpec)


@dataclass(frozen=True)
class SweepPlan:
    """A validated sweep: its spec, the searchable tree, its search spaces and the number of trials."""

    spec: SweepSpec
    tree: dict[str, Any]
    spaces: dict[Path_, SearchSpace]
    source: str

    @property
    def trials(self) -> int:
        return trial_count(self.spaces, self.spec.run.num_samples)

    def values(self, *path: str) -> list[Any]:
        """Every value `path` takes in this sweep (a grid's or choice's values, a range's bounds, a fixed value; [] if unset),
        also inside grids over whole sections such as `attack: {grid: [{...}, {...}]}`."""

        def walk(node: Any, at: Path_) -> list[Any]:
            out: list[Any] = []
            for value in self.spaces[at].candidates() if at in self.spaces else [node]:
                if len(at) == len(path):
                    out.append(value)
                elif isinstance(value, dict) and path[len(at)] in value:
                    out += walk(value[path[len(at)]], (*at, path[len(at)]))
            return out

        return walk(self.tree, ())

    def preview(self, limit: int = 5) -> list[dict[str, Any]]:
        return preview(self.spaces, self.spec.run.num_samples, limit, self.spec.run.seed)


def tree_problems(tree: dict[str, Any], victim: VictimSpec | ExternalVictimSpec | None) -> list[str]:
    """Every problem of one concrete (search-space-free) attack/defense/evaluate tree, the data protocol included."""
    problems: list[str] = []
    parsed: dict[str, Any] = {}
    for key, model in (("attack", AttackSpec), ("evaluate", EvaluateSpec)):
        try:
            parsed[key] = parse(model, tree[key])
        except ConfigError as exc:
            problems += [f"{key}{p.removeprefix('<top>')}" if p.startswith("<top>") else f"{key}.{p}" for p in exc.problems]
    if len(parsed) == 2:
        problems += protocol_problems(parsed["attack"], parsed["evaluate"], victim)
        if isinstance(victim, ExternalVictimSpec):
            problems += victim.refusals(parsed["attack"].method, parsed["evaluate"].ownership)
    try:
        _, defense = defense_params(tree["defense"])
    except ConfigError as exc:
        return problems + exc.problems
    transfer = parsed["evaluate"].transfer if "evaluate" in parsed else None
    moved = defense.moves_answers()
    if transfer is not None and "knockoff" in transfer.sources and moved is not None:
        problems.append(
            f"evaluate.transfer.sources: knockoff reads the victim's head on answered representations, which {moved} moves out of "
            "the victim's space; drop knockoff from the sources or set defense.transform: none"
        )
    return problems


def remote_problems(remote: RemoteVictimSpec, tree: dict[str, Any], spaces: dict[Path_, SearchSpace]) -> list[str]:
    """What no trial of a sweep over an endpoint may ask (`RemoteVictimSpec.refusals`), in every candidate tree."""
    found: list[str] = []
    read = {path: space for path, space in spaces.items() if path[0] in ("evaluate", "defense")}
    for combo in itertools.product(*(space.candidates() for space in read.values())):
        values = dict(zip(read, combo, strict=True))
        concrete = substitute(tree, values)
        try:
            evaluate = parse(EvaluateSpec, concrete["evaluate"])
        except ConfigError:
            continue  # reported by validate_tree
        found += remote.refusals(evaluate, (concrete["defense"] or {}).get("name", "none"))
    return list(dict.fromkeys(found))


def validate_tree(tree: dict[str, Any], spaces: dict[Path_, SearchSpace], victim: VictimSpec | ExternalVictimSpec | None = None) -> list[str]:
    """Problems of the base configuration (first candidate everywhere) and of every other candidate value, then of
    every combination of loss, method and defense values that feeds the loss signed answers it cannot read."""

    def concrete(values: Mapping[Path_, Any]) -> dict[str, Any]:
        return substitute(tree, values)

    return candidate_problems(spaces, lambda values: tree_problems(concrete(values), victim)) + signed_answer_problems(spaces, concrete)


def victim_spec(victim: str | VictimSpec | ExternalVictimSpec | RemoteVictimSpec, base: Path) -> tuple[VictimSpec | ExternalVictimSpec | None, list[str]]:
    """The victim's spec (None for a checkpoint, whose spec is read when it is loaded; an endpoint's `model`) and
    the problems finding it: a victim named by path must exist; a victim YAML must be a valid victim spec; an
    external encoder's files (relative to `base`, the folder of the file that names them) must exist."""
    if isinstance(victim, RemoteVictimSpec):
        spec, problems = victim_spec(victim.model, base)
        return spec, [p.replace("victim", "victim.model", 1) for p in problems]
    try:
        if isinstance(victim, ExternalVictimSpec):
            return victim.resolved(base), []
        if not isinstance(victim, str):
            return victim, []
        path = Path(victim) if Path(victim).is_absolute() or Path(victim).exists() else base / victim
        if not path.exists():
            return None, [f"victim: no such file {victim!r} (relative paths are resolved against the sweep file's folder)"]
        if path.suffix in (".pt", ".pth") or path.is_dir():
            return None, []
        return read_victim(path), []
    except ConfigError as exc:
        return None, [p if p.startswith("victim") else f"victim{p.removeprefix('<top>')}" if p.startswith("<top>") else f"victim.{p}" for p in exc.problems]


def cross_section_grid(tree: dict[str, Any], section: str) -> list[str]:
    """A grid over whole configurations of `section` with other keys beside it (`{grid: [...], queries: {grid: [...]}}`)
    becomes the grid of every configuration with every combination of those keys (in place); a key set both inside a
    configuration and beside the grid is a problem line."""
    node = tree.get(section)
    if not isinstance(node, dict) or not isinstance(node.get("grid"), list) or set(node) == {"grid"}:
        return []
    configs, shared = node["grid"], {k: v for k, v in node.items() if k != "grid"}
    clashes = sorted({k for c in configs if isinstance(c, dict) for k in c if k in shared})
    if clashes:
        return [f"{section}.{k}: set both beside {section}.grid and inside one of its configurations" for k in clashes]
    choices = [v["grid"] if isinstance(v, dict) and set(v) == {"grid"} and isinstance(v["grid"], list) else [v] for v in shared.values()]
    tree[section] = {
        "grid": [{**c, **dict(zip(shared, combo, strict=True))} if isinstance(c, dict) else c for c in configs for combo in itertools.product(*choices)]
    }
    return []


def with_seeds(tree: dict[str, Any], seeds: list[int] | None) -> list[str]:
    """Turn `run.seeds` into a grid over `attack.seed` (in place), beside a grid over whole attack configurations
    too (`cross_section_grid` then repeats each at each seed); a problem line when attack.seed is set as well."""
    if seeds is None:
        return []
    attack = tree["attack"]
    configs = attack["grid"] if isinstance(attack.get("grid"), list) else []
    if "seed" in attack or any(isinstance(c, dict) and "seed" in c for c in configs):
        return ["attack.seed: set by run.seeds in this sweep; remove one of them"]
    attack["seed"] = {"grid": list(seeds)}
    return []


def plan_sweep(path: str | Path, overrides: list[str] | None = None) -> SweepPlan:
    """Read, validate and plan a sweep file; ConfigError lists every problem with its key path."""
    source = str(path)
    raw = apply_overrides(read_yaml(path), overrides or [])
    problems: list[str] = []
    spec: SweepSpec | None = None
    try:
        spec = SweepSpec.model_validate(raw)
        tree = {key: copy.deepcopy(getattr(spec, key)) for key in SEARCHABLE}
    except ValidationError as exc:  # keep going: the searchable sections can still be checked
        problems += errors_of(exc)
        defaults = SweepSpec.model_fields
        tree = {key: raw.get(key, defaults[key].get_default(call_default_factory=True)) for key in SEARCHABLE}
        tree = {key: value for key, value in tree.items() if isinstance(value, dict)}
    victim: VictimSpec | ExternalVictimSpec | None = None
    if spec is not None:
        victim, found = victim_spec(spec.victim, Path(source).resolve().parent)
        problems += found
        if set(tree) == set(SEARCHABLE):
            seeded = with_seeds(tree, spec.run.seeds)
            crossed = [p for section in SEARCHABLE for p in cross_section_grid(tree, section)]
            problems += crossed or seeded
            if crossed:  # the sections cannot be planned as written
                raise ConfigError(list(dict.fromkeys(problems)), source)
    if set(tree) == set(SEARCHABLE):
        try:
            spaces = find_spaces(tree)
            problems += validate_tree(tree, spaces, victim)
            if spec is not None and isinstance(spec.victim, RemoteVictimSpec):
                problems += remote_problems(spec.victim, tree, spaces)
        except ConfigError as exc:
            problems += exc.problems
    if problems or spec is None:
        raise ConfigError(list(dict.fromkeys(problems)), source)
    return SweepPlan(spec, tree, spaces, source)
