"""The package layout keeps each job in its room: specs without torch or Ray, Ray Tune and MLflow only in the
orchestration package, no Ray at all in the pure stages, one registry mechanism."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sslsteal.core.registry import Registry

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "sslsteal"
SWEEPS = REPO / "sweeps"
PURE_STAGES = ("data", "models.py", "losses", "attacks", "evaluation", "pipeline")
STAGES = (*PURE_STAGES, "victim")
UTILITIES = ("core",)
MAY_IMPORT = {
    "core": set(UTILITIES),
    "specs": {"core"},
    **{stage.removesuffix(".py"): {"core", "specs", *(s.removesuffix(".py") for s in STAGES)} for stage in STAGES},
    "orchestration": {"core", "specs", *(s.removesuffix(".py") for s in STAGES)},
    "dashboards": {"core", "specs", "orchestration"},
    "api": {"core", "specs", "orchestration", *(s.removesuffix(".py") for s in STAGES)},
}
"""The direction of the package's own imports, by top-level unit (a subpackage or a module of `sslsteal/`): utilities
import nothing above them, specs no stage (not even for typing), stages neither orchestration nor dashboards,
orchestration not the dashboards, the HTTP API (served on Ray like a sweep) what orchestration may and orchestration
itself; `cli.py` may import anything."""


def imports_of(path: Path) -> set[str]:
    """Every module a file imports, at any depth of its code (`from ray import tune` counts as `ray.tune`)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def own_imports(path: Path) -> set[str]:
    """The top-level units of `sslsteal` a file imports (`sslsteal.data.loaders` -> `data`), typing-only imports included."""
    units = set()
    for name in imports_of(path):
        parts = name.split(".")
        if parts[0] == "sslsteal" and len(parts) > 1:
            units.add(parts[1])
    return units


