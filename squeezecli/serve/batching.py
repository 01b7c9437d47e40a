"""The batching queue and the model worker: requests from every client run together, one batch at a time.

Each loaded model has one `ModelWorker`, a thread that owns the model's forward passes (torch runs one
batch at a time on all cores; two threads on one model would only fight over them). A request becomes
a `Job` (its texts, the task they are for, a future); the worker takes the oldest job, adds every other
waiting job for the same task until the batch holds `max_texts` texts or `token_budget` tokens, and
runs them as one call of the task (sorted by length inside, as the CLI's batches are). So eight clients
sending four texts each, arriving while a batch runs, make one batch of 32. A text's result does not
depend on its batch-mates (the tasks are batch independent: padding is masked).

The bound is on texts admitted and not yet answered, across every worker (`Admission`): a request that
would pass it is refused at once (`QueueFull`, which the app answers 503 with Retry-After), never queued
without limit.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..io.batches import run_bucketed

# Tokens (as each task estimates them) in one batch at most; with the default 32 texts, 32 windows of 128.
TOKEN_BUDGET = 4096


class QueueFull(Exception):
    """More texts are waiting than the server's bound allows; the client should retry later."""


class Admission:
    """The server-wide count of texts admitted and not yet answered, bounded by `limit`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.pending = 0
        self._lock = threading.Lock()

    def admit(self, texts: int) -> None:
        with self._lock:
            if self.pending + texts > self.limit:
                raise QueueFull(f"the server has {self.pending} texts waiting, {self.limit} at most")
            self.pending += texts

    def release(self, texts: int) -> None:
        with self._lock:
            self.pending -= texts


@dataclasses.dataclass
class Job:
    """One request's texts for one task; `future` gets (results, tokens per text)."""

    task: Any  # a tasks.Task bound to the worker's runtime
    texts: Sequence[str]
    future: concurrent.futures.Future = dataclasses.field(default_factory=concurrent.futures.Future)
    lengths: list[int] | None = None

    def measure(self) -> list[int]:
        if self.lengths is None:
            self.lengths = [self.task.length_of(text) for text in self.texts]
        return self.lengths


# Called after each batch: (texts in the batch, seconds it ran).
BatchObserver = Callable[[int, float], None]


class ModelWorker:
    """One thread running every job for one model, in arrival order, batched as the module says."""

    def __init__(self, name: str, *, max_texts: int, token_budget: int = TOKEN_BUDGET,
                 on_batch: BatchObserver | None = None) -> None:
        self.name = name
        self.max_texts = max_texts
        self.token_budget = token_budget
        self.on_batch = on_batch
        self._jobs: collections.deque[Job] = collections.deque()
        self._ready = threading.Condition()
        self._stopping = False
        self.last_used = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f"squeeze-model {name}", daemon=True)
        self._thread.start()

    def submit(self, task: Any, texts: Sequence[str]) -> concurrent.futures.Future:
        job = Job(task, list(texts))
        with self._ready:
            if self._stopping:
                raise RuntimeError("the model worker has stopped")
            self._jobs.append(job)
            self.last_used = time.monotonic()
            self._ready.notify()
        return job.future

    @property
    def busy(self) -> bool:
        with self._ready:
            return bool(self._jobs) or self._running

    _running = False

    def stop(self, wait: bool = True) -> None:
        """Finish the jobs already queued, then end the thread."""
        with self._ready:
            self._stopping = True
            self._ready.notify()
        if wait:
            self._thread.join()

    def _take(self) -> list[Job] | None:
        """The next batch: the oldest job and the waiting jobs of its task that fit the budget."""
        with self._ready:
            while not self._jobs:
                if self._stopping:
                    return None
                self._ready.wait()
            first = self._jobs.popleft()
            self._running = True
            batch, texts, tokens = [first], len(first.texts), sum(first.measure())
            kept: collections.deque[Job] = collections.deque()
            while self._jobs:
                job = self._jobs.popleft()
                if job.task is first.task and texts + len(job.texts) <= self.max_texts:
                    size = sum(job.measure())
                    if tokens + size <= self.token_budget:
                        batch.append(job)
                        texts, tokens = texts + len(job.texts), tokens + size
                        continue
                kept.append(job)
            self._jobs.extendleft(reversed(kept))
            return batch

    def _run(self) -> None:
        while (batch := self._take()) is not None:
            try:
                self._run_batch(batch)
            finally:
                with self._ready:
                    self._running = False

    def _run_batch(self, batch: list[Job]) -> None:
        task = batch[0].task
        texts = [text for job in batch for text in job.texts]
        lengths = [length for job in batch for length in job.measure()]
        started = time.perf_counter()
        try:
            by_length = dict(zip(range(len(texts)), lengths))
            pairs = run_bucketed(list(range(len(texts))), by_length.__getitem__, task.batch_size,
                                 max(len(texts), task.batch_size),
                                 lambda indices: task([texts[i] for i in indices]))
            results = [result for _, result in pairs]
        except BaseException as exc:  # noqa: BLE001 -- each waiting request gets the failure, the worker lives on
            for job in batch:
                job.future.set_exception(exc)
            return
        if self.on_batch:
            self.on_batch(len(texts), time.perf_counter() - started)
        start = 0
        for job in batch:
            end = start + len(job.texts)
            job.future.set_result((results[start:end], lengths[start:end]))
            start = end
