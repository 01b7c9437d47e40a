"""The similarity index file (`squeeze index build`): texts, where they came from, their unit-length
embeddings (so that `squeeze similar --index` embeds only the queries), and a full-text index of the texts
for keyword search. No torch here: this module moves bytes; tasks/search.py turns them into vectors and scores.

Format, version 2: one SQLite 3 database, `PRAGMA application_id` 0x53515A58 ("SQZX"), `user_version` 2.

    meta(key TEXT PRIMARY KEY, value TEXT)   each value JSON: format ("squeeze-index"), version, model
        (Hub repo id or directory), commit (Hub commit or null), name (as the user typed it), precision,
        dimension, vectors ("int8", "float16" or "float32"), pooling, normalize, max_length, chunk,
        overlap, created (ISO 8601), squeeze (the version that built it)
    items(id INTEGER PRIMARY KEY,            1, 2, ... in the order added (equal scores rank in this order)
          text TEXT,                         the text, or the chunk of it this vector is of
          source TEXT,                       JSON: file, line (or row), and the input's carried fields
          start INTEGER, end INTEGER,        the chunk's characters in its text (NULL without --chunk)
          tokens INTEGER,                    a text cut to the window: its whole length (else NULL)
          scale REAL, vector BLOB)           `dimension` little-endian values of `vectors`' type; the
                                             unit vector is vector * scale (scale 1 for floats)
    texts: an FTS5 table of items.text       external content (content='items', content_rowid='id': the
                                             text is not stored twice), tokenizer `unicode61
                                             remove_diacritics 2` (words of letters and digits, case
                                             and accents folded); kept in step with items by every write

Version 1 is version 2 without `texts`: this squeeze still searches it by vectors and adds to it, but a
keyword search names `squeeze index upgrade INDEX`, which adds the table in one transaction. An index is
never upgraded unasked.

A build writes the file as every output file is written (io/outfile.py: a temporary file beside it,
renamed into place once complete); an `add` is one transaction (items and texts together). An
interrupted run leaves the index as it was.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import re
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .._version import __version__
from ..errors import InputError, OutputError
from . import outfile

FORMAT = "squeeze-index"
VERSION = 2
READABLE = (1, 2)  # version 1: no keyword search until `squeeze index upgrade`
APPLICATION_ID = 0x53515A58  # "SQZX"
SUFFIX = ".sqidx"
# (text, source JSON, start, end, tokens, scale, vector bytes): one item as stored.
Item = tuple[str, str, "int | None", "int | None", "int | None", float, bytes]

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE items (id INTEGER PRIMARY KEY, text TEXT NOT NULL, source TEXT NOT NULL, start INTEGER, end INTEGER,
                    tokens INTEGER, scale REAL NOT NULL, vector BLOB NOT NULL);
"""
_TEXTS = ("CREATE VIRTUAL TABLE texts USING fts5(text, content='items', content_rowid='id', "
          "tokenize='unicode61 remove_diacritics 2')")
# unicode61's token characters are letters, numbers and private-use characters; everything else separates.
_WORD = re.compile(r"[^\W_]+")


