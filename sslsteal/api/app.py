"""The embedding API: a FastAPI ingress on Ray Serve in front of the shared victim actor, which stays the one owner
of every account's budget, defense state and stored answers. Versioned routes under /v1; OpenAPI docs at /docs.
No `from __future__ import annotations` here: Serve's class-based FastAPI views read the route annotations as types."""

import logging
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
import ray
from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, Field
from ray import serve

from sslsteal.api.keys import Account, find_account
from sslsteal.victim.codec import NPY, read_images, read_npy, write_npy
from sslsteal.victim.errors import InvalidQuery, QueryBudgetExceeded, ServiceError, UnknownAccount

logger = logging.getLogger("ray.serve")
KEY_HEADER = "X-API-Key"
IMAGE_SIDE = 32
ApiKey = Annotated[str | None, Depends(APIKeyHeader(name=KEY_HEADER, auto_error=False))]
"""The caller's key from its header (checked by the route itself, so that a missing key gets our 401, not FastAPI's)."""
MAX_IMAGE_BYTES = 16_384
"""Largest base64 image a JSON request may carry per image (a 32x32 PNG is about 3 KB)."""


@dataclass(frozen=True)
class APIConfig:
    """What a replica needs: the accounts, where the victim actor is, the largest request."""

    accounts: list[Account]
    actor: str
    namespace: str
    max_batch: int
    victim: str


class ProblemError(Exception):
    """A request refused with an HTTP status; `detail` names the problem and never holds a key."""

    def __init__(self, status: int, detail: str, headers: "dict[str, str] | None" = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers or {}


class EmbedJSON(BaseModel):
    """A JSON embedding request: base64 PNG or JPEG images of 32x32 pixels."""

    images: list[str] = Field(..., description="base64 PNG or JPEG images, 32x32 RGB")
    head: bool = Field(False, description="answer projection-head outputs instead of representations")


class Usage(BaseModel):
    account: str
    budget: int
    queries_used: int
    remaining: int
    defense: str


app = FastAPI(
    title="sslsteal victim embedding API",
    version="1",
    description="Representations of 32x32 images from a served encoder; every image answered is one paid query.",
)


@app.exception_handler(ProblemError)
async def _problem(request: Request, exc: ProblemError) -> JSONResponse:
    return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=exc.headers)


@app.exception_handler(InvalidQuery)
async def _invalid(request: Request, exc: InvalidQuery) -> JSONResponse:
    """A body that does not decode (registered before the ingress wraps the app, as every handler must be)."""
    return JSONResponse({"detail": str(exc)}, status_code=422)


