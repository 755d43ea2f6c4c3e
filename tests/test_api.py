"""The victim as a real HTTP embedding API: Ray Serve on 127.0.0.1, API keys, budgets under concurrency, hostile
requests, idempotent retries, a killed victim actor, and no key in any log or error."""

from __future__ import annotations

import io
import json
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import ray
import requests
import torch
import yaml
from conftest import tiny_victim_spec

from sslsteal.api.keys import digest, load_keys
from sslsteal.api.server import start_api, stop_api
from sslsteal.attacks.endpoint import HttpVictim, Unauthorized
from sslsteal.specs.victim import VictimSpec
from sslsteal.victim.checkpoint import load_victim
from sslsteal.victim.codec import NPY, png_base64, read_npy, write_npy
from sslsteal.victim.errors import QueryBudgetExceeded
from sslsteal.victim.train import get_or_train

KEYS = {name: f"sk-test-{name}-{'x' * 24}" for name in ("alice", "bob", "carol", "dave")}
"""The accounts' keys; the server only ever sees their digests (and the keys in request headers)."""


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory):
    """A served tiny victim with four accounts (alice: 10,000; bob: 40; carol: noise defense; dave: 5)."""
    root = tmp_path_factory.mktemp("api")
    checkpoint, _ = get_or_train(VictimSpec.model_validate(tiny_victim_spec(name="api")), progress=False)
    accounts = [
        {"name": "alice", "key_sha256": digest(KEYS["alice"])},
        {"name": "bob", "key_sha256": digest(KEYS["bob"]), "budget": 40},
        {"name": "carol", "key_env": "SSLSTEAL_TEST_CAROL_KEY", "defense": {"name": "noise", "sigma": 1.0}},
        {"name": "dave", "key_sha256": digest(KEYS["dave"]), "budget": 5},
    ]
    (root / "keys.yaml").write_text(yaml.safe_dump({"accounts": accounts}))
    mp = pytest.MonkeyPatch()
    mp.setenv("SSLSTEAL_TEST_CAROL_KEY", KEYS["carol"])
    mp.setenv("SSLSTEAL_TEST_ALICE_KEY", KEYS["alice"])  # before Ray starts: sweep trials read it in their workers
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, namespace="sslsteal-api-tests")
    served = start_api(str(checkpoint), load_keys(root / "keys.yaml"), port=_free_port(), state_dir=root / "accounts", service={"max_batch": 64})
    yield served, load_victim(checkpoint)
    stop_api()
    ray.shutdown()
    mp.undo()


def _post(url: str, key: str | None, body: bytes, kind: str = NPY, **headers: str) -> requests.Response:
    sent = {"Content-Type": kind, **headers} | ({"X-API-Key": key} if key is not None else {})
    return requests.post(f"{url}/v1/embed", data=body, headers=sent, timeout=60)


def _usage(url: str, name: str) -> int:
    return int(requests.get(f"{url}/v1/usage", headers={"X-API-Key": KEYS[name]}, timeout=30).json()["queries_used"])


def test_npy_and_json_requests_answer_as_the_victim_and_each_image_is_paid(api) -> None:
    served, victim = api
    x = _images(8)
    expected = victim.embed(torch.from_numpy(x)).numpy()
    answer = _post(served.url, KEYS["alice"], write_npy(x))
    assert answer.status_code == 200 and answer.headers["content-type"] == NPY
    np.testing.assert_allclose(read_npy(answer.content), expected, rtol=1e-5, atol=1e-5)
    as_json = requests.post(f"{served.url}/v1/embed", json={"images": [png_base64(i) for i in x[:3]]}, headers={"X-API-Key": KEYS["alice"]}, timeout=60)
    assert as_json.status_code == 200 and as_json.json()["shape"] == [3, expected.shape[1]]
    np.testing.assert_allclose(np.array(as_json.json()["embeddings"]), expected[:3], rtol=1e-4, atol=1e-4)
    heads = requests.post(
        f"{served.url}/v1/embed", params={"head": "true"}, data=write_npy(x[:2]), headers={"X-API-Key": KEYS["alice"], "Content-Type": NPY}, timeout=60
    )
    assert heads.status_code == 200 and read_npy(heads.content).shape == (2, 128)
    usage = requests.get(f"{served.url}/v1/usage", headers={"X-API-Key": KEYS["alice"]}, timeout=30).json()
    assert usage == {"account": "alice", "budget": 10_000, "queries_used": 13, "remaining": 9_987, "defense": "none"}
    assert requests.get(f"{served.url}/v1/health", timeout=30).json()["status"] == "ok"
    assert "/v1/embed" in requests.get(f"{served.url}/openapi.json", timeout=30).json()["paths"]
    assert requests.get(f"{served.url}/docs", timeout=30).status_code == 200


