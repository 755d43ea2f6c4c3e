"""The shipped sweep files (`sweeps/cpu/`, `sweeps/paper/`): each one plans, has the trial count its header and
`sweeps/README.md` promise, and points at the right victim. Planning reads YAML only: no Ray, no datasets."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sslsteal.cli import main
from sslsteal.specs.base import load
from sslsteal.specs.external import ExternalVictimSpec
from sslsteal.specs.sweep import SweepPlan, plan_sweep
from sslsteal.specs.victim import VictimSpec, read_victim

REPO = Path(__file__).resolve().parents[1]
SWEEPS = REPO / "sweeps"
OWNERSHIP = ["watermark", "dataset_inference", "dataset_inference_gmm", "noise_ball", "distance"]

EXPECTED_TRIALS = {
    "cpu/methods.yaml": 15,
    "cpu/losses.yaml": 60,
    "cpu/loss_forms.yaml": 15,
    "cpu/recipe.yaml": 36,
    "cpu/recipe_default.yaml": 9,
    "cpu/queries.yaml": 18,
    "cpu/queries_large.yaml": 2,
    "cpu/noise_defense.yaml": 30,
    "cpu/similarity_defense.yaml": 27,
    "cpu/output_defenses.yaml": 9,
    "cpu/watermark.yaml": 9,
    "cpu/watermark_augment.yaml": 9,
    "cpu/transfer.yaml": 3,
    "cpu/fashion_mnist.yaml": 3,
    "cpu/protocols.yaml": 18,
    "cpu/frontier.yaml": 105,
    "cpu/defense_matrix.yaml": 75,
    "cpu/efficientnet.yaml": 6,
    "paper/methods.yaml": 3,
    "paper/losses.yaml": 10,
    "paper/queries.yaml": 21,
    "paper/queries_cifar10_train.yaml": 8,
    "paper/noise_defense.yaml": 10,
    "paper/similarity_defense.yaml": 8,
    "paper/watermark.yaml": 12,
    "paper/fashion_mnist.yaml": 6,
    "paper/frontier.yaml": 105,
    "paper/defense_matrix.yaml": 75,
}

OPTIMIZE_FILES = sorted(p for p in SWEEPS.glob("*/*.yaml") if "optimize" in (yaml.safe_load(p.read_text()) or {}))  # tests/test_optimize.py
CPU_FILES = sorted(set(SWEEPS.glob("cpu/*.yaml")) - set(OPTIMIZE_FILES))
PAPER_FILES = sorted(SWEEPS.glob("paper/*.yaml"))
ALL_FILES = CPU_FILES + PAPER_FILES


def _rel(path: Path) -> str:
    return path.relative_to(SWEEPS).as_posix()


def _victim(plan: SweepPlan) -> tuple[Path, VictimSpec | ExternalVictimSpec]:
    ref = plan.spec.victim
    assert isinstance(ref, str), f"{plan.source}: victim should be a YAML path relative to the sweep file"
    path = Path(plan.source).parent / ref
    assert path.is_file(), f"{plan.source}: victim {ref} not found at {path}"
    return path, read_victim(path)


def _trial_values(plan: SweepPlan, section: str) -> list[dict]:
    """Every concrete value of `section` the sweep can take (grids over whole sections or over its keys)."""
    tree = plan.tree[section]
    whole = plan.spaces.get((section,))
    if whole is not None:
        return [dict(v) for v in whole.args]
    return [tree]


def test_the_globs_find_every_listed_file_and_nothing_else() -> None:
    assert CPU_FILES and PAPER_FILES
    assert {_rel(p) for p in ALL_FILES} == set(EXPECTED_TRIALS)


@pytest.mark.parametrize("path", ALL_FILES, ids=_rel)
def test_plans_with_the_expected_trial_count(path: Path) -> None:
    plan = plan_sweep(path)
    assert plan.trials == EXPECTED_TRIALS[_rel(path)]
    assert len(plan.preview(limit=1000)) == plan.trials


@pytest.mark.parametrize("path", ALL_FILES, ids=_rel)
def test_header_names_its_table_trial_count_and_command(path: Path) -> None:
    text = path.read_text()
    header = text[: text.index("\nname:")]
    assert all(line.startswith("#") for line in header.splitlines()), f"{path}: the header comment must come first"
    assert re.search(r"Table|Figure|Fashion-MNIST", header)
    counts = {int(n) for n in re.findall(r"Trials: (\d+)", header)}
    assert counts == {EXPECTED_TRIALS[_rel(path)]}, f"{path}: header says {counts} trials"
    assert f"sslsteal sweep sweeps/{_rel(path)}" in header and f"sslsteal validate sweeps/{_rel(path)}" in header


@pytest.mark.parametrize("path", CPU_FILES, ids=_rel)
def test_cpu_sweeps_use_a_shipped_small_cnn_victim_on_one_cpu(path: Path) -> None:
    plan = plan_sweep(path)
    victim_path, victim = _victim(plan)
    assert victim.encoder == "small_cnn"  # an external victim's: what the attacker's copy is built as
    if isinstance(victim, ExternalVictimSpec):  # trained elsewhere: packaged, never retrained
        assert victim.packaged is not None or all(Path(f).is_file() for f in (victim.torchscript, victim.weights) if f)
    else:
        assert (victim_path.parent / "checkpoints" / victim.key / "checkpoint.pt").is_file(), "CPU sweeps must not retrain their victim"
    res = plan.spec.run.resources_per_trial
    assert (res.cpu, res.gpu) == (1, 0)
    for attack in _trial_values(plan, "attack"):
        largest = 50_000 if _rel(path) == "cpu/queries_large.yaml" else 9000  # Table 9's largest budgets, one seed
        for key, limit in (("queries", largest), ("epochs", 30), ("steps", 1500)):  # CPU-sized budgets and training
            value = attack.get(key)
            values = plan.spaces[("attack", key)].args if isinstance(value, dict) else [] if value is None else [value]
            assert all(v is None or v <= limit for v in values), (key, values)  # None: the default length


@pytest.mark.parametrize("path", PAPER_FILES, ids=_rel)
def test_paper_sweeps_use_a_resnet34_victim_on_a_gpu(path: Path) -> None:
    plan = plan_sweep(path)
    victim_path, victim = _victim(plan)
    assert victim_path.name.startswith("paper-")
    assert (victim.encoder, victim.data, victim.epochs, victim.batch_size, victim.lr) == ("resnet34", "cifar10:train", 200, 256, 3e-4)
    res = plan.spec.run.resources_per_trial
    assert (res.cpu, res.gpu) == (4, 1)


def test_paper_victims_are_resnet34_twins() -> None:
    plain = load(VictimSpec, SWEEPS / "victims" / "paper-cifar10-resnet34.yaml")
    marked = load(VictimSpec, SWEEPS / "victims" / "paper-cifar10-resnet34-wm.yaml")
    assert plain.encoder == marked.encoder == "resnet34"
    assert plain.watermark is None and marked.watermark is not None
    same = {"name", "watermark"}
    assert plain.model_dump(exclude=same) == marked.model_dump(exclude=same)


@pytest.mark.parametrize("scale", ["cpu", "paper"])
def test_the_experiments_say_what_the_paper_did(scale: str) -> None:
    def plan(name: str) -> SweepPlan:
        return plan_sweep(SWEEPS / scale / name)

    methods = _trial_values(plan("methods.yaml"), "attack")
    assert {a["method"] for a in methods} == {"direct", "recreate_head", "access_head"}
    assert all(a["strategy"] == "augmented" for a in methods if a["method"] == "recreate_head")
    paired = {"direct": "softnn", "recreate_head": "simsiam", "access_head": "infonce"}  # the paper's pairs; the CPU file adds more
    assert {(m, loss) for m, loss in paired.items()} <= {(a["method"], a["loss"]) for a in methods}

    losses = plan("losses.yaml")
    table2 = {"mse", "infonce", "softnn", "wasserstein", "supcon", "barlow"}  # the paper's forms
    assert set(losses.spaces[("attack", "loss")].args) == table2 | {"simsiam", "cosine", "infonce_cross", "sliced_wasserstein"}

    noise = plan("noise_defense.yaml")
    assert noise.tree["attack"]["loss"] == "mse" and noise.tree["evaluate"]["legit"] is True
    assert set(noise.spaces[("defense", "mean")].args) == {0, 10}
    assert set(noise.spaces[("defense", "sigma")].args) == {0, 1, 2, 3, 4}

    similarity = plan("similarity_defense.yaml")
    assert similarity.tree["attack"]["loss"] == "infonce" and similarity.tree["attack"]["strategy"] == "augmented"
    assert similarity.tree["evaluate"]["legit"] is True
    if ("defense",) in similarity.spaces:
        defenses = [d for d in _trial_values(similarity, "defense") if d["name"] == "similarity"]
    else:
        defenses = [{"metric": m, "sigma": s} for m in similarity.spaces[("defense", "metric")].args for s in similarity.spaces[("defense", "sigma")].args]
    assert {(d["metric"], d["sigma"]) for d in defenses} == {(m, s) for m in ("cosine", "l2") for s in (0, 20, 40, 60)}

    marked = {f"{scale}/watermark.yaml", f"{scale}/watermark_augment.yaml"}
    for name in EXPECTED_TRIALS:
        if not name.startswith(scale):
            continue
        found = plan(name.split("/")[1])
        assert (_victim(found)[1].watermark is not None) == (name in marked), name
        if name in marked:
            assert found.tree["evaluate"]["ownership"] == OWNERSHIP, name


def test_tune_expands_each_file_to_its_trial_count() -> None:
    """Ray Tune's own variant generator (no Ray started) agrees with plan.trials, grids over whole sections included."""
    pytest.importorskip("ray.tune")
    from ray.tune.search.variant_generator import generate_variants

    from sslsteal.orchestration.tune_space import to_param_space

    for path in ALL_FILES:
        plan = plan_sweep(path)
        variants = [spec for _, spec in generate_variants(to_param_space(plan.tree, plan.spaces))]
        assert len(variants) == plan.trials, path
        assert all(isinstance(v["attack"], dict) and "queries" in v["attack"] and "name" in v["defense"] for v in variants)


