"""Output side of every command: result rows -> JSON lines, CSV, TSV or a Rich table on stdout.

A row is a flat dict built by `row_for`: the record's source first ("file", "line"), then the task's
result fields, then the input's carried-through JSONL fields. Writers print and flush one batch at a time
so results appear while the input is still being read.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, BinaryIO, Literal, Protocol, TextIO

import orjson

from ..environment import Environment
from ..errors import OutputError, printable
from .record import Record

Format = Literal["auto", "table", "jsonl", "csv", "tsv"]
FORMATS: tuple[str, ...] = ("auto", "table", "jsonl", "csv", "tsv")

# In a table, text columns whose first values are at most this wide are labels or ids, not free text...
_SHORT_TEXT = 24
# ...except these, free text whatever the first batch holds.
_FREE_TEXT = ("text",)
# Short text (labels) at least this wide, and counters (line numbers, ranks) this wide, whatever the first
# batch holds: later rows are cut to the first batch's widths.
_LABEL_WIDTH = 10
_COUNTER_COLUMNS, _COUNTER_WIDTH = ("line", "row", "chunks"), 6
# File names: at most this wide in a table, a longer path shown by its end; as wide as the widest input name
# when the inputs are known (open_writer's files), else at least _LABEL_WIDTH + 6.
_PATH_COLUMNS, _PATH_WIDTH = ("file",), 32


def row_for(record: Record, result: Mapping[str, Any]) -> dict[str, Any]:
    """The output row for one record: source, then result fields, then carried-through input fields.

    A carried-through field whose name is already taken (by "file", "line" or a result field) is dropped:
    the row's own fields mean the same thing for every input, whatever the input's columns are called.
    """
    row: dict[str, Any] = dict(record.source)
    row.update(result)
    for name, value in record.extra.items():
        row.setdefault(name, value)
    return row


class Writer(Protocol):
    def write_batch(self, rows: Sequence[Mapping[str, Any]]) -> None: ...


def open_writer(fmt: Format, columns: Sequence[str] | None = None, env: Environment | None = None,
                color: bool = True, files: Sequence[str] | None = None) -> Writer:
    """A writer on stdout. "auto" is a table on a terminal and JSON lines anywhere else.

    `columns` picks and orders the table's columns (a terminal has no room for everything); JSON lines
    and CSV/TSV always carry every field. By default the table shows the first row's fields. A table
    colours labels and scores unless `color` is False, NO_COLOR is set, or stdout is not a terminal.
    `files`, the input files when they are known before the run, size a table's file column exactly.
    """
    env = env or Environment.from_os()
    fmt = resolved_format(fmt, env)
    if fmt == "jsonl":
        return JsonLinesWriter(env.stdout)
    if fmt in ("csv", "tsv"):
        return DelimitedWriter(env.stdout, delimiter="," if fmt == "csv" else "\t")
    if fmt == "table":
        return TableWriter(columns, color=color, files=files)
    raise ValueError(f"unknown output format {fmt!r}")


def resolved_format(fmt: Format, env: Environment | None = None) -> Format:
    """The format "auto" stands for here and now: a table on a terminal, JSON lines anywhere else."""
    if fmt == "auto":
        return "table" if (env or Environment.from_os()).stdout_is_terminal else "jsonl"
    return fmt


def to_json(value: Any, *, ensure_ascii: bool = False) -> str:
    """Compact JSON that is valid JSON (RFC 8259) whatever `value` holds: a NaN or infinite number (a
    broken model's score) becomes null, which Python's json would write as NaN or Infinity.

    orjson writes it (ten times the standard library's speed on vectors: docs/performance.md), each
    float the shortest text that reads back as the same double, as Python's repr; what orjson refuses
    (a lone surrogate, an integer beyond 64 bits, a key that is not a string) the standard library
    writes, as it did before.
    """
    if not ensure_ascii:
        try:
            return orjson.dumps(value).decode()
        except TypeError:  # orjson.JSONEncodeError
            pass
    try:
        return json.dumps(value, ensure_ascii=ensure_ascii, separators=(",", ":"), allow_nan=False)
    except ValueError:
        return json.dumps(_finite(value), ensure_ascii=ensure_ascii, separators=(",", ":"), allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


@contextlib.contextmanager
def writing() -> Iterator[None]:
    """Write errors of stdout as squeeze's own: a full disk or a closed descriptor is an OutputError;
    a reader that went away (BrokenPipeError) stays what it is, for the CLI's quiet exit 141."""
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise OutputError(f"cannot write the results to stdout: {exc.strerror or exc}",
                          hint="check where stdout goes (a full disk, a closed file)") from exc


def print_text(env: Environment, text: str | bytes) -> None:
    """One line of text (or the exact bytes given) on stdout, written now."""
    with writing():
        if isinstance(text, bytes):
            env.stdout.buffer.write(text)
        else:
            env.stdout.write(text + "\n")
        env.stdout.flush()


def print_json(env: Environment, record: Any) -> None:
    """One compact JSON object on its own line on stdout."""
    print_text(env, to_json(record))


def print_rich(env: Environment, renderable: Any) -> None:
    """A Rich table or text on stdout, as the terminal shows it (Rich's console writes to sys.stdout,
    which is `env.stdout`)."""
    console = _stdout_console()
    with writing():
        console.print(renderable)
        console.file.flush()


class JsonLinesWriter:
    """One compact JSON object per line, UTF-8 as is (no \\u escapes for non-ASCII text)."""

    def __init__(self, out: TextIO) -> None:
        self._out = out

    def write_batch(self, rows: Sequence[Mapping[str, Any]]) -> None:
        with writing():
            for row in rows:
                try:
                    self._out.write(to_json(row) + "\n")
                except UnicodeEncodeError:
                    # Text the stream cannot encode (a lone surrogate from a JSON escape, or a non-UTF-8
                    # stdout) is still written losslessly, as JSON escapes.
                    self._out.write(to_json(row, ensure_ascii=True) + "\n")
            self._out.flush()


class DelimitedWriter:
    """CSV or TSV with a header taken from the first row; lists and dicts become JSON inside a cell.

    Later rows are written under the same header: a field the first row did not have is left out, and a
    missing field is an empty cell. Text that a spreadsheet would run as a formula (starting with =, +,
    -, @, tab or carriage return) gets a leading ' (OWASP's advice against CSV injection).
    """

    def __init__(self, out: TextIO, delimiter: str) -> None:
        self._out = out
        # "\n", not the csv module's "\r\n": the output is for shell pipelines.
        self._csv = csv.writer(out, delimiter=delimiter, lineterminator="\n")
        self._header: list[str] | None = None

    def write_batch(self, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        with writing():
            if self._header is None:
                self._header = list(rows[0])
                self._csv.writerow([_delimited_cell(name) for name in self._header])
            self._csv.writerows([[_delimited_cell(row.get(name)) for name in self._header] for row in rows])
            self._out.flush()


class TableWriter:
    """A Rich table per batch; the header is printed with the first batch only.

    Column widths depend only on the first batch, the terminal width and the input files' names (when
    known), so the tables of successive batches line up as one: numbers, labels and ids as wide as their widest value (and header), free
    text sharing the rest of the line. User text is passed as `rich.text.Text`, never parsed as markup:
    an NER span like "[PER]" or a literal "[bold]" prints as typed. Labels are bold, scores green from
    0.8, yellow from 0.5, else red.
    """

    def __init__(self, columns: Sequence[str] | None, color: bool = True, files: Sequence[str] | None = None) -> None:
        self._console = _stdout_console(color)
        self._columns = list(columns) if columns is not None else None
        self._layouts: dict[str, dict[str, Any]] | None = None
        self._files = list(files) if files else None  # every file name rows will have, when known

    def _cell(self, name: str, value: Any) -> str:
        text = _table_cell(value)
        return left_cut(text, self._layouts[name]["width"]) if name in _PATH_COLUMNS and self._layouts else text

    def write_batch(self, rows: Sequence[Mapping[str, Any]]) -> None:
        from rich import box
        from rich.table import Table
        from rich.text import Text

        if not rows:
            return
        first_batch = self._layouts is None
        if self._columns is None:
            self._columns = list(rows[0])
        if self._layouts is None:
            self._layouts = {name: _column_layout(name, rows, self._files) for name in self._columns}
        # Only free text grows to fill the line; a table of short columns stays as narrow as its content.
        expand = any("ratio" in layout for layout in self._layouts.values())
        table = Table(box=box.SIMPLE_HEAD, expand=expand, show_header=first_batch, show_edge=False, pad_edge=False)
        for name in self._columns:
            table.add_column(Text(name), no_wrap=True, overflow="ellipsis", **self._layouts[name])
        for row in rows:
            table.add_row(*(Text(self._cell(name, row.get(name)), style=_style(name, row.get(name))) for name in self._columns))
        with writing():
            self._console.print(table)
            self._console.file.flush()


@functools.lru_cache(maxsize=256)  # a table's rows repeat a few file names
def left_cut(text: str, width: int) -> str:
    """`text` in at most `width` cells, cut at the start ("…/dir/file.txt"): a path's end names the file."""
    from rich.cells import cell_len

    if cell_len(text) <= width:
        return text
    kept, cells = len(text), 0
    while kept > 0 and cells + cell_len(text[kept - 1]) <= width - 1:  # the ending that fits beside "…"
        kept -= 1
        cells += cell_len(text[kept])
    return "…" + text[kept:]


def _style(column: str, value: Any) -> str:
    """How a cell is coloured (Rich style; "" for none): labels bold, scores by how high they are."""
    if column in ("label", "labels", "entities"):
        return "bold"
    if column == "score" and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return "green" if value >= 0.8 else "yellow" if value >= 0.5 else "red"
    return ""


def terminal_width() -> int:
    """The width, in cells, that tables on stdout are laid out for (Rich's: the terminal's, or COLUMNS)."""
    return int(_stdout_console().width)


def _stdout_console(color: bool = True) -> Any:
    # Rich is imported here, not at module level: piped runs never need it.
    from rich.console import Console

    class StdoutConsole(Console):
        def on_broken_pipe(self) -> None:
            # Rich's default exits the process itself; squeeze's CLI decides the exit status.
            raise BrokenPipeError

    # No file=: the console writes to whatever sys.stdout is at print time.
    return StdoutConsole(highlight=False, no_color=not color or None)  # None: Rich reads NO_COLOR itself


def _column_layout(name: str, rows: Sequence[Mapping[str, Any]], files: Sequence[str] | None = None
                   ) -> dict[str, Any]:
    """Rich column sizing from the first batch: numbers and short text (labels, ids, file names) as
    wide as their widest value and header, free text sharing what is left of the line (cut with an
    ellipsis in the table only). File names are sized from `files` where every one is known."""
    from rich.cells import cell_len  # display width: a CJK character takes two cells

    values = [row.get(name) for row in rows]
    widest = max([cell_len(name), *(cell_len(_table_cell(value)) for value in values)])
    if name in _PATH_COLUMNS:  # a fixed width, longer paths cut at their start (TableWriter._cell)
        if files:
            return {"width": min(max([cell_len(name), *(cell_len(_table_cell(f)) for f in files)]), _PATH_WIDTH)}
        return {"width": min(max(widest, _LABEL_WIDTH + 6), _PATH_WIDTH)}
    numbers = all(value is None or isinstance(value, (bool, int, float)) for value in values)
    if name not in _FREE_TEXT and (numbers or widest <= _SHORT_TEXT):
        # The first batch may be a few rows: leave room for the longer labels and line numbers of later ones.
        room = (_COUNTER_WIDTH if name in _COUNTER_COLUMNS else 0) if numbers else _LABEL_WIDTH
        return {"width": max(widest, room)}
    return {"ratio": 1, "min_width": max(cell_len(name), _SHORT_TEXT)}


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, (list, dict, bool)):
        return json.dumps(_finite(value), ensure_ascii=False, allow_nan=False)
    return str(value)


_FORMULA_STARTS = ("=", "+", "@", "\t", "\r")


def _delimited_cell(value: Any) -> str:
    cell = _cell(value)
    # A lone "-" (stdin's file name) is no formula; "-1+1" is.
    if isinstance(value, str) and (cell.startswith(_FORMULA_STARTS) or (cell.startswith("-") and len(cell) > 1)):
        return "'" + cell
    return cell


def _table_cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    # A line of text with tabs or a document with newlines must stay on its table row, and the escape
    # sequences a hostile line may hold must not reach the terminal.
    return printable(" ".join(_cell(value).split()) if isinstance(value, str) else _cell(value))


def write_npy(
    vectors: Sequence[Sequence[float]], path: str | os.PathLike[str] | BinaryIO, *, dimension: int = 0
) -> None:
    """Write the vectors as one float32 array [N, dimension] in NumPy's .npy format to `path` (a file name,
    written as given, or a binary file). `dimension` shapes the array when there are no vectors."""
    try:
        import numpy as np
    except ImportError:
        raise OutputError(
            "writing .npy files needs numpy, which is not installed",
            hint="pip install numpy, or write JSON lines instead",
        ) from None
    array = np.asarray(vectors, dtype=np.float32) if len(vectors) else np.zeros((0, dimension), dtype=np.float32)
    if array.ndim != 2:
        raise ValueError(f"vectors must all have the same length, got an array of shape {array.shape}")
    if not isinstance(path, (str, os.PathLike)):
        # Through the stream's own write(), not numpy's fwrite of a real file, which reports a closed pipe
        # as a plain "OSError: N requested and M written" rather than BrokenPipeError.
        with writing():
            np.lib.format.write_array(_PlainStream(path), array, allow_pickle=False)
            path.flush()
        return
    try:
        # An open file, not the name: np.save would append ".npy" to a name without it.
        with open(path, "wb") as out:
            np.save(out, array)
    except OSError as error:
        raise OutputError(f"cannot write {os.fspath(path)}: {error.strerror or error}") from None


class _PlainStream:
    """A binary stream that numpy cannot tell is a file (see write_npy), written in pieces no larger than
    the stream's buffer: one larger write that a pipe's reader cuts short by closing can return as if
    it had all been written (CPython's BufferedWriter, seen beside `head -c 20`: 64 KB written of 64 MB,
    no error, exit 0), where buffered pieces meet the closed pipe as BrokenPipeError."""

    PIECE = io.DEFAULT_BUFFER_SIZE

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        for start in range(0, len(view), self.PIECE):
            self._stream.write(view[start:start + self.PIECE])
        return len(view)
