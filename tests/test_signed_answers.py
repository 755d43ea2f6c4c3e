"""A loss that needs non-negative answers (wasserstein without softmax) is refused at validate time where the answers
can be signed: by the method (head outputs) or by the defense (noise, rotation), in run, sweep and optimize files,
in every combination their search spaces can produce. The declarations the rule reads are checked against the code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from conftest import REPO, tiny_victim_spec

from sslsteal.losses import make_loss
from sslsteal.models import build_encoder
from sslsteal.specs.base import ConfigError, parse
from sslsteal.specs.defenses import defense_params
from sslsteal.specs.encoders import ENCODERS
from sslsteal.specs.losses import LOSSES
from sslsteal.specs.optimize import plan_optimize
from sslsteal.specs.steal import StealSpec
from sslsteal.specs.sweep import plan_sweep
from sslsteal.victim.defenses import build_defense

NEEDS = "wasserstein needs non-negative answers"
FIX = "set attack.loss_params.softmax: true or use another loss"


def _write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "file.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _sweep(tmp_path: Path, attack: dict[str, Any], defense: dict[str, Any] | None = None) -> Path:
    data = {"name": "t", "victim": tiny_victim_spec(), "attack": {"queries": 100} | attack}
    return _write(tmp_path, data | ({"defense": defense} if defense else {}))


def _problems(plan: Any, path: Path) -> list[str]:
    try:
        plan(path)
    except ConfigError as exc:
        return exc.problems
    return []


# --- run files --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attack", "refused"),
    [
        ({"method": "access_head", "loss": "wasserstein"}, "method access_head (the victim answers its projection head's output)"),
        ({"method": "recreate_head", "strategy": "augmented", "loss": "wasserstein"}, "method recreate_head (both sides pass through the recreated head)"),
        ({"method": "access_head", "loss": "wasserstein", "loss_params": {"softmax": True}}, None),
        ({"method": "direct", "loss": "wasserstein"}, None),
        ({"method": "access_head", "loss": "mse"}, None),
    ],
)
def test_a_run_file_refuses_wasserstein_on_head_outputs(attack: dict[str, Any], refused: str | None) -> None:
    data = {"victim": "victim.pt", "attack": {"queries": 100} | attack}
    if refused is None:
        parse(StealSpec, data)
        return
    with pytest.raises(ConfigError) as info:
        parse(StealSpec, data)
    assert info.value.problems == [f"attack.loss: {NEEDS}, but {refused} makes them signed: {FIX}"]


# --- sweep files ------------------------------------------------------------------------------------------------


def test_a_loss_in_one_grid_meets_a_method_in_another(tmp_path: Path) -> None:
    """Neither value is wrong alone (mse with access_head, wasserstein with direct): only their combination is."""
    attack = {"loss": {"grid": ["mse", "wasserstein"]}, "method": {"grid": ["direct", "access_head"]}}
    assert _problems(plan_sweep, _sweep(tmp_path, attack)) == [
        f"attack.loss.grid[1]: {NEEDS}, but method access_head (the victim answers its projection head's output) makes them signed: {FIX}"
        " (with attack.method = 'access_head')"
    ]
    assert _problems(plan_sweep, _sweep(tmp_path, attack | {"loss": {"grid": ["mse", "sliced_wasserstein"]}})) == []  # takes signed rows


@pytest.mark.parametrize(
    ("defense", "refused"),
    [
        (
            {"name": "noise", "mean": 0, "sigma": {"grid": [0, 0.1]}},
            "defense noise (mean 0, sigma 0.1) makes them signed: " + FIX + " (with defense.sigma = 0.1)",
        ),
        ({"name": "noise", "mean": 10, "sigma": {"grid": [0, 1]}}, None),  # 10 sigma above zero: never negative in practice
        (
            {"grid": [{"name": "round"}, {"name": "b4b"}]},
            "defense b4b (the secret per-account affine_pad_shuffle transformation) makes them signed: " + FIX + " (with defense = {'name': 'b4b'})",
        ),
        ({"grid": [{"name": "round"}, {"name": "topk"}, {"name": "pow"}, {"name": "similarity"}]}, None),
    ],
)
def test_a_fixed_loss_meets_every_searched_defense(tmp_path: Path, defense: dict[str, Any], refused: str | None) -> None:
    problems = _problems(plan_sweep, _sweep(tmp_path, {"loss": "wasserstein"}, defense))
    assert problems == ([] if refused is None else [f"attack.loss: {NEEDS}, but {refused}"])


def test_one_line_per_offending_loss_value(tmp_path: Path) -> None:
    """A loss grid against a sigma grid: one line for wasserstein, naming the first defense setting that signs it."""
    attack = {"loss": {"grid": ["mse", "wasserstein"]}}
    problems = _problems(plan_sweep, _sweep(tmp_path, attack, {"name": "noise", "sigma": {"grid": [0, 0.5, 1.0]}}))
    assert problems == [f"attack.loss.grid[1]: {NEEDS}, but defense noise (mean 0, sigma 0.5) makes them signed: {FIX} (with defense.sigma = 0.5)"]


# --- optimize files ---------------------------------------------------------------------------------------------


def _optimize(tmp_path: Path, attack: dict[str, Any], defense: dict[str, Any] | None = None) -> Path:
    data = {
        "name": "o",
        "victim": str(REPO / "sweeps" / "victims" / "tiny.yaml"),
        "attack": attack | {"epochs": 2},
        "optimize": {"budgets": [200, 400], "trials_per_budget": 3},
    }
    return _write(tmp_path, data | ({"defense": defense} if defense else {}))


def test_an_optimize_file_checks_every_combination(tmp_path: Path) -> None:
    attack = {"loss": {"choice": ["mse", "wasserstein"]}, "method": {"choice": ["direct", "access_head"]}}
    assert _problems(plan_optimize, _optimize(tmp_path, attack)) == [
        f"attack.loss.choice[1]: {NEEDS}, but method access_head (the victim answers its projection head's output) makes them signed: {FIX}"
        " (with attack.method = 'access_head')"
    ]
    assert _problems(plan_optimize, _optimize(tmp_path, attack | {"loss_params": {"softmax": True}})) == []
    ranged = {"name": "noise", "sigma": {"uniform": [0.0, 0.5]}}
    assert _problems(plan_optimize, _optimize(tmp_path, {"loss": {"choice": ["mse", "wasserstein"]}}, ranged)) == [
        f"attack.loss.choice[1]: {NEEDS}, but defense noise (mean 0, sigma 0.5) makes them signed: {FIX} (with defense.sigma = 0.5)"
    ]
    assert _problems(plan_optimize, _optimize(tmp_path, {"loss": {"choice": ["mse", "wasserstein"]}}, ranged | {"mean": 10})) == []


# --- the declarations against the code --------------------------------------------------------------------------

DEFENSE_CASES = [
    {"name": "none"},
    {"name": "noise", "mean": 0, "sigma": 0.1},
    {"name": "noise", "mean": 10, "sigma": 1},
    {"name": "noise", "mean": -1, "sigma": 0},
    {"name": "similarity", "threshold": 0.9},
    {"name": "similarity", "threshold": 0.9, "mean_big": 0},
    {"name": "pow", "base_bits": 0, "scale_bits": 0},
    {"name": "round", "decimals": -1},
    {"name": "topk", "k": 3},
    {"name": "b4b"},
    {"name": "b4b", "transform": "none"},
    {"name": "b4b", "transform": "rotation"},
    {"name": "b4b", "transform": "none", "calibration": "polynomial", "alpha": 0},
]


@pytest.mark.parametrize("config", DEFENSE_CASES, ids=lambda c: "-".join(f"{v}" for v in c.values()))
def test_a_defense_signs_answers_exactly_when_it_says_so(config: dict[str, Any]) -> None:
    """Non-negative outputs with zeros (as ReLU-pooled ones have), every row sent twice so detectors flag repeats."""
    gen = torch.Generator().manual_seed(0)
    rows = torch.randn(64, 16, generator=gen).relu()
    out = torch.cat([rows, rows])
    defense = build_defense(config)
    state = defense.init_state("a")
    answers, _ = defense.apply(state, out, out, out)
    _, params = defense_params(config)
    assert bool((answers < 0).any()) == (params.signs() is not None), params.signs()


def test_the_declared_need_for_non_negative_inputs_is_the_losses_own() -> None:
    signed = torch.randn(8, 16, generator=torch.Generator().manual_seed(0))
    declared = [name for name, params in LOSSES.items() if params().needs_nonnegative()]
    assert declared == ["wasserstein"]  # tests/test_losses.py's NON_NEGATIVE: the losses whose defaults refuse signed rows
    for name in declared:
        params = LOSSES[name]
        with pytest.raises(ValueError, match="negative"):
            make_loss(name, 16)(signed, signed.relu())
        assert params.signed_fix  # the fix quoted to the user lifts the need, and the loss then takes signed rows
        key, value = params.signed_fix.split(": ")
        hparams = {key: yaml.safe_load(value)}
        assert not params.model_validate(hparams).needs_nonnegative()
        assert torch.isfinite(make_loss(name, 16, **hparams)(signed, signed))


@pytest.mark.parametrize("name", list(ENCODERS))
def test_the_victims_representation_is_non_negative(name: str) -> None:
    """What lets `direct` use such a loss: every encoder ends in ReLU and pooling."""
    encoder = build_encoder(name).eval()
    with torch.no_grad():
        rep = encoder(torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)))
    assert rep.min() >= 0 and rep.max() > 0


def test_validate_refuses_the_run_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sslsteal.cli import main

    run = {"victim": "victim.pt", "attack": {"method": "access_head", "loss": "wasserstein", "queries": 100}}
    assert main(["validate", str(_write(tmp_path, run))]) == 2
    assert f"attack.loss: {NEEDS}, but method access_head" in capsys.readouterr().err
