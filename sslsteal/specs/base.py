"""YAML -> validated pydantic specs; every error names its key path, and all errors are reported together."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
    """Bad user input: one line per problem, each starting with the offending key path."""

    def __init__(self, problems: list[str], source: str = "") -> None:
        self.problems = problems
        self.source = source
        prefix = f"{source}: " if source else ""
        super().__init__("\n".join(prefix + p for p in problems))


class StrictModel(BaseModel):
    """Base for every spec: unknown keys are errors, values are validated on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _key_path(loc: tuple[Any, ...]) -> str:
    """Dotted YAML key path; union-member tags (capitalised, e.g. `specs.victim.victim_kind`'s) are not keys and are dropped."""
    parts = [str(p) for p in loc if not str(p).startswith("function-") and not str(p)[:1].isupper()]
    return ".".join(parts) or "<top>"


def _message(err: Mapping[str, Any]) -> str:
    msg = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        return "unknown key"
    if err["type"] == "missing":
        return "required key is missing"
    if "input" in err and err["type"] not in ("value_error", "assertion_error") and not isinstance(err["input"], (dict, list)):
        return f"{msg} (got {err['input']!r})"
    return msg


def _join(loc: tuple[Any, ...], problem: str) -> str:
    """Key path of a nested problem: `loc` + the problem's own path, unless that already repeats loc's last key."""
    parts = [str(p) for p in loc if not str(p)[:1].isupper()]
    if parts and problem.split(".", 1)[0].split(":", 1)[0] == parts[-1]:
        parts = parts[:-1]
    return ".".join([*parts, problem])


def errors_of(exc: ValidationError, prefix: str = "") -> list[str]:
    """pydantic errors as 'key.path: message' lines."""
    lines = []
    for err in exc.errors():
        nested = err.get("ctx", {}).get("error")
        if isinstance(nested, ConfigError):  # raised by a validator: its lines name keys relative to where it ran
            lines += [f"{prefix}{_join(tuple(err['loc']), p)}" for p in nested.problems]
            continue
        lines.append(f"{prefix}{_key_path(tuple(err['loc']))}: {_message(err)}")
    return lines


def repeated(names: list[str]) -> list[str]:
    """The names that appear more than once, sorted (for a list whose entries must be distinct)."""
    return sorted({name for name in names if names.count(name) > 1})


def options_of(model: type[M], options: Mapping[str, Any], unknown: Callable[[str, str], str], invalid: Callable[[str, str, Any], str]) -> M:
    """`options` validated by `model` (a method's or a loss's); ValueError with `unknown(key, accepted keys)` for a key
    the model lacks, else `invalid(key path, message, value)` for the first value it refuses."""
    for key in options:
        if key not in model.model_fields:
            raise ValueError(unknown(key, ", ".join(model.model_fields)))
    try:
        return model.model_validate(options)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ValueError(invalid(".".join(map(str, err["loc"])), str(err["msg"]).replace("Input should be", "must be"), err["input"])) from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML file that must hold a mapping."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError([f"file not found: {p}"])
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError([f"not valid YAML{where}: {getattr(exc, 'problem', exc)}"], str(p)) from None
    if not isinstance(data, dict):
        raise ConfigError(["<top>: expected a mapping of keys to values"], str(p))
    return data


def parse(model: type[M], data: dict[str, Any], source: str = "") -> M:
    """Validate a mapping into `model`, raising ConfigError with every problem and its key path."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(errors_of(exc), source) from None


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `key.path=value` overrides (values parsed as YAML) to a nested mapping, in order."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError([f"--set {item!r}: expected KEY=VALUE, e.g. attack.queries=1000"])
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError([f"--set {key}: {part} is not a mapping"])
            node = child
        node[parts[-1]] = yaml.safe_load(raw)
    return data


def load(model: type[M], path: str | Path, overrides: list[str] | None = None) -> M:
    """Read and validate a YAML file, after applying `key.path=value` overrides."""
    return parse(model, apply_overrides(read_yaml(path), overrides or []), str(path))
