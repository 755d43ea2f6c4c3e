"""The attacker's side of an HTTP embedding API (`sslsteal serve` or any endpoint speaking its /v1 routes): `query(images) -> representations` over HTTP for one key. Each request
carries an Idempotency-Key, so retrying it (429, 5xx, a dropped connection) never charges twice; refusals raise the
same errors as the victim actor's."""

from __future__ import annotations

import time
import uuid
from typing import Any

import numpy as np
import torch

from sslsteal.victim.codec import NPY, png_base64, read_npy, write_npy
from sslsteal.victim.errors import InvalidQuery, QueryBudgetExceeded, ServiceError

RETRIED = (429, 500, 502, 503, 504)


class Unauthorized(ServiceError):
    """The endpoint does not know this key (HTTP 401)."""


class ServiceUnavailable(ServiceError):
    """The endpoint kept failing with a retryable status or dropped connections through every retry."""


class HttpVictim:
    """`query(images) -> float32 (N, dim)` against `url` with `key` (never logged, never in an error message)."""

    def __init__(self, url: str, key: str, *, head: bool = False, fmt: str = "npy", retries: int = 8, backoff: float = 0.25, timeout: float = 120.0) -> None:
        import requests

        if fmt not in ("npy", "json"):
            raise ValueError(f"format must be npy or json, got {fmt!r}")
        self.url = url.rstrip("/")
        self.head, self.fmt, self.retries, self.backoff, self.timeout = head, fmt, retries, backoff, timeout
        self.session = requests.Session()
        self.session.headers["X-API-Key"] = key
        self.retried = 0
        self.max_batch: int | None = None  # the server's, read from /v1/health on first use

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Answers for `images`, sent in requests of at most the server's `max_batch` images each."""
        if self.max_batch is None:
            self.max_batch = int(self._send("GET", "/v1/health", None, None, {}).json()["max_batch"])
        step = self.max_batch
        return torch.cat([self._request(images[start : start + step]) for start in range(0, max(1, len(images)), step)])

    def _request(self, images: torch.Tensor) -> torch.Tensor:
        array = images.numpy() if images.dtype == torch.uint8 else images.float().numpy()
        if self.fmt == "npy":
            response = self._post(write_npy(array), NPY, {"head": "true"} if self.head else {})
            return torch.from_numpy(read_npy(response.content).copy())
        if array.dtype != np.uint8:
            raise InvalidQuery("format json sends PNG images: pass uint8 images")
        import json

        body = json.dumps({"images": [png_base64(image) for image in array], "head": self.head}).encode()
        answer = self._post(body, "application/json", {}).json()
        return torch.tensor(answer["embeddings"], dtype=torch.float32).reshape(answer["shape"])

    def usage(self) -> dict[str, Any]:
        """The key's own account: budget, queries used, remaining."""
        response = self._send("GET", "/v1/usage", None, None, {})
        return dict(response.json())

    def _post(self, body: bytes, kind: str, params: dict[str, str]) -> Any:
        return self._send("POST", "/v1/embed", body, {"Content-Type": kind, "Idempotency-Key": uuid.uuid4().hex}, params)

    def _send(self, method: str, path: str, body: bytes | None, headers: dict[str, str] | None, params: dict[str, str]) -> Any:
        """One logical request, retried with exponential backoff (or the server's Retry-After) under one idempotency key."""
        import requests

        problem = ""
        for attempt in range(self.retries + 1):
            if attempt:
                self.retried += 1
            wait = self.backoff * 2**attempt
            try:
                response = self.session.request(method, self.url + path, data=body, headers=headers, params=params, timeout=self.timeout)
            except (requests.ConnectionError, requests.Timeout) as exc:
                problem = type(exc).__name__
            else:
                if response.status_code == 200:
                    return response
                detail = _detail(response)
                if response.status_code not in RETRIED:
                    raise _error(response.status_code, detail)
                problem = f"HTTP {response.status_code}: {detail}"
                asked = response.headers.get("Retry-After", "")
                wait = max(wait, float(asked)) if asked.isdigit() else wait
            time.sleep(min(wait, 30.0))
        raise ServiceUnavailable(f"{self.url}{path}: no answer after {self.retries + 1} attempts ({problem})")


def _detail(response: Any) -> str:
    try:
        return str(response.json().get("detail", ""))[:300]
    except ValueError:
        return response.text[:300]


def _error(status: int, detail: str) -> ServiceError:
    if status == 402:
        return QueryBudgetExceeded(detail)
    if status == 401:
        return Unauthorized(detail)
    if status in (413, 415, 422):
        return InvalidQuery(f"HTTP {status}: {detail}")
    return ServiceError(f"HTTP {status}: {detail}")
