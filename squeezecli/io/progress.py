"""A progress bar on stderr while input is read, only where it cannot garble the output."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

from ..environment import Environment
from .records import STDIN


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
def progress_for(paths: Sequence[str], quiet: bool, env: Environment | None = None,
                 prints_results: bool = True) -> Iterator[ReadProgress]:
    """A progress bar on stderr while the inputs are read, when results go to a file and stderr is a
    terminal (and not `quiet`). Results printed to the terminal are their own progress display, and a
    live bar redrawn between table rows garbles both; results piped on (`| head`, `| jq`) usually come
    back to the same terminal, where the bar would be drawn through them. A command that prints no
    results (`prints_results=False`: it writes a file) shows the bar wherever stderr is a terminal.

    Pass the yielded object's `advance` as `read_records(on_read=...)`.
    """
    env = env or Environment.from_os()
    if quiet or not env.stderr_is_terminal or (prints_results and (env.stdout_is_terminal or env.stdout_is_pipe)):
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
