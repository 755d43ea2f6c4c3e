"""Victim spec hashing, SimCLR training with the rotation watermark, checkpoint cache, shipped checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import REPO, tiny_victim_spec

from sslsteal.evaluation.watermark import watermark_accuracy
from sslsteal.specs.base import ConfigError, load, parse
from sslsteal.specs.victim import VictimSpec
from sslsteal.victim import train as victim_train
from sslsteal.victim.checkpoint import checkpoint_hash, load_victim, save_victim
from sslsteal.victim.train import get_or_train, nt_xent, train_victim


def test_hash_ignores_data_root_and_evaluation_but_not_recipe() -> None:
    base = VictimSpec.model_validate(tiny_victim_spec())
    moved = VictimSpec.model_validate(tiny_victim_spec(data_root="/elsewhere", evaluate={"downstream": ["cifar10"]}))
    assert base.config_hash() == moved.config_hash()
    assert base.config_hash() != VictimSpec.model_validate(tiny_victim_spec(seed=1)).config_hash()
    assert base.key.startswith("unit-") and len(base.config_hash()) == 12


def test_nt_xent_matches_reference() -> None:
    torch.manual_seed(0)
    z1, z2 = torch.randn(3, 4), torch.randn(3, 4)
    z = torch.nn.functional.normalize(torch.cat([z1, z2]), dim=1)
    total = 0.0
    for i in range(6):
        pos = (i + 3) % 6
        logits = [float(z[i] @ z[k]) / 0.5 for k in range(6) if k != i]
        total += -(float(z[i] @ z[pos]) / 0.5 - torch.logsumexp(torch.tensor(logits), 0).item())
    assert nt_xent(z1, z2, 0.5).item() == pytest.approx(total / 6, rel=1e-5)


def test_bad_victim_config_names_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        parse(VictimSpec, tiny_victim_spec(encoder="vgg", epochs=-1, colour=1))
    text = str(info.value)
    assert "encoder: unknown encoder 'vgg'" in text and "epochs:" in text and "colour: unknown key" in text


def test_watermarked_victim_trains_and_its_watermark_is_detectable(cifar_root: Path) -> None:
    """Real photos have an 'up', so the rotation interval is learnable (symmetric synthetic patterns are not)."""
    spec = VictimSpec.model_validate(
        tiny_victim_spec(data="cifar10:train", train_images=2048, epochs=4, data_root=str(cifar_root), watermark={"weight": 1.0, "fraction": 1.0})
    )
    victim = train_victim(spec, progress=False)
    assert len(victim.history) == 4 and all(torch.isfinite(torch.tensor(h["loss"])) for h in victim.history)
    assert victim.history[-1]["loss"] < victim.history[0]["loss"]
    from sslsteal.data import loaders

    images = loaders.load("cifar10:test", root=cifar_root, size=512).images
    own = watermark_accuracy(victim.encoder.eval(), victim.predictor, images)
    torch.manual_seed(123)
    from sslsteal.models import build_encoder

    other = watermark_accuracy(build_encoder("small_cnn").eval(), victim.predictor, images)
    assert own > 65.0, own
    assert own > other + 10.0, (own, other)


def test_get_or_train_caches_by_hash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = VictimSpec.model_validate(tiny_victim_spec(name="cache-me"))
    first, trained = get_or_train(spec, progress=False)
    written = first.stat().st_mtime_ns

    def retrain(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cached victim was trained again")

    monkeypatch.setattr(victim_train, "train_victim", retrain)
    again, trained_again = get_or_train(spec, progress=False)
    assert trained and not trained_again and first == again and first.stat().st_mtime_ns == written
    assert checkpoint_hash(first) == spec.config_hash()
    victim = load_victim(first)
    assert victim.spec == spec and victim.predictor is None
    shipped = tmp_path / "checkpoints" / spec.key
    save_victim(victim, shipped)
    found, trained = get_or_train(spec, config_path=tmp_path / "victim.yaml", progress=False)
    assert found == shipped / "checkpoint.pt" and not trained


SHIPPED = sorted((REPO / "sweeps" / "victims" / "checkpoints").glob("*/checkpoint.pt"))


@pytest.mark.parametrize("checkpoint", SHIPPED, ids=[p.parent.name for p in SHIPPED])
def test_shipped_checkpoint_matches_its_config(checkpoint: Path) -> None:
    from sslsteal.victim.reference import reference_spec

    victim = load_victim(checkpoint)
    base, ref, index = victim.spec.name.partition("-ref")  # a shipped reference encoder is derived from its victim's config
    spec = load(VictimSpec, REPO / "sweeps" / "victims" / f"{base}.yaml")
    if ref:
        spec = reference_spec(spec, int(index or 1))
    assert checkpoint.parent.name == spec.key and checkpoint_hash(checkpoint) == spec.config_hash()
    with torch.no_grad():
        assert victim.encoder(torch.rand(2, 3, 32, 32)).shape == (2, victim.encoder.dim)


def test_reference_encoder_is_derived_and_found_beside_the_shipped_victim() -> None:
    from sslsteal.victim.reference import find_references, reference_spec

    shipped = REPO / "sweeps" / "victims" / "checkpoints"
    victim = load_victim(shipped / "cifar10-cpu-wm-331374b057ed")
    spec = reference_spec(victim.spec)
    assert spec.name == "cifar10-cpu-wm-ref" and spec.seed == victim.spec.seed + 1 and spec.watermark is None
    assert spec.model_dump(exclude={"name", "seed", "watermark"}) == victim.spec.model_dump(exclude={"name", "seed", "watermark"})
    found = find_references(victim, [1, 2, 3])
    assert found[0] == (spec, shipped / spec.key / "checkpoint.pt")  # no training needed
    assert [s for s, _ in found] == [reference_spec(victim.spec, i) for i in (1, 2, 3)]
    assert all(path == shipped / s.key / "checkpoint.pt" for s, path in found)  # all three are shipped