def unit_of(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def unit_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        unit = unit_of(path)
        graph.setdefault(unit, set()).update(own_imports(path) - {unit})
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as a path that returns to its start, or None."""
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return [*path[path.index(nxt) :], nxt] if nxt in path else [*path, nxt]
            if nxt not in state and (found := visit(nxt, [*path, nxt])):
                return found
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node, [node])):
            return found
    return None


def modules(*parts: str) -> list[Path]:
    out: list[Path] = []
    for part in parts:
        path = PACKAGE / part
        out += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return out


def under(name: str, roots: tuple[str, ...]) -> bool:
    return any(name == root or name.startswith(root + ".") for root in roots)


def fresh_python(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SSLSTEAL_CACHE": str(tmp_path / "cache"), "SSLSTEAL_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, timeout=300)


def test_import_walk_finds_imports_at_any_depth(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import os\n\ndef f():\n    from ray import tune\n    import mlflow.tracking\n")
    assert {"os", "ray", "ray.tune", "mlflow.tracking"} <= imports_of(sample)
    assert under("ray.tune.search", ("ray.tune",)) and not under("rayleigh", ("ray",))


def test_cycle_finder_and_unit_walk(tmp_path: Path) -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    sample = tmp_path / "sample.py"
    sample.write_text("from sslsteal.data.loaders import load\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import sslsteal.victim.service\n")
    assert own_imports(sample) == {"data", "victim"}


def test_own_imports_go_one_way() -> None:
    """Stages never import orchestration or dashboards, orchestration never the dashboards, specs no stage."""
    graph = unit_graph()
    assert set(MAY_IMPORT) | {"cli", "__init__"} >= set(graph), f"units without a rule: {set(graph) - set(MAY_IMPORT)}"
    wrong = {unit: sorted(targets - MAY_IMPORT[unit]) for unit, targets in graph.items() if unit in MAY_IMPORT and targets - MAY_IMPORT[unit]}
    assert not wrong
    assert {"orchestration", "dashboards", "specs"} <= graph["cli"]  # the walk sees the package's own imports


def test_no_cycle_between_units() -> None:
    assert find_cycle(unit_graph()) is None


def test_every_package_says_its_job() -> None:
    packages = [p for p in PACKAGE.rglob("__init__.py")]
    assert len(packages) >= 10
    undocumented = [str(p.relative_to(REPO)) for p in packages if ast.get_docstring(ast.parse(p.read_text())) is None]
    assert not undocumented


def test_tune_train_and_mlflow_only_in_orchestration() -> None:
    offenders = {
        str(path.relative_to(REPO)): sorted(name for name in imports_of(path) if under(name, ("ray.tune", "ray.train", "mlflow")))
        for path in PACKAGE.rglob("*.py")
        if "orchestration" not in path.relative_to(PACKAGE).parts
    }
    assert not {k: v for k, v in offenders.items() if v}
    assert any(under(name, ("mlflow",)) for name in imports_of(PACKAGE / "orchestration" / "tracking.py"))  # the walk sees them


def test_pure_stages_and_specs_never_import_ray() -> None:
    checked = modules(*STAGES, *UTILITIES, "specs")
    assert len(checked) > 30
    offenders = {str(p.relative_to(REPO)): sorted(n for n in imports_of(p) if under(n, ("ray",))) for p in checked}
    assert not {k: v for k, v in offenders.items() if v}


def test_specs_never_import_torch_statically() -> None:
    offenders = {
        str(p.relative_to(REPO)): sorted(n for n in imports_of(p) if under(n, ("torch", "torchvision", "ray", "mlflow", "optuna"))) for p in modules("specs")
    }
    assert not {k: v for k, v in offenders.items() if v}


def test_importing_the_specs_loads_neither_torch_nor_ray(tmp_path: Path) -> None:
    code = (
        "import importlib, pkgutil, sys\n"
        "import sslsteal.specs\n"
        "names = [m.name for m in pkgutil.walk_packages(sslsteal.specs.__path__, 'sslsteal.specs.')]\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "print(len(names), sorted(m for m in ('torch', 'ray', 'mlflow', 'optuna') if m in sys.modules))\n"
    )
    proc = fresh_python(code, tmp_path)
    assert proc.returncode == 0, proc.stderr
    count, loaded = proc.stdout.split(" ", 1)
    assert int(count) >= 12 and loaded.strip() == "[]"


def test_validate_never_imports_torch_on_any_sweeps_file(tmp_path: Path) -> None:
    files = sorted(str(p) for p in SWEEPS.rglob("*.yaml"))
    assert len(files) > 20
    code = (
        "import contextlib, io, sys\n"
        "from sslsteal.cli import main\n"
        f"for path in {files!r}:\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        assert main(['validate', path]) == 0, path\n"
        "    assert 'torch' not in sys.modules, f'validating {path} imported torch'\n"
        "print('ok', 'ray' in sys.modules)\n"
    )
    proc = fresh_python(code, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["ok", "False"]


def test_every_declared_component_has_its_implementation() -> None:
    import sslsteal.attacks
    import sslsteal.data.loaders
    import sslsteal.evaluation.ownership
    import sslsteal.losses
    import sslsteal.models
    import sslsteal.victim.defenses  # noqa: F401  (attach the implementations)
    from sslsteal.specs.datasets import DATASETS
    from sslsteal.specs.defenses import DEFENSES
    from sslsteal.specs.encoders import ENCODERS
    from sslsteal.specs.evaluate import OWNERSHIP_TESTS
    from sslsteal.specs.losses import LOSSES
    from sslsteal.specs.methods import METHODS

    for registry in (DATASETS, DEFENSES, ENCODERS, LOSSES, OWNERSHIP_TESTS, METHODS):
        assert len(registry) >= 3
        for name in registry:
            assert registry.implementation(name) is not None, (registry.kind, name)


def test_registry_messages_and_checks() -> None:
    things: Registry[str] = Registry("thing")
    things.add("b", "bee")
    things.register("a")("ay")
    assert things.check_all(["b", "a", "b"]) == ["b", "a"]
    with pytest.raises(ValueError, match=r"^unknown thing 'c'; known: a, b$"):
        things.check_all(["a", "c"])
    with pytest.raises(KeyError, match="unknown thing 'c'; known: a, b"):
        things.implementation("c")
    with pytest.raises(LookupError, match="declared but its implementation was not imported"):
        things.implementation("a")
    things.implements("a")(len)
    assert things.implementation("a") is len
    with pytest.raises(KeyError, match="not declared"):
        things.implements("z")(len)
    with pytest.raises(ValueError, match="registered twice"):
        things.add("a", "again")


def test_architecture_doc_names_every_module() -> None:
    """docs/architecture.md matches the tree: every module is named, by its path or in its package's row."""
    lines = (REPO / "docs" / "architecture.md").read_text().splitlines()
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel.name == "__init__.py" and rel.parent != Path("."):
            continue
        package = f"{rel.parent.as_posix()}/"
        named = any(
            f"`{rel.as_posix()}`" in line
            or (rel.parent != Path(".") and f"`{package}" in line and (f"`{rel.name}`" in line or f"`{package}`" in line or rel.stem in line))
            for line in lines
        )
        if not named and rel.as_posix() != "__init__.py":
            missing.append(rel.as_posix())
    assert not missing
    named_paths = {p for line in lines for p in re.findall(r"`((?:[a-z_]+/)*[a-z_]+\.py)`", line)}
    assert [p for p in named_paths if not ((PACKAGE / p).is_file() or (REPO / p).is_file() or any(PACKAGE.rglob(p)))] == []
