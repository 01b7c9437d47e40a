"""A progress display on stderr, in records done, only where it cannot garble the output."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from ..environment import Environment
from ..errors import printable, write_stderr
from .records import STDIN


class RunProgress(Protocol):
    def read(self, nbytes: int) -> None: ...  # bytes read (read_records' on_read)

    def done(self, records: int) -> None: ...  # records whose results are out


class _NoProgress:
    def read(self, nbytes: int) -> None:
        pass

    def done(self, records: int) -> None:
        pass


class _RichProgress:
    """Records done, against the total when it is known before the run, with their rate."""

    def __init__(self, progress: Any, total: int | None) -> None:
        self._progress = progress
        self._task = progress.add_task("records", total=total, rate="")

    def read(self, nbytes: int) -> None:
        pass

    def done(self, records: int) -> None:
        self._progress.advance(self._task, records)
        speed = self._progress.tasks[0].speed
        self._progress.update(self._task, rate=f"{speed:,.1f}/s" if speed else "")


# A status line longer than this would wrap, and "\r" plus erase-line clears only the last of its lines.
STATUS_WIDTH = 60


@contextlib.contextmanager
def status_line(env: Environment, text: str, quiet: bool = False) -> Iterator[None]:
    """`text` as a transient line on stderr while the block runs (a terminal only, and not `quiet`), erased
    at its end: the phase a run is in before its records move (loading a model, quantizing it). Notices
    printed meanwhile go above it; a download's own progress bar simply draws over it."""
    if quiet or env.stderr is None or not env.stderr_is_terminal:
        yield
        return
    shown = printable(text if len(text) <= STATUS_WIDTH else text[: STATUS_WIDTH - 1] + "…")

    def notice(line: str) -> None:
        write_stderr(env.stderr, f"\r\x1b[2K{line}\n{shown}")

    write_stderr(env.stderr, f"\r\x1b[2K{shown}")
    env.notice_sinks.append(notice)
    try:
        yield
    finally:
        env.notice_sinks.remove(notice)
        write_stderr(env.stderr, "\r\x1b[2K")


# Inputs are counted before the run (for the bar's total) only up to this size: a count reads them once.
COUNT_UP_TO_BYTES = 256 << 20


@contextlib.contextmanager
def progress_for(paths: Sequence[str], quiet: bool, env: Environment | None = None, prints_results: bool = True,
                 unit: str = "line") -> Iterator[RunProgress]:
    """A progress display on stderr, in records done (of how many, when the inputs are files of lines or
    JSON lines, or documents, whose records can be counted up front; and how many per second), when
    results go to a file and stderr is a terminal (and not `quiet`). Results printed to the terminal are
    their own progress display, and a live bar redrawn between table rows garbles both; results piped
    on (`| head`, `| jq`) usually come back to the same terminal, where the bar would be drawn through
    them. A command that prints no results (`prints_results=False`: it writes a file) shows the bar
    wherever stderr is a terminal.

    Pass the yielded object's `read` as `read_records(on_read=...)` and call its `done` as results are
    written.
    """
    env = env or Environment.from_os()
    if quiet or not env.stderr_is_terminal or (prints_results and (env.stdout_is_terminal or env.stdout_is_pipe)):
        yield _NoProgress()
        return
    with _display(count_records(list(paths) or [STDIN], unit)) as shown:
        yield shown


@contextlib.contextmanager
def progress_of(env: Environment, total: int, quiet: bool = False, label: str = "") -> Iterator[RunProgress]:
    """The same display for a run of `total` records that prints its results only at its end (`squeeze
    eval`, one pass per precision, named by `label`): wherever stderr is a terminal, unless `quiet`."""
    if quiet or not env.stderr_is_terminal:
        yield _NoProgress()
        return
    with _display(total, label) as shown:
        yield shown


@contextlib.contextmanager
def _display(total: int | None, label: str = "") -> Iterator[RunProgress]:
    # Rich is imported here, not at module level: piped runs never draw a progress bar.
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    rate = TextColumn("{task.fields[rate]}")
    named: tuple[Any, ...] = (TextColumn(label, markup=False),) if label else ()
    if total is None:
        columns: tuple[Any, ...] = (TextColumn("{task.completed:,.0f} records"), rate, TimeElapsedColumn())
    else:
        columns = (BarColumn(), TextColumn("{task.completed:,.0f}/{task.total:,.0f} records"), rate,
                   TimeRemainingColumn())
    progress = Progress(
        *named,
        *columns,
        console=Console(stderr=True),
        transient=True,
        # Rich would reroute stdout through this stderr display: results would leave their pipe.
        redirect_stdout=False,
        redirect_stderr=False,
    )
    with progress:
        yield _RichProgress(progress, total)


def count_records(paths: Sequence[str], unit: str) -> int | None:
    """How many records `paths` hold, if that can be known before reading them for real: non-blank lines
    of regular files of lines or JSON lines (up to COUNT_UP_TO_BYTES in all), or one per document."""
    size = total_bytes(paths)
    if size is None:
        return None
    if unit == "doc":
        return len(paths)
    if unit not in ("line", "jsonl") or size > COUNT_UP_TO_BYTES:
        return None
    count = 0
    try:
        for path in paths:
            with open(path, "rb") as stream:
                count += sum(1 for line in stream if line.strip())
    except OSError:
        return None
    return count


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
