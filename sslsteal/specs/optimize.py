"""Optimize YAML -> a validated plan: one Optuna study per query budget over the sweep's search spaces.

An optimize file is a sweep file (docs/sweeps.md) plus an `optimize:` section. Its search spaces are drawn by an
Optuna sampler, so they must be `choice`, `uniform`, `loguniform` or `randint` (a `grid` is rejected), and
`attack.queries` comes from `optimize.budgets`, one study each.

Some attack settings only mean something for some others, and the search knows it (`StudySpace`):
- `attack.loss_params.<name>` (searched or fixed) is used only when the trial's loss takes `<name>` (as declared
  in specs/losses.py; temperature: infonce, infonce_cross, softnn, supcon);
- `attack.strategy` is `augmented` whenever the method is `recreate_head` (when augmented is among its choices);
- `attack.views` is drawn only for the augmented strategy, `attack.head_epochs` and `attack.head_dim` only for
  recreate_head, `attack.head_hidden` only for recreate_head and access_head.
A value that does not apply is not drawn (Optuna records no parameter for it) and the attack's default is used.
Validation follows the same rules, checks every listed value and both bounds (and an interior point) of every
range, every budget against the query split, every combination of loss, method and defense for a loss that needs
non-negative answers meeting signed ones (`space_checks.signed_answer_problems`), and reports all problems
together with their key paths.
Planning reads YAML only: it starts no Ray and imports no Optuna.
"""

from __future__ import annotations

import copy
import functools
import itertools
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from sslsteal.core.urls import masked
from sslsteal.specs.attack import AttackSpec
from sslsteal.specs.base import ConfigError, StrictModel, apply_overrides, errors_of, read_yaml
from sslsteal.specs.losses import LOSSES
from sslsteal.specs.search_space import Path_, SearchSpace, find_spaces
from sslsteal.specs.space_checks import candidate_problems, label, listed, signed_answer_problems
from sslsteal.specs.sweep import SEARCHABLE, SweepPlan, SweepSpec, tree_problems

METHOD, STRATEGY, LOSS, QUERIES = ("attack", "method"), ("attack", "strategy"), ("attack", "loss"), ("attack", "queries")
SELECTORS = (METHOD, STRATEGY, LOSS)
"""Searched first: what applies of the rest depends on them."""
OBJECTIVE = re.compile(r"^val_acc(\.[A-Za-z0-9_-]+)?$|^fidelity\.(cosine|l2)$")
TEST_METRICS = re.compile(r"^(acc|acc_ratio|gain_recovered)(\.[A-Za-z0-9_-]+)?$")
MINIMIZED = ("fidelity.l2",)
CATEGORICAL_TYPES = (type(None), bool, int, float, str)


class SamplerSpec(StrictModel):
    """The Optuna sampler of every study."""

    name: Literal["tpe", "random"] = "tpe"
    n_startup_trials: int = Field(10, ge=0, description="random trials before TPE starts modelling the results (tpe only)")
    seed: int | None = Field(None, description="run.seed when null; a resumed study adds its trial count so it draws new points")


class PrunerSpec(StrictModel):
    """Stopping hopeless trials early on the per-epoch k-NN accuracy `val.knn_acc`: Ray Tune's ASHA, or its median
    stopping rule (a trial whose best value is below the median of the other trials' running means at an epoch stops)."""

    name: Literal["asha", "median", "none"] = "asha"
    grace_period: int = Field(1, gt=0, description="epochs every trial runs before it may be stopped")
    reduction_factor: float = Field(2.0, gt=1, description="asha: each rung keeps the best 1/reduction_factor")
    startup_trials: int = Field(5, ge=1, description="median: other trials that must have reached an epoch before a trial is compared there")
    monitor_images: int = Field(500, gt=0, description="evaluate.monitor_images when the sweep leaves it unset")


