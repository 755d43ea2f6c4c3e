"""The shared victim actor on a real local Ray runtime: accounts, budgets, isolation, hostile input, restarts."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest
import ray
import torch
from conftest import tiny_victim_spec

from sslsteal.orchestration.actor import RemoteQuery, create_service, wait_until_serving
from sslsteal.specs.victim import ServiceSpec, VictimSpec
from sslsteal.victim.errors import InvalidQuery, ProofOfWorkRequired, QueryBudgetExceeded, UnknownAccount
from sslsteal.victim.service import VictimService
from sslsteal.victim.train import get_or_train


@pytest.fixture(scope="module")
def checkpoint() -> str:
    path, _ = get_or_train(VictimSpec.model_validate(tiny_victim_spec(name="service")), progress=False)
    return str(path)


@pytest.fixture(scope="module")
def ray_local():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, namespace="sslsteal-tests")
    yield
    ray.shutdown()


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)


MALFORMED = [
    ("wrong shape", _images(2)[:, :, :16], "shape"),
    ("wrong rank", _images(2)[0], "shape"),
    ("wrong dtype", _images(2).astype(np.int32), "uint8 or float"),
    ("NaN", np.full((2, 3, 32, 32), np.nan, dtype=np.float32), "NaN"),
    ("out of range", np.full((2, 3, 32, 32), 3.0, dtype=np.float32), r"\[0, 1\]"),
    ("empty batch", _images(0), "empty batch"),
    ("oversized batch", _images(65), "max_batch"),
    ("not an array", [[1, 2, 3]], "numpy array or torch tensor"),
    ("object dtype", _images(2).astype(object), "uint8 or float, got numpy object"),
    ("string dtype", np.full((2, 3, 32, 32), "x"), "uint8 or float, got numpy <U1"),
    ("bool dtype", np.ones((2, 3, 32, 32), dtype=bool), "uint8 or float, got numpy bool"),
    ("complex dtype", np.zeros((2, 3, 32, 32), dtype=np.complex64), "uint8 or float, got numpy complex64"),
    ("structured dtype", np.zeros((2, 3, 32, 32), dtype=[("a", "u1")]), "uint8 or float"),
    ("int tensor", torch.from_numpy(_images(2)).int(), "uint8 or float, got torch.int32"),
    ("sparse tensor", torch.from_numpy(_images(2)).float().div(255).to_sparse(), "dense tensor"),
    ("None", None, "numpy array or torch tensor"),
    ("a string", "images", "numpy array or torch tensor"),
]


def test_in_process_validation_and_budget(checkpoint: str) -> None:
    service = VictimService(checkpoint, {"budget": 10, "max_batch": 64})
    service.open_account("a")
    for _, bad, needle in MALFORMED:
        with pytest.raises(InvalidQuery, match=needle):
            service.embed(bad, "a")
    with pytest.raises(InvalidQuery, match="account must be a non-empty string"):
        service.embed(_images(1), 42)  # type: ignore[arg-type]
    with pytest.raises(UnknownAccount):
        service.embed(_images(1), "never-opened")
    assert service.embed(_images(6), "a").shape == (6, 256)
    assert service.embed(_images(4).astype(np.float32) / 255, "a", head=True).shape == (4, 128)
    with pytest.raises(QueryBudgetExceeded, match="10 of 10"):
        service.embed(_images(1), "a")
    assert service.stats("a")["queries_used"] == 10


def test_fresh_accounts_never_reuse_a_name_or_a_budget(checkpoint: str) -> None:
    service = VictimService(checkpoint, {"budget": 10})
    first = service.open_fresh_account("trial_a", 4)
    assert first["account"] == "trial_a.1" and first["budget"] == 4
    service.embed(_images(3), "trial_a.1")
    second = service.open_fresh_account("trial_a", 4, {"name": "noise", "sigma": 1.0})  # a retry: next name, full budget
    assert second["account"] == "trial_a.2" and second["queries_used"] == 0 and second["defense"] == "noise"
    assert service.stats("trial_a.1")["queries_used"] == 3  # the failed attempt stays on record
    assert service.open_fresh_account("trial_ab")["account"] == "trial_ab.1"  # another prefix counts apart
    with pytest.raises(InvalidQuery, match="budget must be a positive int"):
        service.open_fresh_account("trial_a", 0)
    assert service.open_fresh_account("trial_a")["account"] == "trial_a.3"  # the refused open reserved nothing


@pytest.mark.parametrize("persisted", [False, True])
def test_a_request_id_is_answered_and_charged_once(checkpoint: str, tmp_path: Path, persisted: bool) -> None:
    """A retry with the same request id gets the stored answer free (noise is not redrawn), also from a restarted
    service when accounts are persisted; the same id for other images is refused; old ids leave the window."""
    spec = {"budget": 20, "defense": {"name": "noise", "sigma": 1.0}, "idempotent_requests": 2, "state_dir": str(tmp_path) if persisted else None}
    service = VictimService(checkpoint, spec)
    service.open_account("a")
    first = service.embed(_images(4), "a", request_id="r1")
    np.testing.assert_array_equal(service.embed(_images(4), "a", request_id="r1"), first)
    assert service.stats("a")["queries_used"] == 4
    with pytest.raises(InvalidQuery, match="request id 'r1' was used before for other images"):
        service.embed(_images(4, seed=1), "a", request_id="r1")
    with pytest.raises(InvalidQuery, match="request id must be a non-empty string"):
        service.embed(_images(1), "a", request_id="")
    if persisted:  # a restarted service still knows what it answered
        service = VictimService(checkpoint, spec)
        np.testing.assert_array_equal(service.embed(_images(4), "a", request_id="r1"), first)
        assert service.stats("a")["queries_used"] == 4
    service.embed(_images(1), "a", request_id="r2")
    service.embed(_images(1), "a", request_id="r3")  # the window holds 2 ids: r1 is forgotten
    assert not np.array_equal(service.embed(_images(4), "a", request_id="r1"), first)
    assert service.stats("a")["queries_used"] == 10
    if persisted:
        assert len(list((tmp_path / "answers").glob("*.npy"))) == 2


def test_checkpoint_bytes_serve_the_same_answers(checkpoint: str) -> None:
    from_path = VictimService(checkpoint)
    from_bytes = VictimService(Path(checkpoint).read_bytes())
    for service in (from_path, from_bytes):
        service.open_account("a")
    np.testing.assert_array_equal(from_path.embed(_images(4), "a"), from_bytes.embed(_images(4), "a"))


def test_each_account_can_have_its_own_defense(checkpoint: str, tmp_path: Path) -> None:
    """One shared victim serves a sweep over defense parameters: the defense is chosen per account."""
    service = VictimService(checkpoint, {"state_dir": str(tmp_path)})
    service.open_account("clean")
    service.open_account("noisy", defense={"name": "noise", "mean": 10.0, "sigma": 0.0})
    x = _images(4)
    clean, noisy = service.embed(x, "clean"), service.embed(x, "noisy")
    assert np.allclose(noisy, clean + 10.0, atol=1e-4)
    assert service.stats("noisy")["defense"] == "noise" and service.stats("clean")["defense"] == "none"
    with pytest.raises(InvalidQuery, match=r"defense\.sigma"):
        service.open_account("bad", defense={"name": "noise", "sigma": -1})
    restarted = VictimService(checkpoint, {"state_dir": str(tmp_path)})  # what Ray's restart does
    assert np.allclose(restarted.embed(x, "noisy"), clean + 10.0, atol=1e-4)
    assert restarted.stats("noisy")["queries_used"] == 8


def test_charge_mode_records_expected_hashes_without_a_challenge(checkpoint: str) -> None:
    service = VictimService(checkpoint, {"pow_mode": "charge", "defense": {"name": "pow", "base_bits": 10, "scale_bits": 0, "max_bits": 10}})
    service.open_account("bulk")
    assert service.challenge("bulk") is None
    service.embed(_images(3), "bulk")
    service.embed(_images(3), "bulk")
    assert service.stats("bulk")["pow_hashes"] == 2 * 2.0**10


def test_answers_match_the_victim(checkpoint: str) -> None:
    from sslsteal.victim.checkpoint import load_victim

    service = VictimService(checkpoint)
    service.open_account("a")
    x = _images(5)
    expected = load_victim(checkpoint).embed(torch.from_numpy(x)).numpy()
    assert np.allclose(service.embed(x, "a"), expected, atol=1e-5)


def test_budget_over_the_actor_is_exact_and_refusals_answer_nothing(ray_local, checkpoint: str) -> None:
    handle = create_service(checkpoint, ServiceSpec(budget=100, max_batch=64), name="budget")
    ray.get(handle.open_account.remote("alice", 10))
    ray.get(handle.embed.remote(_images(7), "alice"))
    with pytest.raises(QueryBudgetExceeded):
        ray.get(handle.embed.remote(_images(4), "alice"))  # 7 + 4 > 10: refused whole
    assert ray.get(handle.stats.remote("alice"))["queries_used"] == 7
    ray.get(handle.embed.remote(_images(3), "alice"))  # exactly to the budget
    with pytest.raises(QueryBudgetExceeded):
        ray.get(handle.embed.remote(_images(1), "alice"))
    assert ray.get(handle.stats.remote("alice"))["queries_used"] == 10
    ray.kill(handle, no_restart=True)


def test_two_trials_query_one_actor_concurrently(ray_local, checkpoint: str) -> None:
    @ray.remote(num_cpus=0)
    def attacker(account: str, rounds: int, seed: int) -> tuple[str, int, list[int]]:
        """One trial's worth of queries (defined here so Ray ships it by value, not by test-module name)."""
        import numpy
        import torch as th

        handle = ray.get_actor("shared")
        query = RemoteQuery(handle, account)
        rng = numpy.random.default_rng(seed)
        sizes = [len(query(th.from_numpy(rng.integers(0, 256, size=(32, 3, 32, 32), dtype=numpy.uint8)))) for _ in range(rounds)]
        return account, ray.get(handle.stats.remote(account))["queries_used"], sizes

    handle = create_service(checkpoint, ServiceSpec(budget=1000), name="shared")
    for acc in ("trial-1", "trial-2"):
        ray.get(handle.open_account.remote(acc, 320))
    results = ray.get([attacker.remote("trial-1", 10, 0), attacker.remote("trial-2", 10, 100)])
    assert sorted((a, used) for a, used, _ in results) == [("trial-1", 320), ("trial-2", 320)]
    assert all(sizes == [32] * 10 for _, _, sizes in results)
    with pytest.raises(QueryBudgetExceeded):
        RemoteQuery(handle, "trial-1")(torch.from_numpy(_images(1)))
    ray.kill(handle, no_restart=True)