def test_readme_indexes_every_file() -> None:
    readme = (SWEEPS / "README.md").read_text()
    for name, trials in EXPECTED_TRIALS.items():
        row = next((line for line in readme.splitlines() if f"`{name}`" in line), None)
        assert row is not None, f"sweeps/README.md does not list {name}"
        assert f"| {trials} |" in row, f"sweeps/README.md: {name} should show {trials} trials: {row}"
    for victim in SWEEPS.glob("victims/*.yaml"):
        assert f"victims/{victim.name}" in readme


def test_validate_command_accepts_a_cpu_file(capsys: pytest.CaptureFixture[str]) -> None:
    path = SWEEPS / "cpu" / "queries.yaml"
    assert main(["validate", str(path), "--show", "3"]) == 0
    out = capsys.readouterr().out
    assert "18 trials" in out and "attack.loss" in out and "attack.queries" in out


def test_planning_starts_no_ray_and_reads_no_data(tmp_path: Path) -> None:
    """In a fresh interpreter with an empty cache and no data folder: every file plans, Ray is never imported."""
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from sslsteal.specs.sweep import plan_sweep\n"
        f"for p in {[str(p) for p in ALL_FILES]!r}:\n"
        "    plan_sweep(p)\n"
        "assert 'ray' not in sys.modules, 'planning imported ray'\n"
    )
    env = {**os.environ, "SSLSTEAL_CACHE": str(tmp_path / "cache"), "SSLSTEAL_DATA": str(tmp_path / "no-data"), "SSLSTEAL_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.npy"))


def test_readme_quickstart_command_runs_the_quickstart_sweep() -> None:
    """The README's first command is the quickstart sweep, and that sweep plans (tiny victim, 3 trials, ownership on)."""
    readme = (REPO / "README.md").read_text()
    command = re.search(r"```bash\n(.*?)\n```", readme, re.S)
    assert command is not None
    assert "sslsteal sweep sweeps/quickstart.yaml" in command.group(1)
    plan = plan_sweep(SWEEPS / "quickstart.yaml")
    assert plan.trials == 3 and plan.spec.victim == "victims/tiny.yaml"
    assert plan.values("evaluate", "ownership") == [["watermark", "dataset_inference", "distance"]]
