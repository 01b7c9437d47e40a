"""The CLI's side of a server: a task command's batches sent to `SQUEEZE_SERVER` instead of a model
loaded here. The standard library's http.client only, one kept-alive connection: a command that runs
through a server never imports torch, Starlette or uvicorn.

`connect` says hello first (`GET /health`: the server answers and runs this squeeze version), then asks
for the task (`POST /v1/tasks/{task}` without texts: the server loads the model if need be and says the
task's window and the notices its loading printed). Where any of that fails (nothing answers, another
version, a model or precision the server does not serve) it returns None with one notice, and the
command runs in-process. Past the hello, a failure is the run's error: half the output is printed.
"""

from __future__ import annotations

import http.client
import json
import os
import urllib.parse
from collections.abc import Sequence
from typing import Any

from .._version import __version__
from ..environment import Environment
from ..errors import ExitStatus, NetworkError, SqueezeError
from ..io.batches import WINDOW_BATCHES

CONNECT_TIMEOUT = 3.0  # seconds for the hello: a server that does not answer by then is not used
RUN_TIMEOUT = 600.0  # seconds for one batch (a first request may load a model)


class Unusable(Exception):
    """The server cannot run this command (the notice says why); the command runs in-process."""


class ServerError(SqueezeError):
    """An error the server reported for a request, with the exit status the same error has in-process."""

    def __init__(self, message: str, hint: str | None, status: int) -> None:
        super().__init__(message, hint)
        self.status = ExitStatus(status) if status in ExitStatus._value2member_map_ else ExitStatus.ERROR


class Connection:
    """One HTTP connection to a server, kept alive; JSON in and out."""

    def __init__(self, url: str, api_key: str | None = None) -> None:
        parsed = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise Unusable(f"SQUEEZE_SERVER={url!r} is not an http:// address")
        self.url = f"{parsed.scheme}://{parsed.netloc}"
        self.prefix = parsed.path.rstrip("/")
        kind = http.client.HTTPSConnection if parsed.scheme == "https" else http.client.HTTPConnection
        self._http = kind(parsed.hostname, parsed.port, timeout=CONNECT_TIMEOUT)
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"

    def request(self, method: str, path: str, body: Any = None, timeout: float | None = None) -> tuple[int, Any]:
        """(status, decoded JSON body); OSError and http.client.HTTPException pass through."""
        data = None if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
        if timeout is not None:
            self._http.timeout = timeout
            if self._http.sock is not None:
                self._http.sock.settimeout(timeout)
        try:
            self._http.request(method, self.prefix + path, body=data, headers=self._headers)
            response = self._http.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException):
            self._http.close()
            raise
        try:
            return response.status, json.loads(raw) if raw else None
        except ValueError:
            return response.status, None

    def close(self) -> None:
        self._http.close()


