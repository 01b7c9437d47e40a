"""The ASGI application: routes, the API key, request bodies read within bounds, and errors as JSON.

Every route goes through `Service.route`, which checks the key, times the request for /metrics and
turns every failure into a JSON answer: a client's mistake is a 4xx with a message (`ApiError`, or a
SqueezeError such as an unknown model), a full queue a 503 with Retry-After, a bug a 500 that says
only "internal error" (the traceback on the server's stderr with SQUEEZE_DEBUG=1). The error's shape
is that of the API the route belongs to: OpenAI's `{"error": {"message", "type", "code"}}` under /v1,
TEI's `{"error", "error_type"}` for /embed, /predict and /rerank. The routes and their answers are in
endpoints.py.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import InputError, ModelError, NetworkError, SqueezeError, UsageError
from .batching import Admission, QueueFull
from .metrics import Metrics
from .pool import ModelNotServed, ModelPool

RETRY_AFTER_SECONDS = 1


class ApiError(Exception):
    """A request the server refuses: its HTTP status, message and (OpenAI's) error type."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind


class Service:
    """What the routes share: the pool, the admission bound, limits, metrics, the key, readiness."""

    def __init__(self, pool: ModelPool, *, queue_texts: int, max_texts: int, max_bytes: int,
                 api_key: str | None = None, debug: bool = False) -> None:
        self.pool = pool
        self.admission = Admission(queue_texts)
        self.max_texts = max_texts
        self.max_bytes = max_bytes
        self.metrics = Metrics()
        self.api_key = api_key
        self.debug = debug
        self.ready = False
        self.failure: str | None = None  # a -m model that failed to load: the server says so and stops
        self.failure_status = 0  # its exit status

    # -- the pieces every handler uses ----------------------------------------------------------------

    async def body(self, request: Request) -> dict[str, Any]:
        """The request's JSON object, read only up to max_bytes."""
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            raise ApiError(413, f"the request body has {int(declared):,} bytes, more than the server's "
                                f"{self.max_bytes:,} (--max-bytes)")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_bytes:
                raise ApiError(413, f"the request body is larger than the server's {self.max_bytes:,} bytes (--max-bytes)")
            chunks.append(chunk)
        try:
            body = json.loads(b"".join(chunks))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, f"the request body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object")
        return body

    def texts(self, value: Any, field: str) -> tuple[list[str], bool]:
        """A string or a list of strings (and whether it was one string), within max_texts."""
        if isinstance(value, str):
            return [value], True
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ApiError(422 if value is not None else 400,
                           f"'{field}' must be a string or a list of strings" if value is not None
                           else f"'{field}' is missing: give a string or a list of strings")
        if not value:
            raise ApiError(422, f"'{field}' is an empty list")
        if len(value) > self.max_texts:
            raise ApiError(413, f"'{field}' has {len(value):,} texts, more than the server's {self.max_texts:,} "
                                f"per request (--max-texts)")
        return value, False

    async def run(self, task: str, model: Any, texts: list[str], options: dict[str, Any] | None = None
                  ) -> tuple[Any, Any, list[dict[str, Any]], list[int]]:
        """Run `texts` through `task` on `model` with every other client's texts: (the loaded model, the
        task object, one result per text, tokens per text)."""
        loaded, task_object, _ = await self.prepare(task, model, options)
        if not texts:
            return loaded, task_object, [], []
        self.admission.admit(len(texts))
        try:
            results, lengths = await asyncio.wrap_future(loaded.worker.submit(task_object, texts))
        finally:
            self.admission.release(len(texts))
        return loaded, task_object, results, lengths

    async def prepare(self, task: str, model: Any, options: dict[str, Any] | None = None
                      ) -> tuple[Any, Any, list[str]]:
        """The loaded model, the task object and the notices of its loading (ModelPool.task_for), loading
        the model off the event loop if need be."""
        if model is not None and not isinstance(model, str):
            raise ApiError(422, "'model' must be a string")
        return await run_in_threadpool(self.pool.task_for, task, model, options)

    def authorised(self, request: Request) -> bool:
        if self.api_key is None:
            return True
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self.api_key.encode())

    # -- routing --------------------------------------------------------------------------------------

    def route(self, path: str, handler: Callable[[Request], Awaitable[Any]], methods: list[str], style: str,
              open_route: bool = False) -> Route:
        """`handler` as a route: the key checked, errors answered in `style` ("openai" or "tei"), timed."""

        async def endpoint(request: Request) -> Response:
            started = time.perf_counter()
            try:
                if not open_route and not self.authorised(request):
                    raise ApiError(401, "missing or wrong API key: send 'Authorization: Bearer KEY'",
                                   "authentication_error")
                answer = await handler(request)
                response = answer if isinstance(answer, Response) else JSONResponse(answer)
            except Exception as exc:  # noqa: BLE001 -- every failure is an answer, never a dropped connection
                response = self.error_response(exc, style)
            self.metrics.request(path, response.status_code, time.perf_counter() - started)
            return response

        return Route(path, endpoint, methods=methods)

    def error_response(self, exc: Exception, style: str) -> JSONResponse:
        headers, own = {}, None
        if isinstance(exc, ApiError):
            status, message, kind = exc.status, exc.message, exc.kind
        elif isinstance(exc, QueueFull):
            status, message, kind = 503, f"the server is busy ({exc}); retry shortly", "overloaded"
            headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        elif isinstance(exc, SqueezeError):
            status = (404 if isinstance(exc, ModelNotServed) or _unknown_model(exc)
                      else 422 if isinstance(exc, (UsageError, InputError, ModelError)) else
                      502 if isinstance(exc, NetworkError) else 500)
            message = exc.message + (f" ({exc.hint})" if exc.hint else "")
            own = {"status": int(exc.status), "message": exc.message, "hint": exc.hint}  # for squeeze's client
            kind = "model_not_found" if status == 404 else "invalid_request_error" if status < 500 else "server_error"
        else:
            status, message, kind = 500, "internal error (the server's stderr has the details with SQUEEZE_DEBUG=1)", "server_error"
            print(f"squeeze serve: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
            if self.debug:
                traceback.print_exception(exc, file=sys.stderr)
        if style == "tei":
            body: dict[str, Any] = {"error": message, "error_type": _TEI_TYPES.get(status, "Validation")}
        else:
            body = {"error": {"message": message, "type": kind, "param": None, "code": status,
                              **({"squeeze": own} if own else {})}}
        return JSONResponse(body, status_code=status, headers=headers)


_TEI_TYPES = {401: "Unauthorized", 503: "Overloaded", 500: "Backend", 502: "Backend", 413: "Validation",
              404: "Validation"}


def _unknown_model(exc: SqueezeError) -> bool:
    """Whether a loading error says the model does not exist (404) rather than that it cannot run (422)."""
    text = exc.message.lower()
    return any(words in text for words in ("not found", "no such", "does not exist", "unknown model", "not a model"))
