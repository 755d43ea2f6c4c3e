"""Test helper: a real `mlflow server` on loopback (SQLite backend, proxied artifacts), so tests log over HTTP.

conftest.py loads this module as a plugin, so every test can ask for the `mlflow_uri` fixture (one server per
session); or start one with `with mlflow_server(tmp) as uri:`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

START_TIMEOUT_S = 90.0


def _free_port() -> int:
    """A port the OS just handed out on loopback (free unless something grabs it before the server binds)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _healthy(url: str) -> bool:
    """Whether GET {url}/health answers 200."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


@contextmanager
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    """Run `mlflow server` on a free loopback port until the block exits; yields its http:// URI."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
        "--serve-artifacts", "--artifacts-destination", str(tmp_path / "artifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    log_path = tmp_path / "server.log"
    env = os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no background job runner: tests log runs only
    with open(log_path, "wb") as log:  # a file, not a pipe: an unread pipe would fill up and stall the server
        process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _healthy(url):
            if process.poll() is not None or time.monotonic() > deadline:
                state = f"exited with {process.returncode}" if process.returncode is not None else f"gave no answer in {START_TIMEOUT_S:.0f} s"
                raise RuntimeError(f"mlflow server {state}: {' '.join(command)}\n{log_path.read_text(errors='replace')[-4000:]}")
            time.sleep(0.25)
        yield url
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate the server's whole process group (uvicorn spawns workers), killing it if it lingers."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.fixture(scope="session")
def mlflow_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The http:// URI of the mlflow server shared by every test of the session."""
    with mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as uri:
        yield uri