class OptimizeSpec(StrictModel):
    """The `optimize:` section: budgets (one study each), objective, trials and search settings."""

    budgets: list[int] = Field(..., min_length=1, description="attack.queries of each study")
    objective: str = Field(
        "val_acc",
        description="val_acc (= val_acc.<first downstream dataset>: a validation split of its train split), val_acc.<ds>, fidelity.cosine, fidelity.l2",
    )
    val_images: int = Field(
        2000, gt=0, description="evaluate.val_images when the sweep leaves it unset: downstream train images held out to score the val_acc objective"
    )
    direction: Literal["maximize", "minimize"] | None = Field(None, description="maximize, except minimize for fidelity.l2, when null")
    trials_per_budget: int = Field(8, gt=0, description="finished (complete or pruned) trials each study should hold")
    cover: list[str] = Field(default_factory=list, description="searched choice keys whose every value (combination) is tried first")
    cover_values: dict[str, Any] = Field(default_factory=dict, description="values of other searched keys in those first trials (the rest is drawn)")
    sampler: SamplerSpec = Field(default_factory=SamplerSpec)
    pruner: PrunerSpec = Field(default_factory=PrunerSpec)
    storage: str | None = Field(None, description="SQLAlchemy URL of the Optuna storage; sqlite:///<cwd>/optuna.db when null")

    @field_validator("budgets")
    @classmethod
    def _positive_distinct(cls, budgets: list[int]) -> list[int]:
        bad = [b for b in budgets if b <= 0]
        if bad:
            raise ValueError(f"budgets must be positive, got {bad[0]}")
        if len(set(budgets)) != len(budgets):
            raise ValueError(f"budgets must be distinct, got {budgets}")
        return budgets

    @field_validator("objective")
    @classmethod
    def _known_objective(cls, v: str) -> str:
        if TEST_METRICS.match(v):
            raise ValueError(f"{v!r} is scored on the test split, which is logged but never optimised; use val_acc (optionally .<dataset>)")
        if not OBJECTIVE.match(v):
            raise ValueError(f"unknown objective {v!r}; use val_acc, val_acc.<dataset>, fidelity.cosine or fidelity.l2")
        return v

    @field_validator("pruner", mode="before")
    @classmethod
    def _pruner_shorthand(cls, v: Any) -> Any:
        return {"name": "none" if v is None else v} if v is None or isinstance(v, str) else v

    @field_validator("storage")
    @classmethod
    def _sqlalchemy_url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            make_url(v)
        except ArgumentError:
            raise ValueError(f"not a SQLAlchemy URL: {v!r} (e.g. sqlite:///optuna.db or postgresql://host/db)") from None
        return v

    @model_validator(mode="after")
    def _cover_fits(self) -> OptimizeSpec:
        if len(set(self.cover)) != len(self.cover):
            raise ValueError(f"cover: keys must be distinct, got {self.cover}")
        return self

    @property
    def mode(self) -> Literal["max", "min"]:
        """Ray Tune's name for the direction."""
        return "min" if self.resolved_direction == "minimize" else "max"

    @property
    def resolved_direction(self) -> Literal["maximize", "minimize"]:
        return self.direction or ("minimize" if self.objective in MINIMIZED else "maximize")

    def storage_url(self) -> str:
        """The storage URL, a relative SQLite path made absolute (the file means the same from any directory)."""
        from sslsteal.core.urls import absolute

        return absolute(self.storage or f"sqlite:///{Path.cwd() / 'optuna.db'}")

    def resolve_objective(self, first_downstream: str) -> str:
        """The metric name a trial reports: `val_acc` -> `val_acc.<first downstream>`."""
        return f"{self.objective}.{first_downstream}" if "." not in self.objective else self.objective


# --- what applies to which trial ---------------------------------------------------------------------------------


def _loss_hparams(loss: Any) -> set[str] | None:
    """Hyperparameters `loss` takes; None when it is not a registered loss (validation reports that)."""
    entry = LOSSES.get(loss) if isinstance(loss, str) else None
    return None if entry is None else set(entry.model_fields)


def forced(path: Path_, at: Mapping[str, Any]) -> Any | None:
    """The value searched `path` must take given the trial's method/strategy/loss `at`, or None."""
    if path == STRATEGY and at["method"] == "recreate_head":
        return "augmented"
    return None


def unused(path: Path_, at: Mapping[str, Any]) -> str | None:
    """Why `path` does not apply given the trial's method/strategy/loss `at`; None when it does."""
    if len(path) == 3 and path[:2] == ("attack", "loss_params"):
        takes = _loss_hparams(at["loss"])
        return None if takes is None or path[2] in takes else f"loss {at['loss']} takes no {path[2]}"
    if path == ("attack", "views") and at["strategy"] != "augmented":
        return f"strategy {at['strategy']} sends one view per image"
    if path in (("attack", "head_epochs"), ("attack", "head_dim")) and at["method"] != "recreate_head":
        return f"method {at['method']} recreates no head"
    if path == ("attack", "head_hidden") and at["method"] == "direct":
        return "method direct trains no head"
    return None