def test_each_key_is_its_own_account_with_its_own_defense(api) -> None:
    served, victim = api
    x = _images(4, seed=3)
    clean = victim.embed(torch.from_numpy(x)).numpy()
    noisy = read_npy(_post(served.url, KEYS["carol"], write_npy(x)).content)
    assert np.abs(noisy - clean).mean() > 0.5  # sigma 1 noise on carol's answers only
    assert _usage(served.url, "carol") == 4


def test_unknown_or_missing_keys_are_401_and_never_echoed(api) -> None:
    served, _ = api
    wrong = "sk-wrong-" + "y" * 30
    for key in (wrong, None, ""):
        r = _post(served.url, key, write_npy(_images(1)))
        assert r.status_code == 401 and "X-API-Key" in r.json()["detail"] and wrong not in r.text
    assert requests.get(f"{served.url}/v1/usage", headers={"X-API-Key": wrong}, timeout=30).status_code == 401
    with pytest.raises(Unauthorized) as info:
        HttpVictim(served.url, wrong)(torch.from_numpy(_images(1)))
    assert wrong not in str(info.value)


def _pickled_object_array() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    return buffer.getvalue()


def _png(side: int) -> str:
    return png_base64(np.zeros((3, side, side), dtype=np.uint8))


HOSTILE = [
    ("int64 array", write_npy(_images(2).astype(np.int64)), NPY, {}, 422, "uint8 or float"),
    ("wrong shape", write_npy(_images(2)[:, :, :16]), NPY, {}, 422, "shape"),
    ("out of range", write_npy(np.full((2, 3, 32, 32), 2.0, dtype=np.float32)), NPY, {}, 422, "[0, 1]"),
    ("NaN", write_npy(np.full((2, 3, 32, 32), np.nan, dtype=np.float32)), NPY, {}, 422, "NaN"),
    ("pickled objects", _pickled_object_array(), NPY, {}, 422, "pickled data is never read"),
    ("not npy", b"\x89PNG garbage" * 10, NPY, {}, 422, "not a .npy array"),
    ("empty batch", write_npy(_images(0)), NPY, {}, 422, "empty batch"),
    ("too many images", write_npy(_images(65)), NPY, {}, 413, "max_batch 64"),
    ("too many bytes", b"\x00" * 2_000_000, NPY, {}, 413, "exceeds the limit"),
    ("not base64", b'{"images": ["%%%not-base64%%%"]}', "application/json", {}, 422, "images[0]: not base64"),
    ("non-image bytes", b'{"images": ["aGVsbG8gd29ybGQ="]}', "application/json", {}, 422, "images[0]: not a PNG or JPEG image"),
    ("wrong image size", json.dumps({"images": [_png(64)]}).encode(), "application/json", {}, 422, "64x64 pixels; the victim reads 32x32"),
    ("malformed JSON", b'{"images": [', "application/json", {}, 422, "JSON body"),
    ("unknown content type", b"hello", "text/plain", {}, 415, "application/x-npy"),
    ("idempotency key too long", write_npy(_images(1)), NPY, {"Idempotency-Key": "k" * 300}, 422, "200"),
]


