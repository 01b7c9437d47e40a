"""Files or stdin -> `Record`s: lines, JSON lines, CSV/TSV rows or whole documents, read lazily and
decoded as UTF-8 (Parquet rows: parquet.py).

Every path is checked before the first record is read; a line is read in bounded pieces (MAX_TEXT_BYTES
of it are kept), so no input, however long its lines, is ever held whole.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any, BinaryIO, Literal

from ..environment import Environment
from ..errors import InputError
from .record import Record, text_column

Unit = Literal["line", "jsonl", "csv", "tsv", "parquet", "doc"]
DecodeErrors = Literal["strict", "replace"]
OnError = Literal["stop", "skip"]
# How many skipped records the summary names.
SKIPS_NAMED = 5

STDIN = "-"
DEFAULT_FIELD = "text"
# The most of one line or document that is read: a longer line (or a stream with no newline at all, like
# /dev/zero) is read on in bounded pieces and discarded past this, so memory stays bounded whatever comes.
MAX_TEXT_BYTES = 16 << 20
_DISCARD_CHUNK = 1 << 20
_STDIN_NAME = "<stdin>"  # how stdin is named in messages; records name it "-"
_BOM = b"\xef\xbb\xbf"
_SURROGATE = re.compile("[\ud800-\udfff]")
_DELIMITERS = {"csv": ",", "tsv": "\t"}


def read_records(
    paths: Sequence[str],
    unit: Unit = "line",
    field: str | None = None,
    errors: DecodeErrors = "strict",
    on_read: Callable[[int], None] | None = None,
    env: Environment | None = None,
    on_error: OnError = "stop",
    empty_documents: bool = False,
) -> Iterator[Record]:
    """Records from `paths` ("-" is stdin; no paths means stdin), read lazily, in order.

    Every path is checked before this returns, so a typo in the third file fails before any work starts.
    Blank lines are skipped but still counted, so `line` is the line number an editor shows.
    `on_read(nbytes)` is called for every physical line (or document) read, for progress reporting.
    With `on_error="skip"`, a malformed record (a JSON line that is not an object with the text field,
    invalid UTF-8, a CSV row that does not fit the header) is left out rather than stopping the run, and
    once all is read one line on stderr counts them and names the first SKIPS_NAMED. What makes a whole
    file unreadable (a missing file, a header without the text column) still stops it. A document
    (unit "doc") with no text but whitespace is skipped as a blank line is, or with `empty_documents`
    is a record too (qa says such a context holds no answer: one result per file).
    """
    paths = list(paths) or [STDIN]
    check_paths(paths)
    env = env or Environment.from_os()
    skipped = _Skipped() if on_error == "skip" else None
    return _read_all(paths, unit, field or DEFAULT_FIELD, errors, on_read or _ignore, env, skipped, empty_documents)


class _Skipped:
    """The records --on-error skip left out: how many, where the first few were, and the first reason."""

    def __init__(self) -> None:
        self.count, self.where, self.first = 0, [], ""

    def add(self, error: InputError) -> None:
        self.count += 1
        where, _, reason = error.message.partition(": ")
        if len(self.where) < SKIPS_NAMED:
            self.where.append(where)
        if self.count == 1:
            self.first = reason

    def summary(self) -> str:
        more = f" and {self.count - len(self.where):,} more" if self.count > len(self.where) else ""
        return (f"skipped {self.count:,} malformed record{'s' if self.count != 1 else ''} "
                f"({', '.join(self.where)}{more}); the first: {self.first}")


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


def _ignore(nbytes: int) -> None:
    pass


def _read_all(paths: list[str], unit: Unit, field: str, errors: DecodeErrors, on_read: Callable[[int], None],
              env: Environment, skipped: _Skipped | None, empty_documents: bool) -> Iterator[Record]:
    for path in paths:
        with _open_binary(path, env) as stream:
            try:
                if unit == "doc":
                    yield from _read_document(path, stream, errors, on_read, env, empty_documents)
                elif unit in _DELIMITERS:
                    yield from _read_table(path, stream, unit, field, errors, on_read, skipped)
                elif unit == "parquet":
                    from .parquet import read_parquet

                    yield from read_parquet(path, _display_name(path), stream, field, MAX_TEXT_BYTES, on_read)
                else:
                    yield from _read_lines(path, stream, unit, field, errors, on_read, env, skipped)
            except OSError as exc:  # a read error: EIO, a device that went away, a closed descriptor
                raise InputError(f"{_display_name(path)}: cannot read it: {exc.strerror or exc}") from exc
    if skipped is not None and skipped.count:
        env.notice(skipped.summary())


@contextlib.contextmanager
def _open_binary(path: str, env: Environment) -> Iterator[BinaryIO]:
    if path == STDIN:
        # Not closed: stdin belongs to the process, and "-" may be named twice.
        if env.stdin is None:  # started with stdin closed (`squeeze ... <&-`)
            raise InputError("stdin is closed", hint="give a FILE, or pipe or redirect text into squeeze")
        yield env.stdin.buffer
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


def _read_lines(path: str, stream: BinaryIO, unit: Unit, field: str, errors: DecodeErrors,
                on_read: Callable[[int], None], env: Environment, skipped: _Skipped | None) -> Iterator[Record]:
    for number, (raw, cut) in enumerate(_physical_lines(stream, on_read), start=1):
        if number == 1 and raw.startswith(_BOM):
            raw = raw[len(_BOM) :]
        try:
            record = _line_record(path, number, raw, cut, unit, field, errors, env)
        except InputError as error:
            if skipped is None:
                raise
            skipped.add(error)
            continue
        if record is not None:
            yield record


def _line_record(path: str, number: int, raw: bytes, cut: bool, unit: Unit, field: str, errors: DecodeErrors,
                 env: Environment) -> Record | None:
    """The record of one physical line, None for a blank one."""
    if cut and unit == "jsonl":
        raise InputError(f"{_display_name(path)}:{number}: a JSON line longer than {_MIB} MiB",
                         hint=f"a line is read up to {_MIB} MiB; keep each JSON object smaller")
    if cut:
        env.notice(f"{_display_name(path)}:{number}: the line is longer than {_MIB} MiB; only its first "
                   f"{_MIB} MiB are read")
    text = _decode(_strip_newline(raw), path, number, errors)
    if not text.strip():
        return None
    source = {"file": path, "line": number}
    if unit == "jsonl":
        text, extra = _parse_json_line(text, field, path, number, errors)
        return Record(text, source, extra)
    return Record(text, source)


def _read_table(path: str, stream: BinaryIO, unit: Unit, field: str, errors: DecodeErrors,
                on_read: Callable[[int], None], skipped: _Skipped | None) -> Iterator[Record]:
    """Rows of a CSV or TSV file with a header row: the text in column `field`, the other columns carried
    as strings. Quoted fields may hold the delimiter, quotes ("") and newlines; a row is named by the line
    it starts on. Blank lines are skipped."""
    where, kind = _display_name(path), unit.upper()

    def lines() -> Iterator[str]:
        for number, (raw, cut) in enumerate(_physical_lines(stream, on_read), start=1):
            if number == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM) :]
            if cut:
                raise InputError(f"{where}:{number}: a {kind} line longer than {_MIB} MiB")
            yield _decode(raw, path, number, errors)  # with its newline: a quoted field may span lines

    csv.field_size_limit(MAX_TEXT_BYTES)
    reader = csv.reader(lines(), delimiter=_DELIMITERS[unit], strict=True)
    header: list[str] | None = None
    column = 0
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            unclosed = "end of data" in str(exc)
            raise InputError(f"{where}:{start}: not valid {kind} ({'a quoted field is not closed' if unclosed else exc})",
                             hint='a field holding the delimiter, a quote or a newline must be quoted ("..."), '
                                  'a quote inside it doubled ("")') from exc
        if not row:
            continue
        if header is None:
            header, column = row, text_column(row, field, f"{where}:{start}")
            continue
        if len(row) != len(header):
            ragged = InputError(f"{where}:{start}: {len(row)} fields where the header has {len(header)}",
                                hint='a field holding the delimiter must be quoted ("...")')
            if skipped is None:
                raise ragged
            skipped.add(ragged)
            continue
        extra = {name: value for index, (name, value) in enumerate(zip(header, row)) if index != column}
        yield Record(row[column], {"file": path, "line": start}, extra)


def _read_document(path: str, stream: BinaryIO, errors: DecodeErrors, on_read: Callable[[int], None],
                   env: Environment, empty_documents: bool) -> Iterator[Record]:
    data = stream.read(MAX_TEXT_BYTES + 1)
    on_read(len(data))
    if len(data) > MAX_TEXT_BYTES:
        data = _whole_characters(data[:MAX_TEXT_BYTES])
        env.notice(f"{_display_name(path)}: the document is longer than {_MIB} MiB; only its first {_MIB} MiB are read")
    if data.startswith(_BOM):
        data = data[len(_BOM) :]
    try:
        text = data.decode("utf-8", errors=errors)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise _invalid_utf8(path, line, column, data[exc.start]) from exc
    if text.strip() or empty_documents:
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
