"""Test helper: open a page in headless Chromium over the DevTools protocol (`--remote-debugging-pipe`: JSON
messages on file descriptors 3 and 4, so no websocket client is needed), collect console errors, uncaught
exceptions and failed loads, evaluate expressions and take a full-page screenshot.

    with Browser() as browser:
        result = browser.open(path.as_uri(), ["document.querySelectorAll('svg').length"], screenshot=out / "page.png")
        assert not result.errors and result.values == [1]
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

EXECUTABLES = ("chromium", "chromium-browser", "google-chrome")
TIMEOUT_S = 60.0


def find_chromium() -> str | None:
    """The first Chromium executable on PATH, or None."""
    return next((found for name in EXECUTABLES if (found := shutil.which(name))), None)


@dataclass
class PageResult:
    """What a page did while loading: each expression's value, and every console error, exception or failed load."""

    values: list[Any]
    errors: list[str] = field(default_factory=list)


class Browser:
    """One headless Chromium process (a fresh profile) driven over a pipe."""

    def __init__(self, executable: str | None = None, width: int = 1200) -> None:
        self.executable = executable or find_chromium()
        if self.executable is None:
            raise FileNotFoundError(f"no Chromium executable on PATH (tried {', '.join(EXECUTABLES)})")
        self.width = width
        self._next_id = 0
        self._buffer = b""
        self._events: list[dict[str, Any]] = []

    def __enter__(self) -> Browser:
        self._profile = tempfile.TemporaryDirectory(prefix="chromium-")
        to_browser_r, to_browser_w = os.pipe()
        from_browser_r, from_browser_w = os.pipe()

        def plumb() -> None:  # in the child: its fd 3 reads our commands, its fd 4 writes its replies
            read, write = os.dup(to_browser_r), os.dup(from_browser_w)  # dup first: the pipe ends may already be 3 or 4
            os.dup2(read, 3)
            os.dup2(write, 4)

        command = [
            self.executable,
            *("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions", "--remote-debugging-pipe"),
            f"--user-data-dir={self._profile.name}",
            "about:blank",
        ]
        self._process = subprocess.Popen(command, preexec_fn=plumb, close_fds=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._out = os.fdopen(to_browser_w, "wb", buffering=0)
        self._in = os.fdopen(from_browser_r, "rb", buffering=0)
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):
            self._send("Browser.close")
        try:
            self._process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._out.close()
        self._in.close()
        self._profile.cleanup()

    def _send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> int:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self._out.write(json.dumps(message).encode() + b"\0")
        return self._next_id

    def _receive(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline:
                raise TimeoutError(f"Chromium gave no answer in {TIMEOUT_S:.0f} s")
            chunk = self._in.read(1 << 16)
            if not chunk:
                raise ConnectionError(f"Chromium closed the pipe (exit code {self._process.poll()})")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        """Send one command and wait for its reply (events arriving meanwhile are kept)."""
        wanted = self._send(method, params, session)
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            message = self._receive(deadline)
            if message.get("id") == wanted:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self._events.append(message)

    def open(self, url: str, expressions: list[str], screenshot: Path | None = None) -> PageResult:
        """Load `url` in a new tab until its load event, evaluate `expressions`, optionally save a full-page PNG."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable", session=session)
        self._events.clear()
        self.call("Emulation.setDeviceMetricsOverride", {"width": self.width, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session)
        self.call("Page.navigate", {"url": url}, session)
        deadline = time.monotonic() + TIMEOUT_S
        while not any(e.get("method") == "Page.loadEventFired" and e.get("sessionId") == session for e in self._events):
            self._events.append(self._receive(deadline))
        values = [self.call("Runtime.evaluate", {"expression": e, "returnByValue": True}, session)["result"].get("value") for e in expressions]
        if screenshot is not None:
            size = self.call("Page.getLayoutMetrics", session=session)["cssContentSize"]
            clip = {"x": 0, "y": 0, "width": self.width, "height": max(1, int(size["height"])), "scale": 1}
            shot = self.call("Page.captureScreenshot", {"format": "png", "clip": clip, "captureBeyondViewport": True}, session)
            screenshot.write_bytes(base64.b64decode(shot["data"]))
        errors = [_error(e) for e in self._events if e.get("sessionId") == session and _error(e)]
        self.call("Target.closeTarget", {"targetId": target})
        return PageResult(values, errors)


def _error(event: dict[str, Any]) -> str:
    """The text of a console error, an uncaught exception or an error log entry (a failed load); '' otherwise."""
    method, params = event.get("method"), event.get("params", {})
    if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
        return "console: " + " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
    if method == "Runtime.exceptionThrown":
        details = params.get("exceptionDetails", {})
        return f"exception: {details.get('text', '')} {details.get('exception', {}).get('description', '')}".strip()
    if method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
        entry = params["entry"]
        return f"log: {entry.get('text', '')} {entry.get('url', '')}".strip()
    return ""
