"""The attacker is independent of the victim, and nothing scored was queried (checked on the real index sets)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_victim_spec

from sslsteal import attacks
from sslsteal.attacks import matching
from sslsteal.attacks.training import attacker_encoder
from sslsteal.core.seeding import derive_seed
from sslsteal.data import loaders
from sslsteal.data.loaders import ImageSet
from sslsteal.evaluation import protocol as evaluation_protocol
from sslsteal.evaluation.baselines import random_encoder
from sslsteal.evaluation.protocol import ProtocolError, check_disjoint
from sslsteal.pipeline.steal import query_images, steal_and_evaluate
from sslsteal.specs.attack import AttackSpec
from sslsteal.specs.base import ConfigError, parse
from sslsteal.specs.datasets import parse_ref
from sslsteal.specs.evaluate import EvaluateSpec
from sslsteal.specs.protocol import protocol_problems
from sslsteal.specs.steal import StealSpec
from sslsteal.specs.victim import VictimSpec
from sslsteal.victim.checkpoint import build_victim


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stolen_init_differs_from_the_victims_and_the_floor_from_both(seed: int) -> None:
    victim = build_victim(VictimSpec.model_validate(tiny_victim_spec(seed=seed))).encoder
    stolen = attacker_encoder(AttackSpec(queries=10, query_data="synthetic:train", seed=seed), "small_cnn")
    floors = [random_encoder("small_cnn", i) for i in range(3)]
    assert not _same(stolen, victim)
    for floor in floors:
        assert not _same(floor, victim) and not _same(floor, stolen)
    # the attacker's own stream is reproducible, and another attacker seed is another init
    assert _same(stolen, attacker_encoder(AttackSpec(queries=10, query_data="synthetic:train", seed=seed), "small_cnn"))
    assert not _same(stolen, attacker_encoder(AttackSpec(queries=10, query_data="synthetic:train", seed=seed + 1), "small_cnn"))


def test_attacker_query_subset_is_not_the_victims_training_subset() -> None:
    """Same seed, same split: the victim's training draw and the attacker's query draw come from different streams."""
    spec = VictimSpec.model_validate(tiny_victim_spec(train_images=256, seed=0))
    trained = loaders.load(spec.data, size=spec.train_images, seed=spec.seed)
    queried = query_images(AttackSpec(queries=256, query_data="synthetic:train", seed=0))
    shared = np.intersect1d(trained.positions.numpy(), queried.positions.numpy())
    assert len(shared) < 0.5 * 256  # independent draws of 256 of 2000 share about 33; the same stream would share all 256
    assert derive_seed(0, "attacker.queries") != 0


def test_slices_and_positions() -> None:
    ref = parse_ref("cifar10:test[:9000]")
    assert (ref.start, ref.stop, ref.size, str(ref)) == (0, 9000, 9000, "cifar10:test[0:9000]")
    assert str(parse_ref("cifar10:test")) == "cifar10:test" and parse_ref("cifar10:test[9000:]").size == 1000
    assert ref.overlap(parse_ref("cifar10:test[8000:]")) == 1000 and ref.overlap(parse_ref("cifar10:train")) == 0
    for bad, message in [("cifar10:test[5:5]", "empty or out of range"), ("cifar10:test[:20000]", "out of range"), ("cifar10:test[a:]", "malformed")]:
        with pytest.raises(ValueError, match=message):
            parse_ref(bad)
    part = loaders.load("synthetic:test[100:300]", size=50, seed=3)
    assert len(part) == 50 and bool(((part.positions >= 100) & (part.positions < 300)).all())
    whole = loaders.load("synthetic:test")
    assert torch.equal(part.images, whole.images[part.positions])
    rest = whole.without(parse_ref("synthetic:test[100:300]"))
    assert len(rest) == 300 and not bool(((rest.positions >= 100) & (rest.positions < 300)).any())


def test_check_disjoint_raises_on_any_shared_image() -> None:
    whole = loaders.load("synthetic:test")
    check_disjoint("probe", whole.take(slice(0, 10)), whole.take(slice(10, 20)))
    with pytest.raises(ProtocolError, match="1 of its 10 synthetic:test images"):
        check_disjoint("probe", whole.take(slice(0, 10)), whole.take(slice(9, 20)))
    other = loaders.load("synthetic:train")
    check_disjoint("probe", whole, other)  # another split shares nothing
    with pytest.raises(ProtocolError, match="ownership public images: 2 of its 10 synthetic:test images were in the victim's training set"):
        check_disjoint("ownership public images", whole.take(slice(0, 10)), whole.take(slice(8, 12)), against="in the victim's training set")


def _spec(tmp_path: Path, attack_: dict, evaluate: dict) -> StealSpec:
    return parse(StealSpec, {"victim": tiny_victim_spec(), "attack": attack_, "evaluate": evaluate})


def test_validation_refuses_a_pool_that_leaves_nothing_to_score(tmp_path: Path) -> None:
    victim = VictimSpec.model_validate(tiny_victim_spec())
    spec = _spec(tmp_path, {"loss": "mse", "queries": 100, "query_data": "synthetic:test"}, {})
    problems = protocol_problems(spec.attack, spec.evaluate, victim)
    assert any(p.startswith("attack.query_data: the query pool synthetic:test leaves 0 synthetic:test images") for p in problems), problems
    assert any(p.startswith("evaluate.ownership") for p in protocol_problems(spec.attack, parse(EvaluateSpec, {"ownership": ["distance"]}), victim))
    spec = _spec(tmp_path, {"loss": "mse", "queries": 100, "query_data": "synthetic:train"}, {"val_images": 100})
    assert any(p.startswith("evaluate.val_images") for p in protocol_problems(spec.attack, spec.evaluate, victim))
    fine = _spec(tmp_path, {"loss": "mse", "queries": 100, "query_data": "synthetic:test[:300]"}, {"val_images": 100, "ownership": ["distance"]})
    assert protocol_problems(fine.attack, fine.evaluate, victim) == []


def test_every_scored_set_is_disjoint_from_the_queries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe's test and validation images, fidelity and ownership public images: the real index sets, recorded
    where they are scored, share nothing with the images the attacker queried, though all come from the pool's split."""
    seen: dict[str, tuple[ImageSet, ImageSet]] = {}
    real = check_disjoint

    def spy(role: str, scored: ImageSet, queried: ImageSet | None, **kwargs: str) -> None:
        assert queried is not None
        if "against" in kwargs:  # ownership public images against the victim's training set
            seen["victim training set"] = (scored, queried)
        else:
            seen[role.split(" (")[0]] = (scored, queried)
        real(role, scored, queried, **kwargs)

    monkeypatch.setattr(evaluation_protocol, "check_disjoint", spy)
    victim_spec = VictimSpec.model_validate(
        tiny_victim_spec(data="synthetic:train", evaluate={"downstream": ["synthetic"], "train_images": 500, "test_images": 200})
    )
    victim = build_victim(victim_spec).eval()
    spec = parse(
        StealSpec,
        {
            "victim": victim_spec.model_dump(),
            "attack": {"loss": "mse", "queries": 250, "query_data": "synthetic:test[:300]", "epochs": 1, "batch_size": 64},
            "evaluate": {"val_images": 200, "fidelity_data": "synthetic:test", "ownership": ["distance"], "ownership_images": 50},
        },
    )
    stolen, metrics = steal_and_evaluate(spec, victim, lambda x: victim.embed(x), torch.device("cpu"), references=[victim] * 3)
    public, trained = seen.pop("victim training set")
    assert (trained.name, public.name) == ("synthetic:train", "synthetic:test")  # another split: no image the victim trained on
    assert set(seen) == {"probe test set", "validation set", "fidelity images", "ownership public images"}
    queried = stolen.queried.positions.numpy()
    assert len(queried) == 250 and queried.max() < 300
    for role, (scored, q) in seen.items():
        assert np.array_equal(q.positions.numpy(), queried), role
        if scored.name == "synthetic:test":
            assert len(np.intersect1d(scored.positions.numpy(), queried)) == 0, role
    # the test split minus the whole pool: 200 of the 200 images left, the same for every seed
    assert metrics["eval.test_images.synthetic"] == 200 and metrics["eval.fidelity_images"] == 200
    assert metrics["acc.synthetic.lo"] < metrics["acc.synthetic"] < metrics["acc.synthetic.hi"]
    assert metrics["eval.val_images.synthetic"] == 200 and "val_acc.synthetic" in metrics


