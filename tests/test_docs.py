"""Docs that can be followed: every repository path named in README.md, docs/ and sweeps/ exists, every
relative Markdown link resolves, and every YAML under sweeps/ validates (without data, Ray or a victim)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sslsteal.specs.base import ConfigError, load, read_yaml

REPO = Path(__file__).resolve().parents[1]
TOP = ("sslsteal", "sweeps", "docs", "tests", "benchmarks", "dashboards", ".ci")
PATH = re.compile(r"(?<![\w./~-])((?:" + "|".join(re.escape(t) for t in TOP) + r")/[\w./\-\[\]]*|cluster\.yaml|pyproject\.toml)")
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
DOCS = sorted([REPO / "README.md", *(REPO / "docs").glob("*.md"), *(REPO / "sweeps").rglob("*.md"), *(REPO / "sweeps").rglob("*.yaml")])
YAMLS = sorted((REPO / "sweeps").rglob("*.yaml"))


def _named_paths(text: str) -> list[str]:
    """Repository paths in a text: no placeholders (<...>, *, {...}), trailing punctuation and slice brackets stripped."""
    out = []
    for match in PATH.findall(text):
        path = match.rstrip(".,:;)]`'\"")
        if "[" in path:  # a dataset slice such as cifar10:test[:9000] is not a path
            path = path.split("[", 1)[0]
        path = path.rstrip("/")
        if path not in TOP and not any(c in match for c in "<>*{}") and not path.endswith("."):
            out.append(path)
    return out


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_named_paths_exist(doc: Path) -> None:
    text = doc.read_text()
    missing = [p for p in _named_paths(text) if not (REPO / p).exists()]
    missing += [link for link in LINK.findall(text) if "://" not in link and not (doc.parent / link).exists()]
    assert not missing, f"{doc.relative_to(REPO)} names paths that do not exist: {sorted(set(missing))}"


def test_path_finder_sees_paths_and_skips_placeholders() -> None:
    text = "run `sweeps/runs/x.yaml`, see docs/a.md, (sslsteal/data.py). Not sweeps/<name>.yaml, nor cifar10:test[:9000]."
    assert _named_paths(text) == ["sweeps/runs/x.yaml", "docs/a.md", "sslsteal/data.py"]


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_sweeps_yaml_validates(path: Path) -> None:
    from sslsteal.pipeline.steal import victim_source
    from sslsteal.specs.optimize import plan_optimize
    from sslsteal.specs.protocol import protocol_problems
    from sslsteal.specs.steal import StealSpec
    from sslsteal.specs.sweep import plan_sweep
    from sslsteal.specs.victim import read_victim

    raw = read_yaml(path)
    if "optimize" in raw:
        plan_optimize(path)
    elif "name" in raw and "attack" in raw:
        plan_sweep(path)
    elif "attack" in raw:
        spec = load(StealSpec, path)
        victim, _ = victim_source(spec.victim, base=path.parent)
        problems = protocol_problems(spec.attack, spec.evaluate, victim)
        if problems:
            raise ConfigError(problems, str(path))
    else:
        read_victim(path)