def test_defense_history_never_crosses_accounts(ray_local, checkpoint: str) -> None:
    spec = ServiceSpec(defense={"name": "similarity", "space": "rep", "metric": "cosine", "threshold": 0.999, "mean_big": 1000.0, "sigma": 1.0})
    handle = create_service(checkpoint, spec, name="isolation")
    for acc in ("a", "b"):
        ray.get(handle.open_account.remote(acc))
    from sslsteal.data import loaders

    x = loaders.load("synthetic:test").images[:8].numpy()  # distinct images (noise images look alike to a CNN)
    first = ray.get(handle.embed.remote(x, "a"))
    repeat = ray.get(handle.embed.remote(x, "a"))
    other = ray.get(handle.embed.remote(x, "b"))
    assert np.abs(repeat).mean() > 100  # a's repeats are answered with large noise
    assert np.allclose(other, first, atol=1e-4)  # b's first look at the same images is truthful
    assert ray.get(handle.stats.remote("a"))["detections"] == 8
    assert ray.get(handle.stats.remote("b"))["detections"] == 0
    ray.kill(handle, no_restart=True)


def test_actor_survives_malformed_requests_and_being_killed(ray_local, checkpoint: str, tmp_path: Path) -> None:
    spec = ServiceSpec(budget=50, max_batch=64, state_dir=str(tmp_path / "state"))
    handle = create_service(checkpoint, spec, name="hostile")
    ray.get(handle.open_account.remote("victimised"))
    pid = ray.get(handle.info.remote())["pid"]
    for _label, bad, _ in MALFORMED:
        with pytest.raises(InvalidQuery):
            ray.get(handle.embed.remote(bad, "victimised"))
    with pytest.raises(InvalidQuery):
        ray.get(handle.embed.remote(_images(1), None))
    assert ray.get(handle.info.remote())["pid"] == pid  # same process: nothing crashed
    ray.get(handle.embed.remote(_images(20), "victimised"))

    os.kill(pid, signal.SIGKILL)
    info = wait_until_serving(handle)
    assert info["pid"] != pid
    stats = ray.get(handle.stats.remote("victimised"))
    assert stats["queries_used"] == 20 and stats["budget"] == 50  # budgets survive the restart
    ray.get(handle.embed.remote(_images(30), "victimised"))
    with pytest.raises(QueryBudgetExceeded):
        ray.get(handle.embed.remote(_images(1), "victimised"))
    ray.kill(handle, no_restart=True)


def test_proof_of_work_is_solved_by_the_client_and_recorded(ray_local, checkpoint: str) -> None:
    spec = ServiceSpec(defense={"name": "pow", "base_bits": 6, "scale_bits": 4, "max_bits": 10})
    handle = create_service(checkpoint, spec, name="pow")
    ray.get(handle.open_account.remote("miner"))

    with pytest.raises(ProofOfWorkRequired):
        ray.get(handle.embed.remote(_images(2), "miner"))
    query = RemoteQuery(handle, "miner")
    assert query(torch.from_numpy(_images(2))).shape == (2, 256)
    assert query.hashes > 0
    assert ray.get(handle.stats.remote("miner"))["pow_hashes"] >= 2**6
    ray.kill(handle, no_restart=True)