def param_name(path: Path_) -> str:
    """Optuna's parameter name for a key path: Ray Tune's nested-key convention, `attack/loss_params/temperature`."""
    return "/".join(path)


def suggest(trial: Any, name: str, space: SearchSpace) -> Any:
    """Draw `space` from an Optuna trial (randint's high is exclusive, as in Ray Tune)."""
    if space.kind == "choice":
        return trial.suggest_categorical(name, list(space.args))
    low, high = space.args
    if space.kind == "uniform":
        return trial.suggest_float(name, low, high)
    if space.kind == "loguniform":
        return trial.suggest_float(name, low, high, log=True)
    if space.kind == "randint":
        return trial.suggest_int(name, low, high - 1)
    raise ValueError(f"{name}: {space.kind} cannot be drawn by Optuna")


def _place(tree: dict[str, Any], path: Path_, value: Any) -> None:
    node = tree
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value


def _remove(tree: dict[str, Any], path: Path_) -> None:
    node: Any = tree
    for key in path[:-1]:
        node = node.get(key)
        if not isinstance(node, dict):
            return
    node.pop(path[-1], None)


@dataclass(frozen=True)
class StudySpace:
    """The define-by-run search space of every study: draws the searched values that apply to a trial (selectors
    first) and adds the fixed values that depend on them. Picklable (Tune saves its searcher)."""

    spaces: tuple[tuple[Path_, SearchSpace], ...]
    selectors: dict[str, Any]
    loss_params: dict[str, Any]

    @classmethod
    def build(cls, tree: dict[str, Any], spaces: Mapping[Path_, SearchSpace]) -> StudySpace:
        attack = tree.get("attack", {})
        selectors = {p[-1]: attack.get(p[-1], AttackSpec.model_fields[p[-1]].default) for p in SELECTORS}
        order = [p for p in SELECTORS if p in spaces] + [p for p in spaces if p not in SELECTORS]
        fixed = attack.get("loss_params") if isinstance(attack.get("loss_params"), dict) else {}
        return cls(tuple((p, spaces[p]) for p in order), selectors, {k: v for k, v in fixed.items() if ("attack", "loss_params", k) not in spaces})

    def walk(self, pick: Callable[[Path_, SearchSpace], Any]) -> tuple[dict[Path_, Any], dict[Path_, Any]]:
        """(drawn values, dependent fixed values) of one trial; `pick` draws a searched value."""
        at = dict(self.selectors)
        picked: dict[Path_, Any] = {}
        constants: dict[Path_, Any] = {}
        for path, space in self.spaces:
            must = forced(path, at)
            if must is not None and must in space.candidates():
                value = constants[path] = must
            elif unused(path, at) is not None:
                continue
            else:
                value = picked[path] = pick(path, space)
            if path in SELECTORS:
                at[path[-1]] = value
        for key, value in self.loss_params.items():
            if unused(("attack", "loss_params", key), at) is None:
                constants[("attack", "loss_params", key)] = value
        return picked, constants

    def __call__(self, trial: Any) -> dict[str, Any]:
        """Define-by-run on an Optuna trial (`study.ask()`): its drawn and dependent values as a nested configuration,
        which Tune merges into the param_space of fixed values."""
        picked, constants = self.walk(lambda path, space: suggest(trial, param_name(path), space))
        out: dict[str, Any] = {}
        for path, value in {**picked, **constants}.items():
            _place(out, path, value)
        return out

    def base(self, tree: dict[str, Any]) -> dict[str, Any]:
        """`tree` without the searched keys and attack.loss_params (each trial's values are merged into it)."""
        out = copy.deepcopy(tree)
        for path, _ in self.spaces:
            _remove(out, path)
        _remove(out, ("attack", "loss_params"))
        return out

    def concrete(self, tree: dict[str, Any], values: Mapping[Path_, Any]) -> dict[str, Any]:
        """The trial configuration for searched `values` (as `walk` with those picks), attack.queries included."""
        picked, constants = self.walk(lambda path, _: values[path])
        out = self.base(tree)
        for path, value in {**picked, **constants}.items():
            _place(out, path, value)
        if QUERIES in values:
            _place(out, QUERIES, values[QUERIES])
        return out

    def applies(self, path: Path_, values: Mapping[Path_, Any]) -> bool:
        picked, _ = self.walk(lambda p, _: values[p])
        return path in picked


