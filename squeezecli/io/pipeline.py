"""What a command reads and writes, and `run_pipeline`, the loop every task command runs:

    files or stdin -> records -> windows sorted by length -> batches -> results -> rows on stdout
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from typing import Any

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

    def read(self, on_read: Callable[[int], None] | None = None, env: Environment | None = None) -> Iterator[Record]:
        return read_records(self.files, self.unit, self.field, self.errors, on_read, env, self.on_error)


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
    prepare: Callable[[list[Record]], Sequence[Any]] | None = None,
) -> None:
    """Read the inputs, run `process_batch` on length-sorted batches, write rows in input order.

    `length_of` estimates a record's token count (with `prepare`, an item's: see run_windows). JSON lines and CSV get each result as it is, named by
    its file and line; a table shows it through `table_view` (nested results as one line of text) next
    to its input's text, in `columns` (see open_writer).
    """
    env = env or Environment.from_os()
    table = resolved_format(output.format, env) == "table"

    def row(record: Record, result: dict[str, Any]) -> dict[str, Any]:
        if table:
            return output.select(row_for(record, {**(table_view(result) if table_view else result), "text": record.text}))
        return output.select(row_for(record, result), record.text)

    with progress_for(inputs.files, quiet=output.quiet, env=env, unit=inputs.unit) as progress:
        records = inputs.read(on_read=progress.read, env=env)
        if columns is not None and len(inputs.files) > 1 and "file" not in columns:  # rows must say which file
            columns = ["file", "line", *columns] if inputs.unit != "doc" else ["file", *columns]
        writer = open_writer(output.format, list(output.fields) if output.fields else columns, env, output.color,
                             files=inputs.files or (STDIN,))
        for window in run_windows(records, length_of, batch_size, WINDOW_BATCHES * batch_size, process_batch, live=True,
                                  prepare=prepare):
            writer.write_batch([row(record, result) for record, result in window])
            progress.done(len(window))