def test_overlap_fails_loudly_when_evaluation_would_score_queried_images(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the pool removal disabled, the overlap check catches the queried images before anything is scored."""
    monkeypatch.setattr(ImageSet, "without", lambda self, pool: self)
    victim_spec = VictimSpec.model_validate(tiny_victim_spec())
    victim = build_victim(victim_spec).eval()
    spec = parse(StealSpec, {"victim": victim_spec.model_dump(), "attack": {"loss": "mse", "queries": 100, "query_data": "synthetic:test[:300]", "epochs": 1}})
    with pytest.raises(ProtocolError, match="probe test set"):
        steal_and_evaluate(spec, victim, lambda x: victim.embed(x), torch.device("cpu"))


def test_steal_uses_the_attackers_own_init(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[torch.nn.Module] = []
    real = matching.attacker_encoder

    def record(spec: AttackSpec, name: str) -> torch.nn.Module:
        encoder = real(spec, name)
        built.append(copy.deepcopy(encoder))
        return encoder

    monkeypatch.setattr(matching, "attacker_encoder", record)
    victim = build_victim(VictimSpec.model_validate(tiny_victim_spec())).eval()
    spec = AttackSpec(loss="mse", queries=64, query_data="synthetic:train", epochs=1, batch_size=32)
    images = query_images(spec)
    attacks.steal(spec, lambda x: victim.embed(x), images.images, images.labels, encoder_name="small_cnn")
    assert len(built) == 1 and not _same(built[0], victim.encoder)


def test_a_run_config_with_an_overlapping_pool_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    from sslsteal.cli import main

    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({"victim": tiny_victim_spec(), "attack": {"loss": "mse", "queries": 100, "query_data": "synthetic:test"}}))
    assert main(["steal", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "attack.query_data" in err and "synthetic:test[:450]" in err
    with pytest.raises(ConfigError):
        parse(AttackSpec, {"queries": 10, "query_data": "synthetic:test[400:]", "loss": "nope"})


def test_the_pruning_monitor_never_holds_pool_images() -> None:
    from sslsteal.evaluation.probe import holdout_task

    pool = parse_ref("synthetic:train[:1500]")
    task = holdout_task("synthetic", 300, 150, pool=pool)
    for part in (task.train, task.test):
        assert len(part) and bool((part.positions >= 1500).all())
    assert len(task.train) + len(task.test) == 450 and len(np.intersect1d(task.train.positions, task.test.positions)) == 0


def test_the_reference_encoder_is_independent_of_the_victim() -> None:
    """Another init, another training subset and data order: the reference trains from its own raw seed."""
    from sslsteal.victim.reference import reference_spec

    victim = VictimSpec.model_validate(tiny_victim_spec(train_images=256))
    reference = reference_spec(victim)
    assert reference.seed != victim.seed and reference.watermark is None
    assert not _same(build_victim(reference).encoder, build_victim(victim).encoder)
    mine = loaders.load(victim.data, size=victim.train_images, seed=victim.seed).positions.numpy()
    theirs = loaders.load(reference.data, size=reference.train_images, seed=reference.seed).positions.numpy()
    assert len(np.intersect1d(mine, theirs)) < 0.5 * 256


def test_numbered_references_are_independent_of_each_other() -> None:
    from sslsteal.victim.reference import reference_spec

    victim = VictimSpec.model_validate(tiny_victim_spec())
    specs = [reference_spec(victim, i) for i in (1, 2, 3)]
    assert [s.seed for s in specs] == [victim.seed + 1, victim.seed + 2, victim.seed + 3]
    assert [s.name for s in specs] == ["unit-ref", "unit-ref2", "unit-ref3"] and specs[0] == reference_spec(victim)
    encoders = [build_victim(s).encoder for s in specs]
    assert not any(_same(a, b) for i, a in enumerate(encoders) for b in encoders[i + 1 :])
    with pytest.raises(ValueError, match="reference index"):
        reference_spec(victim, 0)
