"""The endpoints and their request and response shapes.

- OpenAI: `POST /v1/embeddings` ({"input": str | [str], "model", "encoding_format": "float" | "base64",
  "dimensions"} -> {"object": "list", "data": [{"object": "embedding", "index", "embedding"}], "model",
  "usage": {"prompt_tokens", "total_tokens"}}), `GET /v1/models`.
- text-embeddings-inference: `POST /embed` ({"inputs", "normalize": true, "truncate": false,
  "dimensions"} -> [[float]]), `POST /predict` ({"inputs": str | [[str]], "truncate": false} -> the
  labels with their scores, best first: a list for one input, a list of lists for a batch), `POST
  /rerank` where the table has a rerank task ({"query", "texts", "return_text": false, "truncate":
  false} -> [{"index", "score", "text"?}], best first).
- squeeze's own: `POST /v1/tasks/{task}` ({"texts": [str], "model", "options": {...}, "max_length",
  "batch_size"} -> {"results": [...], "model", "notices": [...], "window": {...}}): the records the CLI
  prints, for every row of the task table, its options named as the table names them (requests.py).

`dimensions` keeps a vector's first N components and rescales them to unit length (Matryoshka models
are trained for exactly this). base64 is the vector's float32 little-endian bytes, as OpenAI sends them.
"""

from __future__ import annotations

import base64
import math
import struct
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from .._version import __version__

from ..tasks.table import TASKS
from .app import ApiError, Service
from .requests import task_arguments

ENCODINGS = ("float", "base64")


