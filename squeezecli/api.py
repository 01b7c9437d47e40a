"""The Python API: the same pipelines the CLI runs, for notebooks and batch engines.

    import squeezecli
    sentiment = squeezecli.load("sentiment")
    sentiment(["I loved it", "I did not"])   # -> [{"label": "POSITIVE", "score": ...}, ...]

`load` resolves the model (alias, Hub id or local directory), pulls and quantizes it on first use,
and returns a `Pipeline`: a callable from a list of texts to one result dict per text, in order.
"""

from __future__ import annotations

import inspect

from collections.abc import Callable, Sequence
from typing import Any

from .stream import run_bucketed

DEFAULT_BATCH_SIZE = 32


class Pipeline:
    """A task bound to a loaded model; runs any list of texts in length-sorted batches."""

    def __init__(self, task: Any, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        self.task = task
        self.batch_size = batch_size

    @property
    def runtime(self) -> Any:
        return self.task.runtime

    def length_of(self, text: str) -> int:
        return self.task.length_of(text)

    def run_batch(self, texts: Sequence[str]) -> list[dict]:
        """One batch as given (no re-ordering): the CLI's windows are already length-sorted."""
        return self.task(list(texts))

    def __call__(self, texts: Sequence[str]) -> list[dict]:
        texts = list(texts)
        pairs = run_bucketed(texts, self.task.length_of, self.batch_size, max(len(texts), self.batch_size), self.task)
        return [result for _, result in pairs]


def load(
    task: str,
    model: str | None = None,
    *,
    revision: str | None = None,
    precision: str = "int8",
    offline: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_length: int | None = None,
    threads: int | None = None,
    progress: bool = False,
    notify: Callable[[str], None] | None = None,
    **options: Any,
) -> Pipeline:
    """A ready pipeline for `task` ("sentiment", "classify", "zero-shot", "qa", "ner", "embed").

    `model` defaults to the task's catalogue default; `options` are the task's own (top_k, labels,
    questions, aggregation, ...). `notify` receives one-line notices (first-use pulls, int8 fallback).
    """
    import torch

    from . import catalogue, store
    from .tasks import task_class

    if threads:
        torch.set_num_threads(threads)
    cls = task_class(task)
    name = model or catalogue.default_for(task)
    runtime = store.load_runtime(
        name, cls.head, precision=precision, revision=revision, offline=offline, progress=progress, notify=notify
    )
    if max_length:
        options["max_length"] = max_length
    if "batch_size" in inspect.signature(cls).parameters:
        options["batch_size"] = batch_size  # tasks that expand inputs (QA windows, NLI pairs) bound each call
    return Pipeline(cls(runtime, **options), batch_size)
