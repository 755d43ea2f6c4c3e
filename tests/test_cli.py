"""The command line: bad configs give exit code 2 and one line naming the key; a run prints its table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import tiny_victim_spec

from sslsteal.cli import main


def _write(tmp_path: Path, data: object, name: str = "run.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def _run(tmp_path: Path, attack: dict, **extra: object) -> dict:
    return {"victim": tiny_victim_spec(), "attack": attack, **extra}


BAD = [
    (_run, {"loss": "l2-ish", "queries": 100}, "attack.loss: unknown loss 'l2-ish'"),
    (_run, {"loss": "mse", "queries": -3}, "attack.queries: Input should be greater than 0"),
    (_run, {"loss": "mse", "queries": 100, "query_data": "mnist3d:test"}, "attack.query_data: unknown dataset 'mnist3d'"),
    (_run, {"loss": "mse"}, "attack.queries: required key is missing"),
    (_run, {"loss": "mse", "queries": 100, "lr": "fast"}, "attack.lr: Input should be a valid number"),
]


@pytest.mark.parametrize("build,attack,needle", BAD)
def test_bad_run_configs_exit_2_with_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str], build, attack: dict, needle: str) -> None:
    path = _write(tmp_path, build(tmp_path, attack))
    assert main(["steal", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "Traceback" not in err


def test_several_problems_are_reported_together(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, {"victim": tiny_victim_spec(epochs=0), "attack": {"loss": "nope", "queries": 0}, "extra": 1})
    assert main(["steal", str(path)]) == 2
    err = capsys.readouterr().err
    for key in ("victim.epochs", "attack.loss", "attack.queries", "extra: unknown key"):
        assert key in err, err
    assert len(err.strip().splitlines()) == 4


def test_budget_larger_than_query_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, _run(tmp_path, {"loss": "mse", "queries": 10_000, "query_data": "synthetic:test"}))
    assert main(["steal", str(path)]) == 2
    assert "attack.queries: 10000 queries need 10000 images but synthetic:test has 500" in capsys.readouterr().err


def test_missing_file_and_bad_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["victim", "train", str(tmp_path / "absent.yaml")]) == 2
    assert "file not found" in capsys.readouterr().err
    path = _write(tmp_path, "name: [unclosed\n", "bad.yaml")
    assert main(["victim", "train", str(path)]) == 2
    assert "not valid YAML" in capsys.readouterr().err


def test_usage_error_exit_code_from_the_console_script(tmp_path: Path) -> None:
    path = _write(tmp_path, _run(tmp_path, {"loss": "unknown", "queries": 5}))
    proc = subprocess.run([sys.executable, "-m", "sslsteal.cli", "steal", str(path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "attack.loss" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "sslsteal.cli", "nonsense"], capture_output=True, text=True)
    assert proc.returncode == 2


def test_validate_into_a_closed_pipe_exits_quietly() -> None:
    """`sslsteal validate FILE | head` whose reader has gone: exit 141 as a shell tool would, and no traceback."""
    sweep = Path(__file__).resolve().parents[1] / "sweeps" / "quickstart.yaml"
    proc = subprocess.Popen([sys.executable, "-m", "sslsteal.cli", "validate", str(sweep)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before the command writes: its first write meets a closed pipe
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 141, err
    assert err == ""


def test_steal_on_synthetic_prints_a_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, _run(tmp_path, {"loss": "mse", "queries": 500, "query_data": "synthetic:train", "epochs": 2}))
    out_json = tmp_path / "result.json"
    assert main(["steal", str(path), "--quiet", "--set", "attack.queries=200", "--set", "attack.loss=cosine", "--output", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert "queries used 200" in out and "direct/cosine" in out and "synthetic" in out and "fidelity: cosine" in out
    record = json.loads(out_json.read_text())
    assert record["config"]["attack"]["loss"] == "cosine" and record["metrics"]["queries_used"] == 200


def test_bad_override(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, _run(tmp_path, {"loss": "mse", "queries": 100}))
    assert main(["steal", str(path), "--set", "attack.queries"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err
    assert main(["steal", str(path), "--set", "attack.queries=-1"]) == 2
    assert "attack.queries: Input should be greater than 0" in capsys.readouterr().err


def test_victim_train_reference_trains_reference_n(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`victim train CONFIG --reference 2` trains the victim's recipe with seed + 2 and no watermark, then finds it cached."""
    from conftest import tiny_victim_spec

    config = tmp_path / "unit.yaml"
    config.write_text(yaml.safe_dump(tiny_victim_spec(watermark={"weight": 1.0})))
    assert main(["victim", "train", str(config), "--reference", "2", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "unit-ref2-" in out and "(trained now)" in out and "watermark.acc" not in out
    assert main(["victim", "train", str(config), "--reference", "2", "--quiet"]) == 0
    assert "(cached)" in capsys.readouterr().out
