"""End to end on real CIFAR-10 images: the tiny victim config is trained, then stolen through `sslsteal steal`."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import REPO

from sslsteal.cli import main
from sslsteal.config import load
from sslsteal.run import RunSpec, run_steal

pytestmark = pytest.mark.slow


def test_steal_tiny_victim_on_cifar10(cifar_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = {
        "victim": str(REPO / "sweeps" / "victims" / "tiny.yaml"),
        "attack": {"method": "direct", "loss": "infonce", "queries": 1000, "query_data": "cifar10:test[:9000]", "epochs": 3},
        "data_root": str(cifar_root),
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(run))
    assert main(["steal", str(path), "--quiet"]) == 0
    table = capsys.readouterr().out
    assert "queries used 1000" in table and "cifar10" in table

    result = run_steal(load(RunSpec, path), config_path=path, progress=False)  # victim now cached: no retraining
    m = result["metrics"]
    assert m["queries_used"] == 1000
    assert 10.0 < m["acc.cifar10"] < 100.0 and 10.0 < m["victim_acc.cifar10"] < 100.0
    assert m["acc_ratio.cifar10"] == pytest.approx(m["acc.cifar10"] / m["victim_acc.cifar10"])
    gain = (m["acc.cifar10"] - m["random_acc.cifar10"]) / (m["victim_acc.cifar10"] - m["random_acc.cifar10"])
    assert m["gain_recovered.cifar10"] == pytest.approx(gain)
    assert 0.3 < m["fidelity.cosine"] <= 1.0 and m["fidelity.l2"] > 0
    # the paper's protocol: the tiny probe's 2,000 test images are capped by the 1,000 outside the pool test[:9000]
    assert m["eval.test_images.cifar10"] == 1000.0 and m["acc.cifar10.hi"] - m["acc.cifar10.lo"] > 5.0


def test_ownership_in_a_run_and_verify_from_the_cli(cifar_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A stolen tiny encoder is saved, then `sslsteal verify` tests it and, as a control, the reference encoder itself."""
    import json

    from sslsteal.reference import get_reference, reference_spec
    from sslsteal.run import resolve_victim
    from sslsteal.victim.checkpoint import save_victim
    from sslsteal.victim.train import train_victim

    victim_yaml = REPO / "sweeps" / "victims" / "tiny.yaml"
    run = {
        "victim": str(victim_yaml),
        "attack": {"method": "direct", "loss": "mse", "queries": 2000, "query_data": "cifar10:train", "epochs": 5},
        "evaluate": {"ownership": ["watermark", "distance", "dataset_inference"], "ownership_images": 300},
        "data_root": str(cifar_root),
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(run))
    stolen = tmp_path / "stolen.pt"
    out = tmp_path / "steal.json"
    assert main(["steal", str(path), "--quiet", "--save-encoder", str(stolen), "--output", str(out)]) == 0
    metrics = json.loads(out.read_text())["metrics"]
    for test in ("watermark", "distance", "dataset_inference"):
        assert 0.0 <= metrics[f"ownership.{test}.p_value"] <= 1.0
    assert "ownership watermark: p =" in capsys.readouterr().out

    victim = resolve_victim(str(victim_yaml), data_root=str(cifar_root), progress=False)
    reference = get_reference(victim, data_root=str(cifar_root), progress=False)
    assert reference.spec == reference_spec(victim.spec).model_copy(update={"data_root": str(cifar_root)})
    assert reference.predictor is None and reference.spec.seed == victim.spec.seed + 1

    honest = tmp_path / "honest"  # another independently trained encoder (seed + 2): what an innocent party has
    save_victim(train_victim(reference_spec(reference.spec), progress=False), honest)

    common = ["verify", "--victim", str(victim_yaml), "--data-root", str(cifar_root), "--images", "2000", "--quiet"]
    verdicts = {}
    for name, suspect in (("stolen", stolen), ("honest", honest)):
        report = tmp_path / f"{name}.json"
        assert main([*common, "--suspect", str(suspect), "--tests", "watermark", "distance", "--output", str(report)]) == 0
        verdicts[name] = json.loads(report.read_text())["metrics"]
    printed = capsys.readouterr().out
    assert "stolen from tiny-" in printed and "victim checkpoint tiny-ref-ref-" in printed
    # The stolen copy sits far closer to the victim than the independent reference does; the honest encoder about as
    # close (not significance: with 2,000 paired images even two random seeds differ significantly, see RESULTS.md).
    def closeness(name: str) -> float:
        return verdicts[name]["ownership.distance.suspect_distance"] / verdicts[name]["ownership.distance.reference_distance"]

    assert verdicts["stolen"]["ownership.distance.p_value"] < 0.05
    assert closeness("stolen") < 0.5 < 0.9 < closeness("honest")
    # The watermark test is not asserted here. On the tiny victim (about 66% on its own images after 3 epochs),
    # an independently initialised 5-epoch copy carries none of the watermark measurably, while today's test,
    # which compares against one reference with per-view n, flagged the honest encoder in one run (p = 0.004).
    # The stolen-above-honest ordering this test once asserted came from the stolen encoder starting at the
    # victim's own initial weights. Issue 11 rebuilds the test (3 references, chance as the null).
    assert {"ownership.watermark.p_value", "ownership.watermark.acc"} <= set(verdicts["honest"])


def test_verify_usage_errors(cifar_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    victim_yaml = str(REPO / "sweeps" / "victims" / "tiny.yaml")
    assert main(["verify", "--victim", victim_yaml, "--suspect", str(tmp_path / "missing.pt"), "--data-root", str(cifar_root)]) == 2
    assert "missing.pt" in capsys.readouterr().err
    assert main(["verify", "--victim", victim_yaml, "--suspect", "x.pt", "--tests", "nope"]) == 2
    assert "--tests: unknown ownership test 'nope'" in capsys.readouterr().err