@pytest.mark.parametrize(("case", "body", "kind", "headers", "status", "needle"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_requests_get_their_status_and_the_service_keeps_serving(
    api, case: str, body: bytes, kind: str, headers: dict, status: int, needle: str
) -> None:
    served, _ = api
    pid = ray.get(served.actor.info.remote())["pid"]
    before = _usage(served.url, "alice")
    r = _post(served.url, KEYS["alice"], body, kind, **headers)
    assert r.status_code == status, (case, r.text)
    assert needle in r.text and "Traceback" not in r.text and KEYS["alice"] not in r.text
    assert _post(served.url, KEYS["alice"], write_npy(_images(1))).status_code == 200
    assert ray.get(served.actor.info.remote())["pid"] == pid and _usage(served.url, "alice") == before + 1


def test_a_retried_request_with_the_same_idempotency_key_is_charged_once(api) -> None:
    served, _ = api
    before = _usage(served.url, "carol")  # a noise defense: a recomputed answer would differ
    x = write_npy(_images(5, seed=7))
    first = _post(served.url, KEYS["carol"], x, **{"Idempotency-Key": "req-1"})
    again = _post(served.url, KEYS["carol"], x, **{"Idempotency-Key": "req-1"})
    assert first.status_code == again.status_code == 200 and first.content == again.content
    assert _usage(served.url, "carol") == before + 5
    other = _post(served.url, KEYS["carol"], write_npy(_images(5, seed=8)), **{"Idempotency-Key": "req-1"})
    assert other.status_code == 422 and "used before for other images" in other.text
    assert _usage(served.url, "carol") == before + 5


def test_the_budget_holds_to_the_image_under_16_concurrent_clients(api) -> None:
    """bob has 40 queries; 16 clients send 3-image requests until refused: 13 are answered (39 images), none more."""
    served, _ = api
    answered: list[int] = []
    refused: list[int] = []
    lock = threading.Lock()

    def client(seed: int) -> None:
        while True:
            r = _post(served.url, KEYS["bob"], write_npy(_images(3, seed)))
            with lock:
                (answered if r.status_code == 200 else refused).append(r.status_code)
            if r.status_code != 200:
                return

    start = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads) and time.monotonic() - start < 120
    assert len(answered) == 13 and refused == [402] * 16
    assert _usage(served.url, "bob") == 39


def test_the_client_maps_refusals_and_survives_a_killed_victim_actor(api) -> None:
    """dave's budget of 5 holds through the client; killing the victim actor mid-use loses no account and no answer."""
    served, victim = api
    client = HttpVictim(served.url, KEYS["dave"])
    x = torch.from_numpy(_images(3, seed=11))
    torch.testing.assert_close(client(x), victim.embed(x), rtol=1e-5, atol=1e-5)
    with pytest.raises(QueryBudgetExceeded, match="exceeds the budget"):
        client(x)
    assert client.usage()["queries_used"] == 3
    json_client = HttpVictim(served.url, KEYS["alice"], fmt="json")
    torch.testing.assert_close(json_client(x), victim.embed(x), rtol=1e-4, atol=1e-4)
    used = _usage(served.url, "alice")
    pid = ray.get(served.actor.info.remote())["pid"]
    ray.kill(served.actor, no_restart=False)  # Ray restarts it; its accounts come back from the state folder
    alice = HttpVictim(served.url, KEYS["alice"])
    torch.testing.assert_close(alice(x), victim.embed(x), rtol=1e-5, atol=1e-5)
    assert ray.get(served.actor.info.remote())["pid"] != pid
    assert _usage(served.url, "alice") == used + 3 and client.usage()["queries_used"] == 3


def _kill_the_ingress_once_alice_is_charged(served, before: int, done: threading.Event, killed: list[str]) -> None:
    """Kill the Serve ingress replica as soon as the sweep's first answer is charged (Serve starts a new one)."""
    while not done.is_set() and _usage(served.url, "alice") == before:
        done.wait(0.05)
    replicas = [a for a in ray.util.list_named_actors(all_namespaces=True) if a["namespace"] == "serve" and "EmbeddingAPI" in a["name"]]
    for replica in replicas:
        ray.kill(ray.get_actor(replica["name"], namespace="serve"), no_restart=False)
        killed.append(replica["name"])


def test_a_sweep_steals_through_http_as_through_the_actor_and_a_killed_replica_costs_nothing(api, tmp_path: Path, mlflow_uri: str) -> None:
    """The same trial over the endpoint and over the actor gives the same figures; the ingress replica killed mid-sweep
    costs the trial neither its work nor a query (its retries carry idempotency keys)."""
    from sslsteal.cli import main
    from sslsteal.orchestration.tracking import Tracker

    served, victim = api
    checkpoint = str(victim.path)
    common = {
        "attack": {"loss": "mse", "queries": 256, "epochs": 2, "batch_size": 32, "query_data": "synthetic:train"},
        "evaluate": {"downstream": ["synthetic"]},
        "run": {"seeds": [0], "resources_per_trial": {"cpu": 1}},
    }
    before = _usage(served.url, "alice")
    killed: list[str] = []
    for name, ref in [("via-http", {"url": served.url, "api_key_env": "SSLSTEAL_TEST_ALICE_KEY", "model": checkpoint}), ("via-actor", checkpoint)]:
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump({"name": name, "victim": ref, **common}))
        done = threading.Event()
        killer = threading.Thread(target=_kill_the_ingress_once_alice_is_charged, args=(served, before, done, killed))
        if name == "via-http":
            killer.start()
        try:
            assert main(["sweep", str(path), "--tracking-uri", mlflow_uri, "--storage", str(tmp_path / "tune"), "--quiet"]) == 0
        finally:
            done.set()
            if killer.is_alive():
                killer.join()
    tracker = Tracker(mlflow_uri)
    metrics, tags = {}, {}
    for name in ("via-http", "via-actor"):
        exp = tracker.client.get_experiment_by_name(name)
        (parent,) = tracker.client.search_runs([exp.experiment_id], "tags.`sslsteal.kind` = 'sweep'")
        (child,) = tracker.children(parent.info.run_id)
        assert child.info.status == "FINISHED"
        metrics[name], tags[name] = child.data.metrics, parent.data.tags
    assert tags["via-http"]["sslsteal.endpoint"] == served.url and KEYS["alice"] not in str(tags["via-http"])
    for key in ("queries_used", "acc.synthetic", "fidelity.cosine", "gain_recovered.synthetic"):
        assert metrics["via-http"][key] == pytest.approx(metrics["via-actor"][key], abs=1e-6), key
    assert killed and _usage(served.url, "alice") == before + 256  # answered and charged once, across the killed replica