class Index:
    """An open index: its `meta`, its size, its vectors in blocks, and its items by id."""

    def __init__(self, path: Path, connection: sqlite3.Connection, meta: dict[str, Any],
                 target: Path | None = None) -> None:
        self.path, self._db, self.meta = path, connection, meta
        self.target = target or path  # the name the user gave, for messages (`path` may be a temporary file)

    @property
    def keywords(self) -> bool:
        """Whether the index has its texts' full-text table (format version 2)."""
        return self.meta["version"] >= 2

    def require_keywords(self) -> None:
        """Refuse a keyword search of a version 1 index, naming the command that upgrades it."""
        if not self.keywords:
            raise InputError(f"{self.target} was built before keyword search (index format 1)",
                             hint=f"add it with `squeeze index upgrade {self.target}`; dense search works as it is")

    def keyword_top_k(self, query: str, k: int) -> list[tuple[int, float]]:
        """The `k` items best for `query` by FTS5's BM25 (k1 1.2, b 0.75) as (id, score), best first:
        an item matches if it has any of the query's words; score is -bm25() (higher is better), equal
        scores rank in index order. A query without words matches nothing."""
        self.require_keywords()
        terms = _WORD.findall(query)
        if not terms:
            return []
        match = " OR ".join(f'"{term}"' for term in terms)  # each word a phrase: no query syntax from the user
        with _reading(self.path):
            rows = self._db.execute("SELECT rowid, bm25(texts) FROM texts WHERE texts MATCH ? "
                                    "ORDER BY bm25(texts), rowid LIMIT ?", (match, k)).fetchall()
        return [(rowid, -score) for rowid, score in rows]

    def __len__(self) -> int:
        return self._db.execute("SELECT count(*) FROM items").fetchone()[0]

    def blocks(self, rows: int) -> Iterator[tuple[list[int], list[float], bytes]]:
        """(ids, scales, the vectors' bytes end to end) of up to `rows` items at a time, in id order:
        a scan holds one block, whatever the index's size."""
        last = 0
        with _reading(self.path):
            while True:
                block = self._db.execute("SELECT id, scale, vector FROM items WHERE id > ? ORDER BY id LIMIT ?",
                                         (last, rows)).fetchall()
                if not block:
                    return
                ids, scales, vectors = zip(*block)
                last = ids[-1]
                yield list(ids), list(scales), b"".join(vectors)

    def items(self, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """id -> {"text", "source", "start", "end", "tokens"} of the items `ids`."""
        found: dict[int, dict[str, Any]] = {}
        with _reading(self.path):
            for first in range(0, len(ids), 500):  # SQLite's limit on parameters is 999 in old builds
                chosen = list(ids[first:first + 500])
                marks = ",".join("?" * len(chosen))
                for row in self._db.execute(f"SELECT id, text, source, start, end, tokens FROM items WHERE id IN ({marks})",
                                            chosen):
                    found[row[0]] = {"text": row[1], "source": json.loads(row[2]), "start": row[3], "end": row[4],
                                     "tokens": row[5]}
        return found

    def append(self, items: Sequence[Item]) -> None:
        """Add `items` in the current transaction (see `adding`)."""
        with _writing(self.target):
            last = self._db.execute("SELECT coalesce(max(id), 0) FROM items").fetchone()[0]
            self._db.executemany("INSERT INTO items (text, source, start, end, tokens, scale, vector) "
                                 "VALUES (?, ?, ?, ?, ?, ?, ?)", items)
            if self.keywords:
                self._db.execute("INSERT INTO texts (rowid, text) SELECT id, text FROM items WHERE id > ?", (last,))

    def close(self) -> None:
        self._db.close()


def open_index(path: str | Path, *, writable: bool = False) -> Index:
    """The index at `path`, checked to be one (an InputError, exit 3, if not)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such index", hint="build one with `squeeze index build FILE... -o "
                                                        f"{path.name if path.suffix == SUFFIX else 'corpus' + SUFFIX}`")
    mode = "rw" if writable else "ro"
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode={mode}", uri=True, isolation_level=None)
        application_id = db.execute("PRAGMA application_id").fetchone()[0]
        version = db.execute("PRAGMA user_version").fetchone()[0]
        meta = ({key: json.loads(value) for key, value in db.execute("SELECT key, value FROM meta")}
                if application_id == APPLICATION_ID else {})
    except (sqlite3.Error, ValueError) as exc:
        raise InputError(f"{path}: not a squeeze index, or a damaged one ({exc})",
                         hint="rebuild it with `squeeze index build`") from None
    if application_id != APPLICATION_ID or meta.get("format") != FORMAT:
        db.close()
        raise InputError(f"{path}: not a squeeze index", hint="build one with `squeeze index build`")
    if version not in READABLE or meta.get("version") != version:
        db.close()
        raise InputError(f"{path}: an index of format version {version}; this squeeze reads versions "
                         f"{', '.join(map(str, READABLE))}", hint="rebuild it with this squeeze: `squeeze index build`")
    return Index(path, db, meta)


@contextlib.contextmanager
def creating(path: str | Path, meta: dict[str, Any], *, force: bool = False) -> Iterator[Index]:
    """A new index for `path` with `meta` (format, version, created and squeeze are added), written the
    way every output file is (io/outfile.py: whole or not at all, never over what is not a regular file;
    `check_target` first, before anything slow)."""
    path = Path(path)
    check_target(path, force=force)
    index = None
    with outfile.writing(path) as temporary:
        try:
            with _writing(path):
                db = sqlite3.connect(temporary, isolation_level=None)
                db.executescript(_SCHEMA)
                db.execute(_TEXTS)
                db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                db.execute(f"PRAGMA user_version = {VERSION}")
                created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
                full = {"format": FORMAT, "version": VERSION, **meta, "created": created, "squeeze": __version__}
                db.executemany("INSERT INTO meta VALUES (?, ?)", [(key, json.dumps(value)) for key, value in full.items()])
                db.execute("BEGIN")
            index = Index(temporary, db, full, target=path)
            yield index
            with _writing(path):
                db.execute("COMMIT")
        finally:
            if index is not None:
                index.close()


def check_target(path: str | Path, *, force: bool) -> Path:
    """Whether `index build -o path` may write there (io/outfile.py's rule), before the model loads."""
    return outfile.check(path, force=force, exists_hint="--force replaces it; `squeeze index add` adds to it")


@contextlib.contextmanager
def adding(path: str | Path) -> Iterator[Index]:
    """The index at `path`, open for `append` in one transaction, committed when the block ends without
    an error and rolled back otherwise."""
    index = open_index(path, writable=True)
    try:
        with _writing(index.path):
            index._db.execute("BEGIN IMMEDIATE")  # one writer at a time; a second waits, then fails clearly
        yield index
        with _writing(index.path):
            index._db.execute("COMMIT")
    finally:
        index.close()  # without a COMMIT, SQLite rolls the transaction back


def upgrade(path: str | Path) -> bool:
    """Bring the index at `path` to this format in one transaction: a version 1 index gets its texts'
    full-text table. False if it was already current."""
    index = open_index(path, writable=True)
    try:
        if index.keywords:
            return False
        with _writing(index.path):
            db = index._db
            db.execute("BEGIN IMMEDIATE")
            db.execute(_TEXTS)
            db.execute("INSERT INTO texts (texts) VALUES ('rebuild')")  # every item's text, from `items`
            db.execute("UPDATE meta SET value = ? WHERE key = 'version'", (json.dumps(VERSION),))
            db.execute(f"PRAGMA user_version = {VERSION}")
            db.execute("COMMIT")
        return True
    finally:
        index.close()  # without a COMMIT (an error, Ctrl-C), SQLite rolls it all back


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[None]:
    """SQLite's and the file system's write failures as OutputErrors (exit 7) naming the file."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        text = str(exc)
        hint = ("free some space, or write the index elsewhere" if "full" in text
                else "another squeeze is writing to it; try again when it is done" if "locked" in text
                else "write it to a writable directory" if "readonly" in text or "unable to open" in text else None)
        raise OutputError(f"{path}: cannot write the index: {text}", hint=hint) from None
    except sqlite3.DatabaseError as exc:
        raise InputError(f"{path}: the index is damaged ({exc})", hint="rebuild it with `squeeze index build`") from None
    except OSError as exc:
        raise outfile.failure(path, exc) from None


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[None]:
    try:
        yield
    except sqlite3.Error as exc:
        raise InputError(f"{path}: the index is damaged ({exc})", hint="rebuild it with `squeeze index build`") from None
