"""The Python API: the same pipelines the CLI runs, for notebooks and batch engines.

    import squeezecli
    sentiment = squeezecli.load("sentiment")
    sentiment(["I loved it", "I did not"])   # -> [{"label": "POSITIVE", "score": ...}, ...]

`load` resolves the model (alias, Hub id or local directory), pulls and quantizes it on first use,
and returns a `Pipeline`: a callable from a list of texts to one result dict per text, in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .environment import Environment, choose_library_settings
from .io.batches import DEFAULT_BATCH_SIZE, run_bucketed


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

    def prepare(self, texts: Sequence[str]) -> list[Any]:
        """Per text, the task's first step (its tokens, once) with the `length` batches are sorted by."""
        return self.task.prepare(list(texts))

    def run_prepared(self, prepared: Sequence[Any]) -> list[dict]:
        """One batch of `prepare`d texts as given (no re-ordering)."""
        return self.task.run(list(prepared))

    def __call__(self, texts: Sequence[str]) -> list[dict]:
        texts = list(texts)
        pairs = run_bucketed(texts, _length, self.batch_size, max(len(texts), self.batch_size), self.task.run,
                             prepare=self.task.prepare)
        return [result for _, result in pairs]


def _length(item: Any) -> int:
    return item.length


def load(
    task: str,
    model: str | None = None,
    *,
    revision: str | None = None,
    precision: str = "auto",
    offline: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_length: int | None = None,
    threads: int | None = None,
    progress: bool = False,
    env: Environment | None = None,
    **options: Any,
) -> Pipeline:
    """A ready pipeline for `task`, a name of the table of tasks (tasks/table.py's TASKS: "sentiment",
    "classify", "qa", ...); an unknown name is a ValueError that lists them.

    `model` defaults to the task's catalogue default; `options` are the task's own (top_k, labels,
    questions, aggregation, ...). `threads` sets torch's thread count for the process; notices (a
    first-use pull, an int8 fallback, what the model's window changes of the options) go to `env`'s
    stderr (default: this process's environment). Options that do not fit the model (a stride or chunk
    against its window) are refused from its config and tokenizer, before its weights are downloaded,
    quantized or read.
    """
    choose_library_settings()  # before the imports below load torch (OpenMP's a no-op once it is loaded)
    from .assembly import loader
    from .model import process
    from .store import catalogue
    from .tasks import task_class

    env = env or Environment.from_os()
    process.prepare(threads)
    cls = task_class(task)
    arguments = dict(max_length=max_length, batch_size=batch_size, **options)

    def check(preview: Any) -> None:
        """The task built on the model's preview: what it refuses is refused before the weights load."""
        for notice in cls(preview, **arguments).notices:
            env.notice(notice)

    runtime = loader.load_runtime(model or catalogue.default_for(task), cls.head, precision=precision,
                                  revision=revision, offline=offline, progress=progress, env=env, check=check)
    return Pipeline(cls(runtime, **arguments), batch_size)
