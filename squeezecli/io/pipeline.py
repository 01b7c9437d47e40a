"""What a command reads and writes, and `run_pipeline`, the loop every task command runs:

    files or stdin -> records -> windows sorted by length -> batches -> results -> rows on stdout

and `best_first`, the bounded top-k by score that ranking outputs (rerank, similar --rerank) share.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from ..environment import Environment
from .batches import WINDOW_BATCHES, run_windows
from .progress import progress_for
from .record import Record
from .records import STDIN, DecodeErrors, OnError, Unit, read_records
from .writers import Format, open_writer, resolved_format, row_for


@dataclasses.dataclass(frozen=True)
class InputOptions:
    """What to read: FILEs ("-" or none for stdin), as lines, JSON lines (text in `field`) or documents."""

    files: tuple[str, ...]
    unit: Unit
    field: str | None
    errors: DecodeErrors
    on_error: OnError = "stop"  # "skip": leave malformed records out, and say how many (read_records)
    empty_documents: bool = False  # an empty document is a record too, not skipped (read_records)

    def read(self, on_read: Callable[[int], None] | None = None, env: Environment | None = None) -> Iterator[Record]:
        return read_records(self.files, self.unit, self.field, self.errors, on_read, env, self.on_error,
                            self.empty_documents)


@dataclasses.dataclass(frozen=True)
class OutputOptions:
    format: Format
    quiet: bool
    fields: tuple[str, ...] | None = None  # --fields: only these, in this order ("text" is the input text)
    color: bool = True  # --no-color: False

    def select(self, row: dict[str, Any], text: str | None = None) -> dict[str, Any]:
        """`row` as --fields asks: the named fields in order, null where a row has none; `text` is the
        input's text, which rows do not otherwise carry."""
        if self.fields is None:
            return row
        return {name: (text if name == "text" and text is not None and "text" not in row else row.get(name))
                for name in self.fields}


TableView = Callable[[dict[str, Any]], dict[str, Any]]


def run_pipeline(
    inputs: InputOptions,
    output: OutputOptions,
    *,
    batch_size: int,
    length_of: Callable[[Any], int],
    process_batch: Callable[[list[Any]], Sequence[dict[str, Any]]],
    columns: Sequence[str] | None = None,
    table_view: TableView | None = None,
    env: Environment | None = None,
    with_text: bool = False,
    best: int | None = None,
    prepare: Callable[[list[Record]], Sequence[Any]] | None = None,
) -> None:
    """Read the inputs, run `process_batch` on length-sorted batches, write rows in input order.

    `length_of` estimates a record's token count (with `prepare`, an item's: see run_windows). JSON lines and CSV get each result as it is, named by
    its file and line (and its input's `text` too `with_text`); a table shows it through `table_view`
    (nested results as one line of text) next to its input's text, in `columns` (see open_writer).
    With `best`, only the `best` results of highest "score" are kept (a heap: memory is bounded by
    `best`, not the input) and written at the end, best first, each with its `rank`.
    """
    env = env or Environment.from_os()
    table = resolved_format(output.format, env) == "table"

    def row(record: Record, result: dict[str, Any]) -> dict[str, Any]:
        if table or with_text:
            return output.select(row_for(record, {**(table_view(result) if table_view and table else result),
                                                  "text": record.text}))
        return output.select(row_for(record, result), record.text)

    with progress_for(inputs.files, quiet=output.quiet, env=env, unit=inputs.unit) as progress:
        records = inputs.read(on_read=progress.read, env=env)
        if columns is not None and len(inputs.files) > 1 and "file" not in columns:  # rows must say which file
            columns = ["file", "line", *columns] if inputs.unit != "doc" else ["file", *columns]
        writer = open_writer(output.format, list(output.fields) if output.fields else columns, env, output.color,
                             files=inputs.files or (STDIN,))
        windows = run_windows(records, length_of, batch_size, WINDOW_BATCHES * batch_size, process_batch, live=True,
                              prepare=prepare)
        if best is None:
            for window in windows:
                writer.write_batch([row(record, result) for record, result in window])
                progress.done(len(window))
            return

        def scored() -> Iterator[tuple[float, tuple[Record, dict[str, Any]]]]:
            for window in windows:
                yield from ((result["score"], (record, result)) for record, result in window)
                progress.done(len(window))

        ranked = best_first(scored(), best)
        writer.write_batch([row(record, {"rank": rank, **result}) for rank, _, (record, result) in ranked])


T = TypeVar("T")


def best_first(scored: Iterable[tuple[float, T]], k: int | None) -> list[tuple[int, float, T]]:
    """(rank, score, item) of the `k` best (all with None) of (score, item) pairs, best first; equal scores
    keep their input order. Holds at most k items (a heap) however many pass."""
    numbered = ((score, -position, item) for position, (score, item) in enumerate(scored))

    def key(entry: tuple[float, int, T]) -> tuple[float, int]:
        return (-math.inf if math.isnan(entry[0]) else entry[0], entry[1])  # NaN ranks lowest, as in `similar`

    kept = heapq.nlargest(k, numbered, key=key) if k is not None else sorted(numbered, key=key, reverse=True)
    return [(rank, score, item) for rank, (score, _, item) in enumerate(kept, 1)]