def test_no_key_appears_in_any_log(api) -> None:
    served, _ = api
    _post(served.url, KEYS["alice"], write_npy(_images(1)))
    _post(served.url, "sk-leak-check-" + "z" * 20, write_npy(_images(1)))
    logs = Path("/tmp/ray/session_latest/logs")  # this test session's Ray (the latest started)
    texts = [p.read_bytes() for p in logs.rglob("*") if p.is_file()]
    assert texts, "no Ray logs found to check"
    for key in [*KEYS.values(), "sk-leak-check-" + "z" * 20]:
        assert not any(key.encode() in text for text in texts), key


@pytest.mark.parametrize(
    ("accounts", "needle"),
    [
        ([{"name": "a", "key_env": "SSLSTEAL_TEST_UNSET_KEY"}], "accounts[0].key_env: the environment variable SSLSTEAL_TEST_UNSET_KEY is not set"),
        ([{"name": "a", "key_sha256": "0" * 64, "key_env": "X"}], "give exactly one of key_sha256, key_env"),
        ([{"name": "a", "key_sha256": "0" * 64}, {"name": "a", "key_sha256": "1" * 64}], "account names must be distinct: a appear twice"),
        ([{"name": "a", "key_sha256": "0" * 64}, {"name": "b", "key_sha256": "0" * 64}], "two accounts share one key"),
        ([{"name": "a", "key_sha256": "0" * 64, "defense": {"name": "pow"}}], "proof of work is not offered over HTTP"),
        ([{"name": "a", "key_sha256": "0" * 64, "defense": {"name": "noise", "sigma": -1}}], "defense.sigma"),
        ([{"name": "a", "key_sha256": "not-hex"}], "accounts.0.key_sha256"),
    ],
)
def test_bad_keys_files_and_usage_exit_2_naming_the_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, accounts: list, needle: str
) -> None:
    from sslsteal.cli import main

    monkeypatch.delenv("SSLSTEAL_TEST_UNSET_KEY", raising=False)
    keys = tmp_path / "keys.yaml"
    keys.write_text(yaml.safe_dump({"accounts": accounts}))
    assert main(["serve", "victim.pt", "--keys", str(keys)]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_serve_without_keys_or_with_a_bad_port_exits_2(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from sslsteal.cli import main

    monkeypatch.delenv("SSLSTEAL_API_KEY", raising=False)
    assert main(["serve", "victim.pt"]) == 2
    assert "--keys: give a KEYS.yaml, or set SSLSTEAL_API_KEY" in capsys.readouterr().err
    assert main(["serve", "victim.pt", "--port", "70000"]) == 2
    assert "--port: must be in 1-65535" in capsys.readouterr().err
