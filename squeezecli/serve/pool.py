"""The models a server keeps loaded: one runtime (and one `ModelWorker`) per model and head, loaded on
first use or at start (`-m`), the least recently used unloaded when more than `max_models` are loaded.

A model is named as `-m` names it: an alias, a Hub id or a local directory; an alias counts as its Hub
id, so `minilm-embed` and `sentence-transformers/all-MiniLM-L6-v2` are one model. The `-m` models are
pinned (never unloaded). With `restricted` (a server off loopback) only they may be named: a client
cannot make the server read a local path or download a model.

Tasks that differ only in options (`top_k`, labels, ...) share their model's runtime and worker; each
option set is its own task object, so the worker batches only like with like.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable
from typing import Any

from ..environment import Environment
from ..errors import ModelError
from ..store import catalogue
from .batching import BatchObserver, ModelWorker


# Notices a model's loading prints once, not on every run (a first use's download or quantization, a
# damaged cache entry mended); the others (a precision that falls back) each in-process run prints again.
ONCE_NOTICES = ("for the first time", "damaged cache entry")


# Task objects (option sets) kept per model; each is small beside its model, but requests can vary them.
TASKS_PER_MODEL = 64


class ModelNotServed(ModelError):
    """A model this server may not load (off loopback, a model not given with -m)."""


@dataclasses.dataclass
class Loaded:
    """A runtime, its worker, its task objects by option set, and the notices each run here would print
    (about the machine: a precision its kernels do not run; not a first use's download)."""

    name: str  # as first named
    runtime: Any
    worker: ModelWorker
    notices: list[str]
    tasks: dict[str, Any] = dataclasses.field(default_factory=dict)


def canonical(name: str) -> str:
    """The name a model is kept under: an alias as its Hub id."""
    return catalogue.hub_id(name)


class ModelPool:
    def __init__(self, *, precision: str = "auto", max_models: int = 4, pinned: tuple[str, ...] = (),
                 restricted: bool = False, max_texts: int = 32, batch_size: int = 32,
                 on_batch: BatchObserver | None = None, env: Environment | None = None,
                 threads: int | None = None) -> None:
        self.precision = precision
        self.max_models = max(max_models, len(pinned), 1)
        self.pinned = {canonical(name) for name in pinned}
        self.pinned_names = tuple(pinned)
        self.restricted = restricted
        self.max_texts = max_texts
        self.batch_size = batch_size
        self.on_batch = on_batch
        self.env = env or Environment.from_os()
        self.threads = threads
        self._load: Callable[..., Any] = _load
        self._loaded: dict[tuple[str, str], Loaded] = {}
        self._lock = threading.Lock()  # guards _loaded
        self._loading: dict[tuple[str, str], threading.Lock] = {}

    def name_for(self, task: str, model: str | None) -> str:
        """The model a request runs: `model`, else the task's default (or, restricted, the only -m model
        of the task when there is one); refused where this server may not load it."""
        if model is not None and not isinstance(model, str) or model == "":
            raise ModelError("'model' must be a model's name")
        name = model or catalogue.default_for(task)
        if self.restricted and canonical(name) not in self.pinned:
            served = ", ".join(self.pinned_names) or "none"
            raise ModelNotServed(f"model {name!r} is not served here", hint=f"this server serves: {served}")
        return name

    def task_for(self, task: str, model: str | None, options: dict[str, Any] | None = None
                 ) -> tuple[Loaded, Any, list[str]]:
        """The loaded model, the task object for `task` with `options`, and the notices an in-process run
        would have printed as it loaded the model (all of them where this call loaded it). Loads the
        model if need be: call it off the event loop."""
        from ..tasks import task_class

        name = self.name_for(task, model)
        options = {"batch_size": self.batch_size, **(options or {})}
        key = json.dumps([task, options], sort_keys=True, default=str)
        loaded, notices = self._runtime(name, task, options, key)
        found = loaded.tasks.get(key)
        if found is None:
            found = task_class(task)(loaded.runtime, **options)
            with self._lock:  # the oldest option sets make way (a query a request, for instance)
                kept = list(loaded.tasks.items())[-(TASKS_PER_MODEL - 1):]
                loaded.tasks = {**dict(kept), key: found}
        # Where this call did not load the model: its standing notices, and what the options' task says.
        return loaded, found, [*loaded.notices, *found.notices] if notices is None else notices

    def preload(self, name: str) -> Loaded:
        """Load an -m model for its catalogue task, or for embeddings (every checkpoint has an encoder);
        its other heads load on their first request."""
        entry = catalogue.by_alias(name) or catalogue.by_repo_id(name)
        return self.task_for(entry.task if entry else "embed", name)[0]

    def loaded(self) -> list[Loaded]:
        with self._lock:
            return list(self._loaded.values())

    def stop(self) -> None:
        """Finish every queued job, then end the workers."""
        for loaded in self.loaded():
            loaded.worker.stop()

    def _runtime(self, name: str, task: str, options: dict[str, Any], task_key: str) -> tuple[Loaded, list[str] | None]:
        """The loaded model, and the notices of its loading where this call loaded it (else None)."""
        from ..tasks import task_class

        head = task_class(task).head
        key = (canonical(name), head)
        with self._lock:
            found = self._loaded.get(key)
            if found is not None:
                found.worker.last_used = time.monotonic()
                return found, None
            gate = self._loading.setdefault(key, threading.Lock())
        with gate:  # one load per model at a time; whoever waited finds it loaded
            with self._lock:
                if key in self._loaded:
                    return self._loaded[key], None
            notices: list[str] = []
            env = dataclasses.replace(self.env, notice_sinks=[])
            env.notice_sinks.append(lambda line: (notices.append(line), self.env.notice(line.removeprefix("squeeze: "))))
            pipeline = self._load(task, name, precision=self.precision, threads=self.threads, env=env, **options)
            worker = ModelWorker(f"{name} ({head})", max_texts=self.max_texts, on_batch=self.on_batch)
            with self._lock:
                told = {f"squeeze: {notice}" for notice in pipeline.task.notices}  # of these options only
                standing = [line for line in notices if not any(words in line for words in ONCE_NOTICES)
                            and line not in told]
                self._loaded[key] = Loaded(name, pipeline.runtime, worker, standing, {task_key: pipeline.task})
                self._loading.pop(key, None)
                evicted = self._evict(keep=key)
        for loaded in evicted:
            loaded.worker.stop(wait=False)
        return self._loaded[key], notices

    def _evict(self, keep: tuple[str, str]) -> list[Loaded]:
        """Past max_models, the least recently used models that are neither pinned nor busy (under _lock)."""
        evicted = []
        idle = sorted((item for item in self._loaded.items()
                       if item[0] != keep and item[0][0] not in self.pinned and not item[1].worker.busy),
                      key=lambda item: item[1].worker.last_used)
        while len(self._loaded) > self.max_models and idle:
            key, loaded = idle.pop(0)
            evicted.append(self._loaded.pop(key))
        return evicted


def _load(task: str, model: str, **kwargs: Any) -> Any:
    from ..api import load

    return load(task, model, **kwargs)
