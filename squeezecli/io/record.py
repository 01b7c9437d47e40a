"""`Record`, the one unit of work every input format becomes, and what the table formats (CSV, TSV,
Parquet) share: which column holds the text. Each format's reader depends on this module and on no other
reader. Imports only `errors`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..errors import InputError


@dataclasses.dataclass(frozen=True, slots=True)
class Record:
    """One unit of work: a line, a JSON line's text field, a CSV/TSV/Parquet row's text column, or a whole
    document.

    `source` is {"file": name, "line": n} for line, JSONL and CSV/TSV input (a row: the line it starts on),
    {"file": name, "row": n} for Parquet and {"file": name} for documents, with name "-" for stdin.
    `extra` holds a JSON line's other fields or a row's other columns, carried through to the output.
    """

    text: str
    source: dict[str, Any]
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


def text_column(header: list[str], field: str, where: str) -> int:
    """The index of the text column `field` in a header row that names each column once."""
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise InputError(f"{where}: the header names the column {repeated[0]!r} more than once")
    if field not in header:
        shown = ", ".join(header[:10]) + (", ..." if len(header) > 10 else "")
        raise InputError(f'{where}: no "{field}" column (the header has: {shown})',
                         hint="choose the column that holds the text with --field NAME")
    return header.index(field)