# --- validation ---------------------------------------------------------------------------------------------------


def _label(path: Path_, space: SearchSpace, index: int | None) -> str:
    """`label`, except that a budget is named by its place in optimize.budgets."""
    return f"optimize.budgets[{index}]" if path == QUERIES else label(path, space, index)


def _candidates(space: SearchSpace) -> list[tuple[int | None, Any]]:
    """(label index, value) to validate: every choice, both bounds of a range and, for float ranges, an interior
    point (a fractional value an integer field would refuse)."""
    out = listed(space)
    if space.kind in ("uniform", "loguniform"):
        low, high = space.args
        inner = low + 0.37 * (high - low) if space.kind == "uniform" else math.exp(math.log(low) + 0.37 * (math.log(high) - math.log(low)))
        out.append((None, inner))
    return out


def _never_used(path: Path_, space_: StudySpace, axes: Mapping[Path_, SearchSpace]) -> str:
    """Why searched `path` applies to no trial at all."""
    key = ".".join(path)

    def values(selector: Path_) -> str:
        return ", ".join(map(str, axes[selector].args if selector in axes else (space_.selectors[selector[-1]],)))

    if len(path) == 3 and path[1] == "loss_params":
        return f"{key}: no loss in attack.loss ({values(LOSS)}) takes {path[2]!r}"
    if path == STRATEGY:
        return f"{key}: always augmented, as attack.method is recreate_head ({values(METHOD)})"
    if path == ("attack", "views"):
        return f"{key}: never used: attack.strategy is never augmented ({values(STRATEGY)})"
    return f"{key}: never used with attack.method {values(METHOD)}"


def check_conditional(tree: dict[str, Any], spaces: Mapping[Path_, SearchSpace], budgets: list[int], space_: StudySpace) -> list[str]:
    """Every problem of the concrete trials the search can produce, one value at a time (each in a combination of
    method, strategy and loss where it applies), then every combination that feeds the loss signed answers it cannot read."""
    axes: dict[Path_, SearchSpace] = {**spaces, QUERIES: SearchSpace("choice", tuple(budgets))}
    selector_axes = [p for p in SELECTORS if p in axes]

    def concrete(values: Mapping[Path_, Any]) -> dict[str, Any]:
        return space_.concrete(tree, values)

    def context(path: Path_, firsts: dict[Path_, Any]) -> dict[Path_, Any] | str:
        if path == QUERIES or space_.applies(path, firsts):
            return firsts
        combos = (dict[Path_, Any](zip(selector_axes, combo, strict=True)) for combo in itertools.product(*(axes[p].candidates() for p in selector_axes)))
        found = next(({**firsts, **combo} for combo in combos if space_.applies(path, {**firsts, **combo})), None)
        return _never_used(path, space_, axes) if found is None else found

    checked = candidate_problems(axes, lambda values: tree_problems(concrete(values), None), name=_label, candidates=_candidates, context=context)
    return checked + signed_answer_problems(axes, concrete, _label)


