"""Errors a user can trigger, their exit statuses, and the one-line report the CLI prints for them.

Every module raises a `SqueezeError` subclass for anything the user can fix (a typo in a path, a model
that does not exist, no network); `squeezecli.cli.main` is the only place that catches them and calls
`report`. Every layer may import this module; it imports nothing of squeeze's at module level.
"""

from __future__ import annotations

import re
import traceback
from enum import IntEnum
from typing import ClassVar, TextIO

DEBUG_ENV = "SQUEEZE_DEBUG"


class ExitStatus(IntEnum):
    OK = 0
    ERROR = 1
    USAGE = 2
    INPUT = 3
    MODEL = 4
    NETWORK = 5
    CACHE = 6
    OUTPUT = 7
    INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C
    BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports when the reader (e.g. `head`) went away


# What each status means, for `squeeze --help` and `squeeze help exit-status`.
EXIT_MEANINGS: dict[ExitStatus, str] = {
    ExitStatus.OK: "success",
    ExitStatus.ERROR: "an error that is none of the below, or a bug in squeeze (internal error)",
    ExitStatus.USAGE: "usage: an unknown option, a missing argument, a bad value, options that do not fit together",
    ExitStatus.INPUT: "input: a missing or unreadable file, invalid UTF-8, a bad JSON line, CSV row or field",
    ExitStatus.MODEL: "model: an unknown model, or a checkpoint squeeze cannot run",
    ExitStatus.NETWORK: "network: the Hub cannot be reached, a model not cached in offline mode, a token needed",
    ExitStatus.CACHE: "cache: a damaged entry, or a cache that cannot be written or read",
    ExitStatus.OUTPUT: "output: stdout closed or unwritable (a full disk), an output file that cannot be written",
    ExitStatus.INTERRUPTED: "interrupted (Ctrl-C)",
    ExitStatus.BROKEN_PIPE: "stdout was closed early (squeeze ... | head), as for a process killed by SIGPIPE",
}


class SqueezeError(Exception):
    """An error the user can act on: one line of message, optionally one line of hint."""

    status: ClassVar[ExitStatus] = ExitStatus.ERROR

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(SqueezeError):
    """Options that do not fit together or with the model (a --chunk wider than the model's window)."""

    status = ExitStatus.USAGE


class InputError(SqueezeError):
    """Unreadable input: missing file, invalid UTF-8, malformed JSON lines, missing field."""

    status = ExitStatus.INPUT


class ModelError(SqueezeError):
    """Unknown model, bad checkpoint, missing or unexpected tensors."""

    status = ExitStatus.MODEL


class NetworkError(SqueezeError):
    """Hub unreachable, offline and not cached, gated repository."""

    status = ExitStatus.NETWORK


class CacheError(SqueezeError):
    """A corrupt entry in the local model cache."""

    status = ExitStatus.CACHE


class OutputError(SqueezeError):
    """The results cannot be written: stdout is closed, or its disk is full."""

    status = ExitStatus.OUTPUT


def report(exc: BaseException, *, stderr: TextIO | None, debug: bool = False) -> ExitStatus:
    """Print `exc` on stderr as `squeeze: error: ...` (plus a hint line) and return the exit status.

    A `SqueezeError` is expected and gets its own message and status; anything else is a bug in squeeze
    and is reported as an internal error. With `debug` (SQUEEZE_DEBUG=1) the traceback is printed first.
    """
    if debug and stderr is not None:
        traceback.print_exception(exc, file=stderr)
    if isinstance(exc, SqueezeError):
        kind, message, hint, status = "error", exc.message, exc.hint, exc.status
    else:
        detail = str(exc)
        kind, message, status = "internal error", f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__, ExitStatus.ERROR
        hint = None if debug else f"set {DEBUG_ENV}=1 for the traceback"
    # Plain writes, not Rich: a message that names a file like "notes[1].txt" must not be read as markup,
    # and it must stay on one line whatever the terminal width.
    write_stderr(stderr, f"squeeze: {kind}: {one_line(message)}\n" + (f"  hint: {one_line(hint)}\n" if hint else ""))
    return status


def write_stderr(stream: TextIO | None, text: str) -> None:
    """`text` on `stream` (stderr), whatever state it is in."""
    if stream is None:  # started with stderr closed (`2>&-`): nowhere to say it
        return
    try:
        stream.write(text)
        stream.flush()
    except (OSError, ValueError):  # stderr closed or full: the exit status still says what happened
        pass


def one_line(text: str) -> str:
    return printable(" ".join(text.splitlines()))


# C0 controls but tab, DEL, and C1 controls (U+009B is CSI to a terminal, like ESC [).
_CONTROL_CHARACTERS = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """`text` with control characters shown as symbols (ESC as U+241B), for a terminal.

    A file name or an input line can hold escape sequences that clear the screen, retitle the window or
    write the clipboard; printed as they are, the text would drive the user's terminal.
    """
    return _CONTROL_CHARACTERS.sub(_symbol_for, text)


def _symbol_for(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x20:
        return chr(0x2400 + code)  # the Unicode "control pictures": U+2400 NUL ... U+241F US
    return "\u2421" if code == 0x7F else "\ufffd"
