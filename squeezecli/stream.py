"""Input side of every command: files or stdin -> `Record`s -> length-bucketed batches, lazily.

Nothing here holds more than one window of records: `tail -f log | squeeze ...` works and a 1 GB file
runs in bounded memory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import itertools
import json
import math
import os
import re
import queue
import stat
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, BinaryIO, Literal, Protocol, TypeVar

from .errors import InputError, notice

Unit = Literal["line", "jsonl", "doc"]
DecodeErrors = Literal["strict", "replace"]

STDIN = "-"
DEFAULT_FIELD = "text"
# The most of one line or document that is read: a longer line (or a stream with no newline at all, like
# /dev/zero) is read on in bounded pieces and discarded past this, so memory stays bounded whatever comes.
MAX_TEXT_BYTES = 16 << 20
_DISCARD_CHUNK = 1 << 20
_STDIN_NAME = "<stdin>"  # how stdin is named in messages; records name it "-"
_BOM = b"\xef\xbb\xbf"
_SURROGATE = re.compile("[\ud800-\udfff]")

T = TypeVar("T")
R = TypeVar("R")


@dataclasses.dataclass(frozen=True, slots=True)
class Record:
    """One unit of work: a line, a JSON line's text field, or a whole document.

    `source` is {"file": name, "line": n} for line and JSONL input and {"file": name} for documents, with
    name "-" for stdin. `extra` holds a JSON line's other fields, carried through to the output.
    """

    text: str
    source: dict[str, Any]
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


def read_records(
    paths: Sequence[str],
    unit: Unit = "line",
    field: str | None = None,
    errors: DecodeErrors = "strict",
    on_read: Callable[[int], None] | None = None,
) -> Iterator[Record]:
    """Records from `paths` ("-" is stdin; no paths means stdin), read lazily, in order.

    Every path is checked before this returns, so a typo in the third file fails before any work starts.
    Blank lines are skipped but still counted, so `line` is the line number an editor shows.
    `on_read(nbytes)` is called for every physical line (or document) read, for progress reporting.
    """
    paths = list(paths) or [STDIN]
    check_paths(paths)
    return _read_all(paths, unit, field or DEFAULT_FIELD, errors, on_read or _ignore)


def check_paths(paths: Sequence[str]) -> None:
    """Raise InputError for the first path that is missing, a directory or unreadable ("-" is stdin)."""
    for path in paths:
        if path == STDIN:
            continue
        if not os.path.exists(path):
            raise InputError(f"{path}: no such file", hint="check the path; use - to read stdin")
        if os.path.isdir(path):
            raise InputError(f"{path}: is a directory", hint="pass the files inside it, e.g. dir/*.txt")
        if not os.access(path, os.R_OK):
            raise InputError(f"{path}: permission denied")


def batched(iterable: Iterable[T], n: int) -> Iterator[list[T]]:
    """Lists of `n` items (the last one shorter), pulling only as many items as each list needs."""
    if n < 1:
        raise ValueError("batch size must be at least 1")
    iterator = iter(iterable)
    while batch := list(itertools.islice(iterator, n)):
        yield batch


def run_bucketed(
    records: Iterable[T],
    length_of: Callable[[T], int],
    batch_size: int,
    window: int,
    process_batch: Callable[[list[T]], Sequence[R]],
    live: bool = False,
) -> Iterator[tuple[T, R]]:
    """`run_windows` flattened: one (record, result) pair at a time, in input order."""
    for pairs in run_windows(records, length_of, batch_size, window, process_batch, live):
        yield from pairs


def run_windows(
    records: Iterable[T],
    length_of: Callable[[T], int],
    batch_size: int,
    window: int,
    process_batch: Callable[[list[T]], Sequence[R]],
    live: bool = False,
) -> Iterator[list[tuple[T, R]]]:
    """Per window, its (record, result) pairs in input order; results come from batches of similar length.

    Reads `window` records at a time, sorts them by `length_of` so each batch pads little, runs
    `process_batch` on each batch (it must return one result per record, in the order given) and yields
    the window's pairs in input order before reading the next window, so output keeps streaming.
    With `live`, records are read ahead on a thread and a window holds only what has arrived (see
    `arriving_windows`), so a slow stream such as `tail -f` gets each line's result promptly.
    """
    if window < batch_size:
        raise ValueError("the window must hold at least one batch")
    for chunk in (arriving_windows(records, window) if live else batched(records, window)):
        # sorted() is stable: records of equal length keep their input order inside a batch.
        by_length = sorted(range(len(chunk)), key=lambda i: length_of(chunk[i]))
        results: list[Any] = [None] * len(chunk)
        for indices in batched(by_length, batch_size):
            batch_results = process_batch([chunk[i] for i in indices])
            if len(batch_results) != len(indices):
                raise ValueError(f"process_batch returned {len(batch_results)} results for {len(indices)} records")
            for i, result in zip(indices, batch_results):
                results[i] = result
        yield list(zip(chunk, results))


class _Failed:
    """The reader thread's exception, delivered in order after the records read before it."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()


