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
        "attack": {"method": "direct", "loss": "infonce", "queries": 1000, "query_data": "cifar10:test", "epochs": 3},
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