def _refusal(exc: BaseException) -> ProblemError:
    """The HTTP status of what the victim actor raised (Ray wraps it; its own message, never a traceback)."""
    cause = getattr(exc, "cause", None) or exc
    if isinstance(cause, QueryBudgetExceeded):
        return ProblemError(402, str(cause))
    if isinstance(cause, UnknownAccount):
        return ProblemError(401, "this key's account is not open on the victim service")
    if isinstance(cause, InvalidQuery):
        return ProblemError(422, str(cause))
    if isinstance(cause, ServiceError):
        return ProblemError(403, str(cause))
    if isinstance(exc, (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError)):
        return ProblemError(503, "the victim service is starting or restarting; retry shortly", {"Retry-After": "1"})
    logger.error("victim service failed on a request: %s", type(cause).__name__)
    return ProblemError(500, "the victim service failed on this request")


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes `limit` bytes (declared or streamed)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ProblemError(413, f"body of {declared} bytes exceeds the limit of {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ProblemError(413, f"body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=32)
@serve.ingress(app)
class EmbeddingAPI:
    """One ingress replica: authenticates the caller, decodes the body, asks the victim actor, encodes the answer."""

    def __init__(self, config: APIConfig) -> None:
        self.config = config
        self.npy_limit = config.max_batch * 3 * IMAGE_SIDE * IMAGE_SIDE * 8 + 4096  # float64 at most, plus the header
        self.json_limit = config.max_batch * MAX_IMAGE_BYTES + 4096

    def _victim(self) -> Any:
        try:
            return ray.get_actor(self.config.actor, namespace=self.config.namespace)
        except ValueError:
            raise ProblemError(503, "the victim service is starting; retry shortly", {"Retry-After": "1"}) from None

    def _account(self, key: str | None) -> Account:
        account = find_account(self.config.accounts, key)
        if account is None:
            raise ProblemError(401, f"missing or unknown API key (send it in the {KEY_HEADER} header)", {"WWW-Authenticate": KEY_HEADER})
        return account

    @app.get("/v1/health")
    async def health(self) -> dict[str, Any]:
        """200 once the victim service answers; 503 while it starts or restarts."""
        victim = self._victim()
        try:
            info = await victim.info.remote()
        except Exception as exc:  # the actor is not answering yet
            raise _refusal(exc) from None
        return {"status": "ok", "victim": self.config.victim, "representation_dim": info["rep_dim"], "max_batch": self.config.max_batch}

    @app.get("/v1/usage", response_model=Usage)
    async def usage(self, key: ApiKey) -> Usage:
        """The caller's own account: budget, queries used, what is left."""
        account, victim = self._account(key), self._victim()
        try:
            stats = await victim.stats.remote(account.name)
        except Exception as exc:
            raise _refusal(exc) from None
        return Usage(
            account=account.name,
            budget=stats["budget"],
            queries_used=stats["queries_used"],
            remaining=stats["budget"] - stats["queries_used"],
            defense=stats["defense"],
        )

    @app.post(
        "/v1/embed",
        responses={
            200: {"content": {NPY: {}, "application/json": {}}, "description": "float32 (N, dim): .npy for a .npy request, JSON otherwise"},
            401: {"description": "missing or unknown key"},
            402: {"description": "over the account's budget: nothing answered"},
            413: {"description": "too many images or too many bytes"},
            415: {"description": "neither .npy nor JSON"},
            422: {"description": "malformed: dtype, shape, range, non-image bytes, a reused Idempotency-Key"},
            503: {"description": "the victim service is starting or restarting"},
        },
        openapi_extra={
            "requestBody": {"content": {NPY: {"schema": {"type": "string", "format": "binary"}}, "application/json": {"schema": EmbedJSON.model_json_schema()}}}
        },
    )
    async def embed(
        self,
        request: Request,
        key: ApiKey,
        head: Annotated[bool, Query(description="projection-head outputs (a .npy request; JSON says it in its body)")] = False,
        idempotency_key: Annotated[str | None, Header(max_length=200, description="a retry with the same key is answered free")] = None,
    ) -> Response:
        """Representations of a batch of 32x32 images, charged one query per image (exactly once per Idempotency-Key)."""
        account = self._account(key)
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind == NPY:
            images = read_npy(await _read_body(request, self.npy_limit))
        elif kind == "application/json":
            try:
                body = EmbedJSON.model_validate_json(await _read_body(request, self.json_limit))
            except ValueError as exc:
                raise ProblemError(422, f"JSON body: {str(exc).splitlines()[0][:200]}") from None
            if len(body.images) > self.config.max_batch:
                raise ProblemError(413, f"{len(body.images)} images exceed max_batch {self.config.max_batch}")
            images, head = read_images(body.images, IMAGE_SIDE), body.head
        else:
            raise ProblemError(415, f"content type {kind or 'none'!r}: send {NPY} or application/json")
        if images.ndim >= 1 and len(images) > self.config.max_batch:
            raise ProblemError(413, f"{len(images)} images exceed max_batch {self.config.max_batch}")
        victim = self._victim()
        try:
            answer: np.ndarray = await victim.embed.remote(images, account.name, head, None, idempotency_key)
        except Exception as exc:
            raise _refusal(exc) from None
        if kind == NPY:
            return Response(write_npy(answer), media_type=NPY)
        return JSONResponse({"embeddings": answer.tolist(), "shape": list(answer.shape)})
