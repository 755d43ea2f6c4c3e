"""Sweep files: search-space syntax, Tune translation, validation of every candidate value, `sslsteal validate`."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import tiny_victim_spec

from sslsteal.cli import main
from sslsteal.orchestration.tune_space import to_param_space
from sslsteal.specs.base import ConfigError
from sslsteal.specs.search_space import SearchSpace, find_spaces, parse_space, preview, trial_count
from sslsteal.specs.sweep import plan_sweep


def _sweep(tmp_path: Path, **sections: object) -> Path:
    data = {"name": "t", "victim": tiny_victim_spec(), "attack": {"loss": "mse", "queries": 100}, **sections}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_parse_space_kinds_and_errors() -> None:
    assert parse_space({"grid": [1, 2]}, "k") == SearchSpace("grid", (1, 2))
    assert parse_space({"loguniform": [1e-4, 1e-2]}, "k") == SearchSpace("loguniform", (1e-4, 1e-2))
    assert parse_space(3, "k") is None and parse_space({"grid": 1, "x": 2}, "k") is None
    for bad, needle in [
        ({"grid": []}, "k.grid: expected a non-empty list"),
        ({"uniform": [2, 1]}, "k.uniform: low 2 must be below high 1"),
        ({"loguniform": [0, 1]}, "k.loguniform: bounds must be positive"),
        ({"randint": [0.5, 3]}, "k.randint: bounds must be integers"),
        ({"uniform": ["a", 1]}, "k.uniform: expected [low, high] numbers"),
    ]:
        with pytest.raises(ConfigError, match=needle.replace("[", r"\[")):
            parse_space(bad, "k")


def test_translation_to_tune_and_trial_count() -> None:
    from ray import tune

    tree = {"attack": {"loss": {"grid": ["mse", "infonce"]}, "lr": {"loguniform": [1e-4, 1e-2]}, "queries": {"grid": [1, 2, 3]}}}
    spaces = find_spaces(tree)
    assert trial_count(spaces) == 6 and trial_count(spaces, num_samples=2) == 12
    space = to_param_space(tree, spaces)
    assert space["attack"]["loss"] == tune.grid_search(["mse", "infonce"])
    assert isinstance(space["attack"]["lr"], tune.search.sample.Float)
    rows = preview(spaces, limit=10)
    assert len(rows) == 6 and {r["attack.loss"] for r in rows} == {"mse", "infonce"}
    assert all(1e-4 <= r["attack.lr"] <= 1e-2 for r in rows)


def test_every_candidate_is_validated_with_its_key_path(tmp_path: Path) -> None:
    path = _sweep(
        tmp_path,
        attack={"loss": {"grid": ["mse", "nope"]}, "queries": {"grid": [100, 20000]}, "method": {"choice": ["direct", "recreate_head"]}},
        defense={"name": "noise", "sigma": {"grid": [0, -1]}},
        evaluate={"downstream": ["imagenet"]},
        run={"threads": 3},
    )
    with pytest.raises(ConfigError) as info:
        plan_sweep(path)
    text = str(info.value)
    for needle in [
        "run.threads: unknown key",
        "attack.loss.grid[1]: unknown loss 'nope'",
        "attack.queries.grid[1]: 20000 queries need 20000 images but cifar10:test[:9000] has 9000",
        "attack.strategy: method recreate_head needs",
        "(with attack.method = 'recreate_head')",
        "defense.sigma.grid[1]: Input should be greater than or equal to 0",
        "evaluate.downstream: unknown dataset 'imagenet'",
    ]:
        assert needle in text, text


def test_range_bounds_are_validated(tmp_path: Path) -> None:
    path = _sweep(tmp_path, attack={"loss": "mse", "queries": {"randint": [0, 100]}})
    with pytest.raises(ConfigError, match=r"attack.queries.randint.low: Input should be greater than 0"):
        plan_sweep(path)


def test_validate_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _sweep(tmp_path, attack={"loss": {"grid": ["mse", "softnn"]}, "queries": {"grid": [100, 200]}}, run={"num_samples": 2})
    assert main(["validate", str(path), "--show", "3"]) == 0
    out = capsys.readouterr().out
    assert "8 trials" in out and "attack.loss" in out and len(out.strip().splitlines()) == 5
    bad = _sweep(tmp_path, attack={"loss": {"grid": ["mse", "l7"]}, "queries": 100})
    assert main(["validate", str(bad)]) == 2
    assert "attack.loss.grid[1]: unknown loss 'l7'" in capsys.readouterr().err


MALFORMED_SWEEPS = [
    ("unknown top-level key", {"extra": 1}, "extra: unknown key"),
    ("unknown run key", {"run": {"threads": 4}}, "run.threads: unknown key"),
    ("bad name", {"name": "a b"}, "name: String should match pattern"),
    ("unknown loss in a grid", {"attack": {"loss": {"grid": ["mse", "nope"]}, "queries": 100}}, "attack.loss.grid[1]: unknown loss 'nope'"),
    ("unknown method", {"attack": {"method": "steal_harder", "queries": 100}}, "attack.method"),
    ("budget above the query split", {"attack": {"queries": {"grid": [100, 20000]}}}, "attack.queries.grid[1]: 20000 queries need 20000 images"),
    ("negative sigma", {"defense": {"name": "noise", "sigma": {"grid": [0, -1]}}}, "defense.sigma.grid[1]"),
    ("unknown defense", {"defense": {"name": "firewall"}}, "defense.name"),
    ("unknown dataset", {"evaluate": {"downstream": ["imagenet42"]}}, "evaluate.downstream"),
    ("unknown ownership test", {"evaluate": {"ownership": ["watermark", "vibes"]}}, "evaluate.ownership: unknown ownership test 'vibes'"),
    ("wrong type", {"run": {"max_concurrent_trials": "two"}}, "run.max_concurrent_trials"),
    ("malformed range", {"attack": {"queries": 100, "lr": {"loguniform": [0, 1]}}}, "attack.lr.loguniform: bounds must be positive"),
    ("empty grid", {"attack": {"queries": {"grid": []}}}, "attack.queries.grid: expected a non-empty list"),
    ("victim file missing", {"victim": "no/such/victim.yaml"}, "victim: no such file"),
    ("bad victim config", {"victim": {"name": "v", "encoder": "vgg99"}}, "victim.encoder"),
]


@pytest.mark.parametrize("command", ["validate", "sweep"])
@pytest.mark.parametrize(("case", "change", "needle"), MALFORMED_SWEEPS, ids=[c[0] for c in MALFORMED_SWEEPS])
def test_malformed_sweeps_exit_2_naming_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, case: str, change: dict, needle: str) -> None:
    data = {"name": "t", "victim": tiny_victim_spec(), "attack": {"loss": "mse", "queries": 100}} | change
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main([command, str(path)]) == 2
    err = capsys.readouterr().err
    assert needle in err, err
    assert "Traceback" not in err
    import ray

    assert not ray.is_initialized()  # rejected before anything started


def test_broken_yaml_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_text("name: t\nattack: {loss: mse\n")
    assert main(["sweep", str(path)]) == 2
    assert "sweep.yaml" in capsys.readouterr().err


def test_run_seeds_become_a_grid_over_the_attacker_seed(tmp_path: Path) -> None:
    plan = plan_sweep(_sweep(tmp_path, attack={"loss": {"grid": ["mse", "softnn"]}, "queries": 100}, run={"seeds": [0, 1, 2]}))
    assert plan.trials == 6
    rows = plan.preview(limit=10)
    assert sorted((r["attack.loss"], r["attack.seed"]) for r in rows) == [(loss, s) for loss in ("mse", "softnn") for s in (0, 1, 2)]
    with pytest.raises(ConfigError, match=r"attack\.seed: set by run\.seeds"):
        plan_sweep(_sweep(tmp_path, attack={"loss": "mse", "queries": 100, "seed": 4}, run={"seeds": [0, 1]}))


def test_run_seeds_repeat_each_configuration_of_a_whole_attack_grid(tmp_path: Path) -> None:
    configs = [{"loss": "mse", "queries": 100}, {"loss": "softnn", "queries": 200}]
    plan = plan_sweep(_sweep(tmp_path, attack={"grid": configs}, run={"seeds": [0, 1, 2]}))
    assert plan.trials == 6
    attacks = [dict(v) for v in plan.spaces[("attack",)].args]
    assert [(a["loss"], a["queries"], a["seed"]) for a in attacks] == [(c["loss"], c["queries"], s) for c in configs for s in (0, 1, 2)]
    with pytest.raises(ConfigError, match=r"attack\.seed: set by run\.seeds"):
        plan_sweep(_sweep(tmp_path, attack={"grid": [{"loss": "mse", "queries": 100, "seed": 4}]}, run={"seeds": [0, 1]}))


def test_keys_beside_a_whole_attack_grid_apply_to_every_configuration(tmp_path: Path) -> None:
    configs = [{"loss": "mse"}, {"loss": "softnn", "augment": "none"}]
    plan = plan_sweep(_sweep(tmp_path, attack={"grid": configs, "queries": {"grid": [100, 200]}, "strategy": "once"}, run={"seeds": [0, 1]}))
    attacks = [dict(v) for v in plan.spaces[("attack",)].args]
    assert plan.trials == 8 and [(a["loss"], a["queries"], a["seed"], a["strategy"]) for a in attacks[:4]] == [
        ("mse", 100, 0, "once"),
        ("mse", 100, 1, "once"),
        ("mse", 200, 0, "once"),
        ("mse", 200, 1, "once"),
    ]
    with pytest.raises(ConfigError, match=r"attack\.queries: set both beside attack\.grid and inside one of its configurations"):
        plan_sweep(_sweep(tmp_path, attack={"grid": [{"loss": "mse", "queries": 50}], "queries": {"grid": [100, 200]}}))


def test_a_sweep_whose_pool_overlaps_every_scored_image_is_refused(tmp_path: Path) -> None:
    path = _sweep(tmp_path, attack={"loss": "mse", "queries": 100, "query_data": {"grid": ["synthetic:train", "synthetic:test"]}})
    with pytest.raises(ConfigError, match=r"attack.query_data.grid\[1\]: the query pool synthetic:test leaves 0 synthetic:test images"):
        plan_sweep(path)


def test_a_knockoff_source_beside_a_defense_that_moves_the_answers_is_refused(tmp_path: Path) -> None:
    """The knockoff reads the victim's own head on its answers: B4B's secret transformation leaves that space."""
    defenses = {"grid": [{"name": "noise"}, {"name": "b4b"}, {"name": "b4b", "transform": "none"}]}
    path = _sweep(tmp_path, defense=defenses, evaluate={"transfer": {"images": 10}})
    with pytest.raises(ConfigError) as info:
        plan_sweep(path)
    (line,) = str(info.value).splitlines()
    assert "evaluate.transfer.sources: knockoff reads the victim's head" in line and "affine_pad_shuffle transformation" in line
    assert "defense = {'name': 'b4b'}" in line
    assert plan_sweep(_sweep(tmp_path, defense=defenses, evaluate={"transfer": {"images": 10, "sources": ["stolen", "random"]}})).trials == 3