def arriving_windows(records: Iterable[T], size: int, linger: float = 0.05) -> Iterator[list[T]]:
    """Windows of at most `size` records, holding what has arrived rather than waiting for `size`.

    A reader thread pulls records into a queue of one window (so memory stays bounded and reading and
    decoding overlap the model). A window waits for its first record, then takes more while each next
    one arrives within `linger` seconds: a fast file gives full windows, `tail -f` one line at a time.
    An error raised while reading (bad UTF-8 on line N) comes after the results of lines before it.
    """
    pending: queue.Queue = queue.Queue(maxsize=size)

    def read() -> None:
        try:
            for record in records:
                pending.put(record)
        except BaseException as error:  # delivered to the consumer, which re-raises it
            pending.put(_Failed(error))
        pending.put(_END)

    threading.Thread(target=read, name="squeeze-reader", daemon=True).start()
    while True:
        item = pending.get()
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


class ReadProgress(Protocol):
    def advance(self, nbytes: int) -> None: ...


class _NoProgress:
    def advance(self, nbytes: int) -> None:
        pass


class _RichProgress:
    """Bytes read against the total size when every input is a regular file, else a count of lines."""

    def __init__(self, progress: Any, total_bytes: int | None) -> None:
        self._progress = progress
        self._counts_bytes = total_bytes is not None
        self._task = progress.add_task("reading", total=total_bytes)

    def advance(self, nbytes: int) -> None:
        self._progress.advance(self._task, nbytes if self._counts_bytes else 1)