class RemotePipeline:
    """What a task command runs its batches through, as `api.Pipeline` offers it, on a server."""

    def __init__(self, connection: Connection, task: str, request: dict[str, Any], hello: dict[str, Any]) -> None:
        self.connection = connection
        self.task_name = task
        self.request = request  # model, options, max_length, batch_size
        window = hello.get("window") or {}
        self.task = _Described(max_length=window.get("task"), chunkable=bool(window.get("chunkable")),
                               dimension=window.get("dimension"))
        self.runtime = _Described(max_length=window.get("model"))
        self.notices: list[str] = list(hello.get("notices") or [])
        self.max_texts = max(int(hello.get("max_texts") or 1), 1)

    def length_of(self, text: str) -> int:
        """Nothing to sort by here: the CLI sends whole windows in input order (`window`), and the server
        sorts each by its tokens into the batches the in-process run makes, so every result is the same."""
        return 0

    def window(self, batch_size: int) -> int:
        """The records one request carries: what the in-process run sorts into batches at a time."""
        return min(WINDOW_BATCHES * batch_size, self.max_texts)

    def run_batch(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        texts = list(texts)
        return [result for start in range(0, len(texts), self.max_texts)
                for result in self._run(texts[start:start + self.max_texts])]

    def _run(self, texts: list[str]) -> list[dict[str, Any]]:
        body = {**self.request, "texts": texts}
        try:
            status, answer = self.connection.request("POST", f"/v1/tasks/{self.task_name}", body, timeout=RUN_TIMEOUT)
        except (OSError, http.client.HTTPException) as exc:
            raise NetworkError(f"the server at {self.connection.url} stopped answering: {_reason(exc)}",
                               hint="rerun, or run without it: --no-server") from None
        if status != 200:
            raise _error(status, answer, self.connection.url)
        results = answer.get("results") if isinstance(answer, dict) else None
        if not isinstance(results, list) or len(results) != len(texts):
            raise NetworkError(f"the server at {self.connection.url} answered {len(texts)} texts with something else")
        return results

    def __call__(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        return self.run_batch(texts)


class _Described:
    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)


def connect(url: str, task: str, model: str | None, options: dict[str, Any], *, precision: str,
            env: Environment, max_length: int | None = None, batch_size: int | None = None) -> RemotePipeline | None:
    """A pipeline running `task` (a row of the task table, with its options by name) on the server at
    `url`, or None (with one notice saying why) where that server cannot run it."""
    request = {"model": _model_name(model), "options": options, "max_length": max_length, "batch_size": batch_size}
    try:
        connection = Connection(url, env.api_key)
        return _hello(connection, task, request, precision)
    except Unusable as why:
        env.notice(f"{why}: running here instead")
    except (OSError, http.client.HTTPException) as exc:
        env.notice(f"the server at {url} does not answer ({_reason(exc)}): running here instead")
    return None


def _hello(connection: Connection, task: str, request: dict[str, Any], precision: str) -> RemotePipeline:
    status, health = connection.request("GET", "/health")
    if status == 503 and isinstance(health, dict) and health.get("status") == "loading":
        raise Unusable(f"the server at {connection.url} is still loading its models")
    if status != 200 or not isinstance(health, dict) or "version" not in health:
        raise Unusable(f"the server at {connection.url} is not a squeeze server that is ready (HTTP {status})")
    if health["version"] != __version__:
        raise Unusable(f"the server at {connection.url} runs squeeze {health['version']}, this is {__version__}")
    served = health.get("precision", "auto")
    if precision != served:
        raise Unusable(f"the server at {connection.url} runs --precision {served}, not {precision}")
    status, hello = connection.request("POST", f"/v1/tasks/{task}", {**request, "texts": []}, timeout=RUN_TIMEOUT)
    if status in (401, 403):
        raise Unusable(f"the server at {connection.url} refused the API key (SQUEEZE_API_KEY)")
    if status == 404:
        raise Unusable(f"the server at {connection.url} cannot serve this: {_message(hello)}")
    if status != 200:
        raise _error(status, hello, connection.url)
    return RemotePipeline(connection, task, request, {**hello, "max_texts": health.get("max_texts")})


def _model_name(model: str | None) -> str | None:
    """A local directory by its absolute path (the server's working directory is not ours)."""
    if model is not None and os.path.isdir(model):
        return os.path.abspath(model)
    return model


def _error(status: int, answer: Any, url: str) -> SqueezeError:
    """The server's error as the in-process run reports it (its own message and exit status)."""
    error = answer.get("error") if isinstance(answer, dict) else None
    own = error.get("squeeze") if isinstance(error, dict) else None
    if isinstance(own, dict) and isinstance(own.get("message"), str):
        return ServerError(own["message"], own.get("hint"), int(own.get("status", 1)))
    if status == 503:
        return NetworkError(f"the server at {url} is busy: {_message(answer)}", hint="retry shortly, or use --no-server")
    return NetworkError(f"the server at {url} answered HTTP {status}: {_message(answer)}")


def _message(answer: Any) -> str:
    error = answer.get("error") if isinstance(answer, dict) else None
    if isinstance(error, dict):
        return str(error.get("message", ""))
    return str(error or "no message")


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def probe(url: str | None, api_key: str | None = None) -> dict[str, Any]:
    """What `squeeze doctor` says of SQUEEZE_SERVER: whether one is set, answers, and runs this version."""
    report: dict[str, Any] = {"url": url, "answers": None, "status": None, "version": None, "models": [],
                              "detail": "not set (SQUEEZE_SERVER): commands run here"}
    if not url:
        return report
    try:
        connection = Connection(url, api_key)
        status, health = connection.request("GET", "/health")
        connection.close()
    except Unusable as why:
        return {**report, "answers": False, "detail": str(why)}
    except (OSError, http.client.HTTPException) as exc:
        return {**report, "answers": False, "detail": f"does not answer ({_reason(exc)}): commands run here"}
    health = health if isinstance(health, dict) else {}
    version = health.get("version")
    detail = ("ready" if status == 200 else str(health.get("status") or f"HTTP {status}")) + (
        "" if version in (None, __version__) else f"; runs squeeze {version}, this is {__version__}: commands run here")
    return {**report, "answers": True, "status": health.get("status"), "version": version,
            "models": list(health.get("models") or []), "detail": detail}