# --- the plan -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OptimizePlan:
    """A validated optimize file: the sweep plan the driver needs, the optimize section and the study space."""

    sweep: SweepPlan
    optimize: OptimizeSpec
    space: StudySpace
    tree: dict[str, Any]

    @property
    def name(self) -> str:
        return self.sweep.spec.name

    def study_name(self, budget: int) -> str:
        return f"{self.name}-q{budget}"

    def param_space(self, budget: int) -> dict[str, Any]:
        """Tune's param_space for the study of `budget`: every fixed value; the searched ones come from Optuna."""
        out = self.space.base(self.tree)
        _place(out, QUERIES, budget)
        return out

    def fingerprint(self) -> str:
        """What a resumed study must share with the one stored: attack/defense/evaluate (spaces included), objective."""
        o = self.optimize
        tree = copy.deepcopy(self.tree)
        _remove(tree, ("evaluate", "monitor_images"))  # follows the pruner, which may change between invocations
        return json.dumps({"tree": tree, "objective": o.objective, "direction": o.resolved_direction}, sort_keys=True, default=str)

    def losses(self) -> list[str]:
        """Every loss the search can pick, in the file's order."""
        return [str(v) for v in self.sweep.values("attack", "loss")] or [str(self.space.selectors["loss"])]

    def describe(self) -> str:
        o = self.optimize
        run = self.sweep.spec.run
        lines = [
            f"{self.sweep.source}: {len(o.budgets)} studies x {o.trials_per_budget} trials, up to {run.max_concurrent_trials} at once; "
            f"objective {o.objective} ({o.resolved_direction}), sampler {o.sampler.name}, pruner {o.pruner.name}; storage {masked(o.storage_url())}"
        ]
        for budget in o.budgets:
            lines.append(f"  study {self.study_name(budget)}: attack.queries = {budget}")
        for path, space in self.space.spaces:
            lines.append(f"  {'.'.join(path)}: {space.kind} {list(space.args)}")
        return "\n".join(lines)


def _grids(tree: Any, prefix: Path_ = ()) -> list[str]:
    """Every `{grid: ...}` in the tree (found even where another space is malformed)."""
    if not isinstance(tree, dict):
        return []
    if len(tree) == 1 and "grid" in tree and prefix:
        return [f"{'.'.join(prefix)}.grid: an Optuna search draws values rather than enumerating them: use choice"]
    return [p for key, value in tree.items() for p in _grids(value, (*prefix, str(key)))]


def _categorical_problems(spaces: Mapping[Path_, SearchSpace]) -> list[str]:
    problems = []
    for path, space in spaces.items():
        key = ".".join(path)
        if space.kind == "choice":
            for i, value in enumerate(space.args):
                if not isinstance(value, CATEGORICAL_TYPES):
                    problems.append(f"{key}.choice[{i}]: Optuna's categorical values must be null, bool, int, float or str, got {value!r}")
    return problems


def _cover_problems(opt: OptimizeSpec, spaces: Mapping[Path_, SearchSpace]) -> list[str]:
    problems = []
    sizes = []
    for i, key in enumerate(opt.cover):
        space = spaces.get(tuple(key.split(".")))
        if space is None or space.kind != "choice":
            problems.append(f"optimize.cover[{i}]: {key} is not a searched choice")
        else:
            sizes.append(len(space.args))
    if not problems and math.prod(sizes) > opt.trials_per_budget:
        problems.append(f"optimize.cover: {math.prod(sizes)} combinations to try first exceed optimize.trials_per_budget ({opt.trials_per_budget})")
    if opt.cover_values and not opt.cover:
        problems.append("optimize.cover_values: only used with optimize.cover")
    for key, value in opt.cover_values.items():
        where = f"optimize.cover_values.{key}"
        space = spaces.get(tuple(key.split(".")))
        if space is None or key in opt.cover:
            problems.append(f"{where}: not a searched key outside optimize.cover")
        elif space.kind == "choice" and value not in space.args:
            problems.append(f"{where}: {value!r} is not among its choices {list(space.args)}")
        elif space.kind != "choice" and not (isinstance(value, (int, float)) and not isinstance(value, bool) and _within(space, value)):
            problems.append(f"{where}: {value!r} is outside its {space.kind} range {list(space.args)}")
    return problems


def _within(space: SearchSpace, value: float) -> bool:
    low, high = space.args
    if space.kind == "randint":
        return isinstance(value, int) and bool(low <= value < high)
    return bool(low <= value <= high)


def _fixed_or_first(fixed: Mapping[Path_, Any], path: Path_, space: SearchSpace) -> Any:
    return fixed[path] if path in fixed else space.candidates()[0]


def cover_points(plan: OptimizePlan) -> list[dict[str, Any]]:
    """Fixed parameters of the trials each study runs first: every combination of the covered choices, with the
    `cover_values` that apply to it (a temperature only with a loss that takes one)."""
    o = plan.optimize
    paths = [tuple(key.split(".")) for key in o.cover]
    spaces = dict(plan.space.spaces)
    extra = {tuple(key.split(".")): value for key, value in o.cover_values.items()}
    points = []
    for combo in itertools.product(*(spaces[p].args for p in paths)) if paths else []:
        fixed = dict(zip(paths, combo, strict=True)) | extra
        picked, _ = plan.space.walk(functools.partial(_fixed_or_first, fixed))
        points.append({param_name(p): v for p, v in fixed.items() if p in picked})
    return points