def routes(service: Service) -> list[Route]:
    async def embeddings(request: Request) -> dict[str, Any]:
        body = await service.body(request)
        texts, _ = service.texts(body.get("input"), "input")
        encoding = body.get("encoding_format", "float") or "float"
        if encoding not in ENCODINGS:
            raise ApiError(422, f"'encoding_format' must be one of {', '.join(ENCODINGS)}, not {encoding!r}")
        dimensions = _dimensions(body.get("dimensions"))
        loaded, _, results, lengths = await service.run("embed", body.get("model"), texts)
        vectors = [_fit(result["embedding"], dimensions, renormalise=dimensions is not None) for result in results]
        data = [{"object": "embedding", "index": index, "embedding": _encoded(vector, encoding)}
                for index, vector in enumerate(vectors)]
        tokens = sum(lengths)
        return {"object": "list", "data": data, "model": body.get("model") or loaded.name,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    async def models(request: Request) -> dict[str, Any]:
        names = dict.fromkeys([*service.pool.pinned_names, *(loaded.name for loaded in service.pool.loaded())])
        return {"object": "list", "data": [{"id": name, "object": "model", "created": 0, "owned_by": "squeeze"}
                                           for name in names]}

    async def embed(request: Request) -> list[list[float]]:
        body = await service.body(request)
        texts, _ = service.texts(body.get("inputs"), "inputs")
        normalize, truncate = _flag(body, "normalize", True), _flag(body, "truncate", False)
        dimensions = _dimensions(body.get("dimensions"))
        loaded, _, results, _ = await service.run("embed", body.get("model"), texts)
        _refuse_cut(results, truncate, loaded)
        return [_fit(result["embedding"], dimensions, renormalise=normalize) for result in results]

    async def predict(request: Request) -> list[Any]:
        body = await service.body(request)
        texts, single = _predict_inputs(body.get("inputs"), service)
        truncate = _flag(body, "truncate", False)
        if _flag(body, "raw_scores", False):
            raise ApiError(422, "'raw_scores' is not supported: squeeze answers the model's probabilities")
        loaded, _, results, _ = await service.run("classify", body.get("model"), texts, {"all_scores": True})
        _refuse_cut(results, truncate, loaded)
        answers = [[{"score": entry["score"], "label": entry["label"]} for entry in result["labels"]]
                   for result in results]
        return answers[0] if single else answers

    async def rerank(request: Request) -> list[dict[str, Any]]:
        body = await service.body(request)
        query = body.get("query")
        if not isinstance(query, str):
            raise ApiError(422 if query is not None else 400, "'query' must be a string")
        texts, _ = service.texts(body.get("texts"), "texts")
        truncate, return_text = _flag(body, "truncate", False), _flag(body, "return_text", False)
        if _flag(body, "raw_scores", False):
            raise ApiError(422, "'raw_scores' is not supported: squeeze answers the cross-encoder's scores")
        loaded, _, results, _ = await service.run("rerank", body.get("model"), texts, {"query": query})
        _refuse_cut(results, truncate, loaded)
        best_first = sorted(range(len(texts)), key=lambda index: -results[index]["score"])
        return [{"index": index, "score": results[index]["score"], **({"text": texts[index]} if return_text else {})}
                for index in best_first]

    async def task(request: Request) -> dict[str, Any]:
        spec = TASKS.get(request.path_params["task"])
        if spec is None:
            raise ApiError(404, f"no task {request.path_params['task']!r}; tasks: {', '.join(TASKS)}")
        body = await service.body(request)
        texts = body.get("texts")
        if not isinstance(texts, list) or not all(isinstance(text, str) for text in texts):
            raise ApiError(422 if "texts" in body else 400, "'texts' must be a list of strings")
        if len(texts) > service.max_texts:
            raise ApiError(413, f"'texts' has {len(texts):,} texts, more than the server's {service.max_texts:,} "
                                f"per request (--max-texts)")
        options, model = body.get("options") or {}, body.get("model")
        if not isinstance(options, dict):
            raise ApiError(422, "'options' must be a JSON object")
        if model is not None and not isinstance(model, str):
            raise ApiError(422, "'model' must be a string")
        name, arguments = task_arguments(spec, options, model, max_length=body.get("max_length"),
                                         batch_size=body.get("batch_size"))
        if not texts:  # the CLI's hello: load the model, say its window and the notices of its loading
            loaded, task_object, notices = await service.prepare(name, model, arguments)
            results: list[Any] = []
        else:
            loaded, task_object, results, _ = await service.run(name, model, texts, arguments)
            notices = []
        return {"results": results, "model": loaded.name, "notices": notices,
                "window": {"task": getattr(task_object, "max_length", None), "model": loaded.runtime.max_length,
                           "chunkable": bool(getattr(task_object, "chunkable", False)),
                           "dimension": getattr(task_object, "dimension", None)}}

    return [
        service.route("/v1/embeddings", embeddings, ["POST"], "openai"),
        service.route("/v1/models", models, ["GET"], "openai"),
        service.route("/v1/tasks/{task}", task, ["POST"], "openai"),
        service.route("/embed", embed, ["POST"], "tei"),
        service.route("/predict", predict, ["POST"], "tei"),
        *([service.route("/rerank", rerank, ["POST"], "tei")] if "rerank" in TASKS else []),
    ]


def build(service: Service) -> Starlette:
    """The application: every route above, /health and /metrics, and JSON for a path or method it has not."""
    async def health(request: Request) -> Response:
        if service.failure:
            return JSONResponse({"status": "failed", "error": service.failure, "version": __version__}, status_code=503)
        if not service.ready:
            return JSONResponse({"status": "loading", "version": __version__}, status_code=503)
        return JSONResponse({"status": "ok", "version": __version__, "precision": service.pool.precision,
                             "max_texts": service.max_texts,
                             "models": [loaded.name for loaded in service.pool.loaded()]})

    async def metrics(request: Request) -> Response:
        text = service.metrics.render(service.admission.pending,
                                      lambda: [loaded.name for loaded in service.pool.loaded()])
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    async def no_route(request: Request, exc: Exception) -> Response:
        allowed = getattr(exc, "headers", None) or {}
        if getattr(exc, "status_code", 404) == 405:
            error = ApiError(405, f"{request.method} is not allowed on {request.url.path}: use {allowed.get('Allow', '')}")
        else:
            error = ApiError(404, f"no such endpoint: {request.method} {request.url.path}")
        return service.error_response(error, "openai")

    every = [service.route("/health", health, ["GET"], "openai", open_route=True),
             service.route("/metrics", metrics, ["GET"], "openai"),
             *routes(service)]
    return Starlette(routes=every, exception_handlers={404: no_route, 405: no_route})


def _flag(body: dict[str, Any], name: str, default: bool) -> bool:
    value = body.get(name, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ApiError(422, f"'{name}' must be true or false")
    return value


def _dimensions(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ApiError(422, "'dimensions' must be a whole number of at least 1")
    return value


def _fit(vector: list[float], dimensions: int | None, renormalise: bool) -> list[float]:
    """The vector's first `dimensions` components, at unit length with `renormalise`."""
    if dimensions is not None:
        if dimensions > len(vector):
            raise ApiError(422, f"'dimensions' is {dimensions}, more than the model's {len(vector)}")
        vector = vector[:dimensions]
    if not renormalise:
        return vector
    norm = math.sqrt(math.fsum(value * value for value in vector))
    return [value / norm for value in vector] if norm > 0 else vector


def _encoded(vector: list[float], encoding: str) -> Any:
    if encoding == "float":
        return vector
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def _refuse_cut(results: list[dict[str, Any]], truncate: bool, loaded: Any) -> None:
    """TEI refuses an input longer than the model's window unless the request says "truncate": true."""
    if not truncate and any(result.get("truncated") for result in results):
        longest = max(result.get("tokens", 0) for result in results)
        raise ApiError(413, f"an input has {longest} tokens, more than the model's {loaded.runtime.max_length}; "
                            f"send \"truncate\": true to cut it to the window")


def _predict_inputs(value: Any, service: Service) -> tuple[list[str], bool]:
    """TEI's predict inputs: a string, or a batch of one-string lists (a pair [a, b] would be a
    cross-encoder's input, which squeeze's classifiers do not take)."""
    if isinstance(value, str):
        return [value], True
    if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        if len(value) == 1:
            return value, True
        raise ApiError(422, "'inputs' is a pair of texts, which needs a cross-encoder; a batch is a list of "
                            "one-text lists: [[\"a\"], [\"b\"]]")
    if isinstance(value, list) and value and all(isinstance(item, list) for item in value):
        if not all(len(item) == 1 and isinstance(item[0], str) for item in value):
            raise ApiError(422, "each input of a batch must be a one-text list; pairs need a cross-encoder")
        texts, _ = service.texts([item[0] for item in value], "inputs")
        return texts, False
    raise ApiError(422 if value is not None else 400, "'inputs' must be a string or a list of one-text lists")
