"""Parquet input (`--parquet`): the rows of a Parquet file as `Record`s, read one row group batch at a time.

pyarrow is optional (the `parquet` extra) and imported only here, only when Parquet is read. The text is
in column `field`, which must hold strings; the other columns are carried through as JSON values
(timestamps, decimals and other non-JSON types as their string form). A record is named by its file and
its `row` (1-based, as a spreadsheet counts them below the header). Stdin is read whole first: Parquet
keeps its schema at the end of the file.
"""

from __future__ import annotations

import datetime
import decimal
import io
import math
import os
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from ..errors import InputError
from .record import Record, text_column

ROWS_PER_BATCH = 1024
INSTALL_HINT = "install pyarrow: pip install 'squeezecli[parquet]' (or pip install pyarrow)"


def read_parquet(path: str, where: str, stream: BinaryIO, field: str, max_bytes: int,
                 on_read: Callable[[int], None]) -> Iterator[Record]:
    """Records from the Parquet file open as `stream` (named `where` in messages); texts over
    `max_bytes` of UTF-8 are refused, as a CSV field over the limit is."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError("reading Parquet needs pyarrow, which is not installed", hint=INSTALL_HINT) from None
    if not stream.seekable():
        stream = io.BytesIO(stream.read())
    size = stream.seek(0, os.SEEK_END)
    stream.seek(0)
    try:
        parquet = pq.ParquetFile(stream)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{where}: not a Parquet file ({_first_line(exc)})") from None
    schema = parquet.schema_arrow
    column = text_column(schema.names, field, where)
    kind = schema.types[column]
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)):
        raise InputError(f'{where}: the "{field}" column holds {kind}, not text',
                         hint="choose the column that holds the text with --field NAME")
    total = max(parquet.metadata.num_rows, 1)
    row = 0
    try:
        for batch in parquet.iter_batches(batch_size=ROWS_PER_BATCH):
            on_read(math.ceil(size * batch.num_rows / total))  # progress in the file's bytes, spread over rows
            for values in batch.to_pylist():
                row += 1
                text = values.pop(field)
                if text is None or not text.strip():  # a null text is skipped, as a blank line is
                    continue
                if len(text) * 4 > max_bytes and len(text.encode("utf-8")) > max_bytes:
                    raise InputError(f"{where}: row {row}: a text longer than {max_bytes >> 20} MiB")
                yield Record(text, {"file": path, "row": row}, {name: _json_value(v) for name, v in values.items()})
    except (pa.ArrowException, UnicodeDecodeError) as exc:
        raise InputError(f"{where}: row {row + 1}: cannot read it ({_first_line(exc)})") from None


def _json_value(value: Any) -> Any:
    """A Parquet value as JSON can hold it: lists and maps as such, numbers that JSON has as numbers,
    other scalars (timestamps, decimals, bytes, NaN) as their string form."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {str(key): _json_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):  # a Parquet map arrives as a list of (key, value) pairs
        return [_json_value(item) for item in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, (datetime.date, datetime.time, datetime.datetime)):
        return value.isoformat()
    if isinstance(value, (decimal.Decimal, datetime.timedelta)):
        return str(value)
    return str(value)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