@contextlib.contextmanager
def progress_for(paths: Sequence[str], quiet: bool) -> Iterator[ReadProgress]:
    """A progress bar on stderr while the inputs are read, when results go to a file and stderr is a
    terminal (and not `quiet`). Results printed to the terminal are their own progress display, and a
    live bar redrawn between table rows garbles both; results piped on (`| head`, `| jq`) usually come
    back to the same terminal, where the bar would be drawn through them.

    Pass the yielded object's `advance` as `read_records(on_read=...)`.
    """
    if quiet or not is_terminal(sys.stderr) or is_terminal(sys.stdout) or _is_pipe(sys.stdout):
        yield _NoProgress()
        return
    # Rich is imported here, not at module level: piped runs never draw a progress bar.
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    total = total_bytes(list(paths) or [STDIN])
    if total is None:
        columns: tuple[Any, ...] = (TextColumn("{task.completed:,.0f} lines read"), TimeElapsedColumn())
    else:
        columns = (BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    progress = Progress(
        *columns,
        console=Console(stderr=True),
        transient=True,
        # Rich would reroute stdout through this stderr display: results would leave their pipe.
        redirect_stdout=False,
        redirect_stderr=False,
    )
    with progress:
        yield _RichProgress(progress, total)


def total_bytes(paths: Sequence[str]) -> int | None:
    """Sum of the sizes of `paths` if they are all regular files (not stdin, pipes or devices)."""
    total = 0
    for path in paths:
        if path == STDIN:
            return None
        try:
            info = os.stat(path)
        except OSError:
            return None
        if not stat.S_ISREG(info.st_mode):
            return None
        total += info.st_size
    return total


def is_terminal(stream: Any) -> bool:
    """Whether `stream` is a terminal; False for pipes, files and test runners' captures."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _is_pipe(stream: Any) -> bool:
    """Whether `stream` is a pipe or socket (False for files, /dev/null and streams without a descriptor)."""
    try:
        mode = os.fstat(stream.fileno()).st_mode
    except (AttributeError, ValueError, OSError, io.UnsupportedOperation):
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def _ignore(nbytes: int) -> None:
    pass


def _read_all(
    paths: list[str], unit: Unit, field: str, errors: DecodeErrors, on_read: Callable[[int], None]
) -> Iterator[Record]:
    for path in paths:
        with _open_binary(path) as stream:
            try:
                if unit == "doc":
                    yield from _read_document(path, stream, errors, on_read)
                else:
                    yield from _read_lines(path, stream, unit, field, errors, on_read)
            except OSError as exc:  # a read error: EIO, a device that went away, a closed descriptor
                raise InputError(f"{_display_name(path)}: cannot read it: {exc.strerror or exc}") from exc


@contextlib.contextmanager
def _open_binary(path: str) -> Iterator[BinaryIO]:
    if path == STDIN:
        # Not closed: stdin belongs to the process, and "-" may be named twice.
        if sys.stdin is None:  # started with stdin closed (`squeeze ... <&-`)
            raise InputError("stdin is closed", hint="give a FILE, or pipe or redirect text into squeeze")
        yield sys.stdin.buffer
        return
    try:
        stream = open(path, "rb")
    except OSError as exc:  # removed or made unreadable since the up-front check
        raise InputError(f"{path}: {exc.strerror or exc}") from exc
    with stream:
        yield stream


def _physical_lines(stream: BinaryIO, on_read: Callable[[int], None]) -> Iterator[tuple[bytes, bool]]:
    """(line, whether it was cut at MAX_TEXT_BYTES) per physical line; never holds more than that much.

    readline(), not read(n): it returns as soon as a line is complete, so a slow pipe streams.
    """
    while raw := stream.readline(MAX_TEXT_BYTES + 1):
        on_read(len(raw))
        if len(raw) <= MAX_TEXT_BYTES or raw.endswith(b"\n"):
            yield raw, False
            continue
        while rest := stream.readline(_DISCARD_CHUNK):  # the rest of the line, read and dropped
            on_read(len(rest))
            if rest.endswith(b"\n"):
                break
        yield _whole_characters(raw[:MAX_TEXT_BYTES]), True


def _whole_characters(data: bytes) -> bytes:
    """`data` without a UTF-8 sequence cut off at its end."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte < 0x80:  # ASCII: nothing cut
            return data
        if byte >= 0xC0:  # the lead byte of the last sequence: is the sequence complete?
            needed = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return data if back >= needed else data[:-back]
    return data


def _read_lines(
    path: str, stream: BinaryIO, unit: Unit, field: str, errors: DecodeErrors, on_read: Callable[[int], None]
) -> Iterator[Record]:
    for number, (raw, cut) in enumerate(_physical_lines(stream, on_read), start=1):
        if number == 1 and raw.startswith(_BOM):
            raw = raw[len(_BOM) :]
        if cut and unit == "jsonl":
            raise InputError(f"{_display_name(path)}:{number}: a JSON line longer than {_MIB} MiB",
                             hint=f"a line is read up to {_MIB} MiB; keep each JSON object smaller")
        if cut:
            notice(f"{_display_name(path)}:{number}: the line is longer than {_MIB} MiB; only its first "
                   f"{_MIB} MiB are read")
        text = _decode(_strip_newline(raw), path, number, errors)
        if not text.strip():
            continue
        source = {"file": path, "line": number}
        if unit == "jsonl":
            text, extra = _parse_json_line(text, field, path, number, errors)
            yield Record(text, source, extra)
        else:
            yield Record(text, source)


def _read_document(
    path: str, stream: BinaryIO, errors: DecodeErrors, on_read: Callable[[int], None]
) -> Iterator[Record]:
    data = stream.read(MAX_TEXT_BYTES + 1)
    on_read(len(data))
    if len(data) > MAX_TEXT_BYTES:
        data = _whole_characters(data[:MAX_TEXT_BYTES])
        notice(f"{_display_name(path)}: the document is longer than {_MIB} MiB; only its first {_MIB} MiB are read")
    if data.startswith(_BOM):
        data = data[len(_BOM) :]
    try:
        text = data.decode("utf-8", errors=errors)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise _invalid_utf8(path, line, column, data[exc.start]) from exc
    if text.strip():
        yield Record(text, {"file": path})


_MIB = MAX_TEXT_BYTES >> 20


def _strip_newline(raw: bytes) -> bytes:
    if raw.endswith(b"\n"):
        raw = raw[:-1]
        if raw.endswith(b"\r"):
            raw = raw[:-1]
    return raw


def _decode(raw: bytes, path: str, line: int, errors: DecodeErrors) -> str:
    try:
        return raw.decode("utf-8", errors=errors)
    except UnicodeDecodeError as exc:
        raise _invalid_utf8(path, line, exc.start + 1, raw[exc.start]) from exc


def _invalid_utf8(path: str, line: int, column: int, byte: int) -> InputError:
    return InputError(
        f"{_display_name(path)}:{line}: invalid UTF-8 (byte 0x{byte:02x} at byte {column} of the line)",
        hint="convert the file to UTF-8, or pass --errors replace to substitute U+FFFD",
    )


def _parse_json_line(
    line: str, field: str, path: str, number: int, errors: DecodeErrors
) -> tuple[str, dict[str, Any]]:
    where = f"{_display_name(path)}:{number}"
    try:
        obj = json.loads(line, parse_constant=_not_json, parse_float=_finite_float)
    except (ValueError, RecursionError) as exc:  # also too-deep nesting and over-long integers
        detail = f"{exc.msg} at column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise InputError(
            f"{where}: not valid JSON ({detail})",
            hint="--jsonl expects one JSON object per line; drop it to read plain text lines",
        ) from exc
    if not isinstance(obj, dict):
        raise InputError(f"{where}: expected a JSON object, got {_json_type(obj)}")
    if field not in obj:
        raise InputError(f'{where}: no "{field}" field', hint="choose the field that holds the text with --field NAME")
    text = obj.pop(field)
    if not isinstance(text, str):
        raise InputError(f'{where}: field "{field}" is {_json_type(text)}, not a string')
    # JSON escapes can spell lone surrogates ("\ud800"), which are not text: no tokenizer or UTF-8 writer
    # accepts them. They get the same treatment as undecodable bytes.
    if _SURROGATE.search(text):
        if errors == "strict":
            raise InputError(
                f'{where}: field "{field}" contains an unpaired surrogate escape',
                hint="pass --errors replace to substitute U+FFFD",
            )
        text = _SURROGATE.sub("\ufffd", text)
    return text, obj


def _not_json(constant: str) -> Any:
    # Python's json reads NaN and Infinity, which are not JSON (RFC 8259) and could not be written back.
    raise ValueError(f"{constant} is not a JSON value")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if math.isinf(value):  # 1e999999 is JSON, but no float holds it, and JSON cannot say infinity
        raise ValueError(f"the number {literal[:20]} is too large")
    return value


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "an array"}
    return names.get(type(value), "an object")


def _display_name(path: str) -> str:
    return _STDIN_NAME if path == STDIN else path
