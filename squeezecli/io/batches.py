"""Records -> batches of similar length -> results in input order, with reading overlapped on a thread.

`run_windows` is the streaming core every command shares: it reads a window of records, sorts it by
length so each batch pads little, runs the batch function, and hands back each stretch of results that
is complete in input order as soon as it is, so output streams and memory holds one window.
"""

from __future__ import annotations

import itertools
import queue
import signal
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

DEFAULT_BATCH_SIZE = 32
# The most records one batch may hold: a window holds WINDOW_BATCHES batches of records, and a task's
# outputs for a batch (token-level: records x window x hidden floats) are held at once, so memory grows
# with it; at 256, BERT-base over full 512-token windows holds about 0.4 GB of outputs. Past a few dozen
# records a batch runs no faster: the model runs it in passes of ~1,000 tokens (model/runtime.py).
MAX_BATCH_SIZE = 256
# Records are read this many batches at a time and sorted by length, so each batch pads little.
WINDOW_BATCHES = 8
# The thread that reads input ahead of the model. The CLI leaves without finalising while it is blocked
# on a stdin that never ends (Ctrl-C during `tail -f | squeeze`).
READER_THREAD = "squeeze-reader"


def batched(iterable: Iterable[T], n: int) -> Iterator[list[T]]:
    """Lists of `n` items (the last one shorter), pulling only as many items as each list needs."""
    if n < 1:
        raise ValueError("batch size must be at least 1")
    iterator = iter(iterable)
    while batch := list(itertools.islice(iterator, n)):
        yield batch


def run_bucketed(*args: Any, **kwargs: Any) -> Iterator[tuple[Any, Any]]:
    """`run_windows(...)` flattened: one (record, result) pair at a time, in input order."""
    return itertools.chain.from_iterable(run_windows(*args, **kwargs))


def run_windows(
    records: Iterable[T],
    length_of: Callable[[T], int],
    batch_size: int,
    window: int,
    process_batch: Callable[[list[Any]], Sequence[R]],
    live: bool = False,
    prepare: Callable[[list[T]], Sequence[Any]] | None = None,
) -> Iterator[list[tuple[T, R]]]:
    """(record, result) pairs in input order, as soon as they are ready; results come from batches of
    similar length.

    Reads `window` records at a time and sorts them by `length_of` into batches that pad little. The
    batches run (`process_batch` must return one result per record, in the order given) in the order
    that frees output soonest: next, the batch holding the first record not yet done; after each, the
    records done in input order so far are yielded. So the first result of a big file is out after
    one batch, not one window, and every batch is the same as in length order. With `live`, records
    are read ahead on a thread and a window holds only what has arrived (see `arriving_windows`), so a
    slow stream such as `tail -f` gets each line's result promptly. With `prepare`, each window's
    records are first made into items (one per record, in order: a task's tokenized texts), which
    `length_of` measures and `process_batch` takes, so a text is tokenized once.
    """
    if window < batch_size:
        raise ValueError("the window must hold at least one batch")
    for chunk in (arriving_windows(records, window) if live else batched(records, window)):
        items = chunk if prepare is None else prepare(chunk)
        # sorted() is stable: records of equal length keep their input order inside a batch.
        by_length = sorted(range(len(items)), key=lambda i: length_of(items[i]))
        batches = list(batched(by_length, batch_size))
        batch_of = {i: number for number, indices in enumerate(batches) for i in indices}
        results: list[Any] = [None] * len(chunk)
        done = [False] * len(chunk)
        emitted = 0
        while emitted < len(chunk):
            indices = batches[batch_of[emitted]]
            batch_results = process_batch([items[i] for i in indices])
            if len(batch_results) != len(indices):
                raise ValueError(f"process_batch returned {len(batch_results)} results for {len(indices)} records")
            for i, result in zip(indices, batch_results):
                results[i], done[i] = result, True
            ready = emitted
            while ready < len(chunk) and done[ready]:
                ready += 1
            yield list(zip(chunk[emitted:ready], results[emitted:ready]))
            emitted = ready


class _Failed:
    """The reader thread's exception, delivered in order after the records read before it."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()


def _next(pending: queue.Queue) -> Any:
    """The next item, waiting as long as it takes, in short waits: the interpreter runs a signal's
    handler (Ctrl-C) only when the main thread wakes, and a signal the kernel delivers to another
    thread does not wake it."""
    while True:
        try:
            return pending.get(timeout=0.25)
        except queue.Empty:
            continue


def arriving_windows(records: Iterable[T], size: int, linger: float = 0.05) -> Iterator[list[T]]:
    """Windows of at most `size` records, holding what has arrived rather than waiting for `size`.

    A reader thread pulls records into a queue of one window (so memory stays bounded and reading and
    decoding overlap the model). A window waits for its first record, then takes more while each next
    one arrives within `linger` seconds: a fast file gives full windows, `tail -f` one line at a time.
    An error raised while reading (bad UTF-8 on line N) comes after the results of lines before it.
    """
    pending: queue.Queue = queue.Queue(maxsize=size)

    def read() -> None:
        if hasattr(signal, "pthread_sigmask"):  # Ctrl-C goes to the main thread, which handles it
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            for record in records:
                pending.put(record)
        except BaseException as error:  # delivered to the consumer, which re-raises it
            pending.put(_Failed(error))
        pending.put(_END)

    threading.Thread(target=read, name=READER_THREAD, daemon=True).start()
    while True:
        item = _next(pending)
        window: list[T] = []
        while item is not _END and not isinstance(item, _Failed):
            window.append(item)
            if len(window) == size:
                break
            try:
                item = pending.get(timeout=linger)
            except queue.Empty:
                break
        if window:
            yield window
        if isinstance(item, _Failed):
            raise item.error
        if item is _END:
            return
