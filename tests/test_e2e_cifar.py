"""End to end on real CIFAR-10 images: the tiny victim config is trained, then stolen through `sslsteal steal`."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import REPO

from sslsteal.cli import main
from sslsteal.pipeline.steal import run_steal
from sslsteal.specs.base import load
from sslsteal.specs.steal import StealSpec

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

    result = run_steal(load(StealSpec, path), config_path=path, progress=False)  # victim now cached: no retraining
    m = result["metrics"]
    assert m["queries_used"] == 1000
    assert 10.0 < m["acc.cifar10"] < 100.0 and 10.0 < m["victim_acc.cifar10"] < 100.0
    assert m["acc_ratio.cifar10"] == pytest.approx(m["acc.cifar10"] / m["victim_acc.cifar10"])
    gain = (m["acc.cifar10"] - m["random_acc.cifar10"]) / (m["victim_acc.cifar10"] - m["random_acc.cifar10"])
    assert m["gain_recovered.cifar10"] == pytest.approx(gain)
    assert 0.3 < m["fidelity.cosine"] <= 1.0 and m["fidelity.l2"] > 0
    # the paper's protocol: the tiny probe's 2,000 test images are capped by the 1,000 outside the pool test[:9000]
    assert m["eval.test_images.cifar10"] == 1000.0 and m["acc.cifar10.hi"] - m["acc.cifar10.lo"] > 5.0


def test_ownership_honest_encoders_pass_a_stolen_copy_is_flagged(cifar_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """On the tiny victim, references 1-3 calibrate the tests; references 4 and 5 (independently seeded honest
    encoders) are flagged by no test, while a copy stolen through the API is flagged by the watermark test."""
    import json

    from sslsteal.pipeline.steal import resolve_victim
    from sslsteal.victim.reference import get_references, reference_spec

    victim_yaml = REPO / "sweeps" / "victims" / "tiny.yaml"
    tests = ["watermark", "dataset_inference", "dataset_inference_gmm", "noise_ball", "distance"]
    run = {  # no flips: they erase the rotation watermark from a copy (docs/ownership.md)
        "victim": str(victim_yaml),
        "attack": {
            "method": "direct",
            "loss": "mse",
            "queries": 3000,
            "query_data": "cifar10:test[:9000]",
            "epochs": 30,
            "batch_size": 256,
            "lr": 1.0e-3,
            "augment": "none",
        },  # the recipe this test was calibrated with (the default's smaller batch and larger lr train longer)
        "evaluate": {"ownership": ["watermark", "distance"], "ownership_images": 500},  # all five: the verify runs below
        "data_root": str(cifar_root),
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(run))
    stolen = tmp_path / "stolen.pt"
    out = tmp_path / "steal.json"
    assert main(["steal", str(path), "--quiet", "--save-encoder", str(stolen), "--output", str(out)]) == 0
    in_run = json.loads(out.read_text())["metrics"]
    assert in_run["ownership.watermark.stolen"] == 1.0 and in_run["ownership.watermark.p_value"] < 0.05
    assert in_run["ownership.watermark.references"] == 3.0 and in_run["eval.public_images"] == 500.0
    assert "ownership watermark: stolen (p = " in capsys.readouterr().out

    victim = resolve_victim(str(victim_yaml), data_root=str(cifar_root), progress=False)
    honest = get_references(victim, [4, 5], data_root=str(cifar_root), progress=False)
    assert [h.spec.seed for h in honest] == [victim.spec.seed + i for i in (4, 5)] and all(h.predictor is None for h in honest)
    assert honest[0].spec == reference_spec(victim.spec, 4).model_copy(update={"data_root": str(cifar_root)})

    common = ["verify", "--victim", str(victim_yaml), "--data-root", str(cifar_root), "--images", "500", "--quiet"]
    reports = {}
    for name, suspect in [("stolen", stolen)] + [(h.spec.name, h.path.parent) for h in honest if h.path is not None]:
        report = tmp_path / f"{name}.json"
        assert main([*common, "--suspect", str(suspect), "--output", str(report)]) == 0
        reports[name] = json.loads(report.read_text())
    printed = capsys.readouterr().out
    assert "stolen from tiny-" in printed and "victim checkpoint tiny-ref4-" in printed and "references: tiny-ref-" in printed
    assert len(reports) == 3
    calibrating = get_references(victim, [1], data_root=str(cifar_root), progress=False)[0]
    assert calibrating.path is not None and main([*common, "--suspect", str(calibrating.path.parent)]) == 2
    assert "--suspect is reference tiny-ref-" in capsys.readouterr().err
    for name, report in reports.items():
        m = report["metrics"]
        for test in tests:
            key = f"ownership.{test}."
            assert m[key + "references"] == 3.0, (name, test)
            if name != "stolen":  # an honest encoder: not stolen (p > 0.05) or inconclusive, by every test
                assert m[key + "stolen"] == 0.0 and (m[key + "inconclusive"] == 1.0 or m[key + "p_value"] > 0.05), (name, test, m)
    stolen_m = reports["stolen"]["metrics"]
    assert stolen_m["ownership.watermark.stolen"] == 1.0 and stolen_m["ownership.watermark.p_value"] < 0.05
    # the positive control holds: the victim's own watermark stands out from its references, and the copy carries it
    assert stolen_m["ownership.watermark.victim_p"] < 0.05 and stolen_m["ownership.watermark.acc"] > 55.0
    # dataset inference cannot tell the victim from references trained on the same images: it says so
    assert stolen_m["ownership.dataset_inference.inconclusive"] == 1.0 and "victim itself" in reports["stolen"]["inconclusive"]["dataset_inference"]

    # the tests' public images: none in the victim's training set, none the attacker queried (its whole pool)
    from sslsteal.data import loaders
    from sslsteal.pipeline.steal import evidence_images
    from sslsteal.specs.datasets import parse_ref

    private, public = evidence_images(victim.spec, 500, str(cifar_root), 0, parse_ref("cifar10:test[:9000]"))
    trained = loaders.load(victim.spec.data, root=str(cifar_root), size=victim.spec.train_images, seed=victim.spec.seed)
    assert private.name == trained.name == "cifar10:train" and set(private.positions.tolist()) <= set(trained.positions.tolist())
    assert public.name == "cifar10:test" and len(public) == 500 and public.positions.min() >= 9000


def test_verify_usage_errors(cifar_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    victim_yaml = str(REPO / "sweeps" / "victims" / "tiny.yaml")
    assert main(["verify", "--victim", victim_yaml, "--suspect", str(tmp_path / "missing.pt"), "--data-root", str(cifar_root)]) == 2
    assert "missing.pt" in capsys.readouterr().err
    assert main(["verify", "--victim", victim_yaml, "--suspect", "x.pt", "--tests", "nope"]) == 2
    assert "--tests: unknown ownership test 'nope'" in capsys.readouterr().err
    assert main(["verify", "--victim", victim_yaml, "--suspect", "x.pt", "--references", "1", "2"]) == 2
    assert "--references: need at least 3 distinct reference numbers" in capsys.readouterr().err
    assert main(["verify", "--victim", victim_yaml, "--suspect", "x.pt", "--alpha", "1.5"]) == 2
    assert "--alpha: must be in (0, 1)" in capsys.readouterr().err