def plan_optimize(path: str | Path, overrides: list[str] | None = None) -> OptimizePlan:
    """Read, validate and plan an optimize file; ConfigError lists every problem with its key path."""
    from pydantic import ValidationError

    source = str(path)
    raw = copy.deepcopy(apply_overrides(read_yaml(path), overrides or []))
    problems: list[str] = []
    section = raw.pop("optimize", None)
    opt: OptimizeSpec | None = None
    if section is None:
        problems.append("optimize: required key is missing (budgets, objective, trials_per_budget, sampler, pruner, storage)")
    elif not isinstance(section, dict):
        problems.append("optimize: expected a mapping")
    else:
        try:
            opt = OptimizeSpec.model_validate(section)
        except ValidationError as exc:
            problems += errors_of(exc, "optimize.")
    attack = raw.get("attack")
    if isinstance(attack, dict) and "queries" in attack:
        problems.append("attack.queries: set per study by optimize.budgets; remove it")
        attack.pop("queries")
    if isinstance(raw.get("run"), dict) and "num_samples" in raw["run"]:
        problems.append("run.num_samples: not used by optimize (each study runs optimize.trials_per_budget trials)")
    evaluate = raw.setdefault("evaluate", {})
    if opt is not None and opt.objective.startswith("val_acc") and isinstance(evaluate, dict):
        evaluate.setdefault("val_images", opt.val_images)
    if opt is not None and opt.pruner.name != "none" and isinstance(evaluate, dict):
        if "monitor_images" not in evaluate:
            evaluate["monitor_images"] = opt.pruner.monitor_images
        elif not isinstance(evaluate["monitor_images"], int) or evaluate["monitor_images"] <= 0:
            problems.append(
                f"evaluate.monitor_images: the {opt.pruner.name} pruner needs the per-epoch k-NN accuracy: set it above 0, or use optimize.pruner: none"
            )
    budgets = opt.budgets if opt is not None else [1000]
    spec: SweepSpec | None = None
    try:
        spec = SweepSpec.model_validate({**raw, "attack": {**attack, "queries": budgets[0]} if isinstance(attack, dict) else attack})
        tree = {key: copy.deepcopy(getattr(spec, key)) for key in SEARCHABLE}
        tree["attack"].pop("queries")
    except ValidationError as exc:
        problems += errors_of(exc)
        defaults = SweepSpec.model_fields
        tree = {key: raw.get(key, defaults[key].get_default(call_default_factory=True)) for key in SEARCHABLE}
        tree = {key: value for key, value in tree.items() if isinstance(value, dict)}
    spaces: dict[Path_, SearchSpace] = {}
    if set(tree) == set(SEARCHABLE):
        try:
            spaces = find_spaces(tree)
            malformed = False
        except ConfigError as exc:
            problems += exc.problems
            malformed = True
        bad = _grids(tree) + _categorical_problems(spaces)
        problems += bad
        if not bad and not malformed:
            study = StudySpace.build(tree, spaces)
            problems += check_conditional(tree, spaces, budgets, study)
        if opt is not None:
            problems += _cover_problems(opt, spaces)
            ds = opt.objective.split(".", 1)[1] if "." in opt.objective and not opt.objective.startswith("fidelity.") else None
            downstream = tree["evaluate"].get("downstream")
            if ds and isinstance(downstream, list) and ds not in downstream:
                problems.append(f"optimize.objective: {ds} is not among evaluate.downstream ({', '.join(downstream)})")
    if problems or spec is None or opt is None:
        raise ConfigError(list(dict.fromkeys(problems)), source)
    study = StudySpace.build(tree, spaces)
    queries = {"choice": list(opt.budgets)}
    sweep_tree = copy.deepcopy(tree)
    sweep_tree["attack"]["queries"] = queries
    sweep = SweepPlan(spec, sweep_tree, {**spaces, QUERIES: SearchSpace("choice", tuple(opt.budgets))}, source)
    return OptimizePlan(sweep, opt, study, tree)
