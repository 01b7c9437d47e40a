"""The one way squeeze writes a file the user names (`index build -o`, `run-distributed --output`): whole or
not at all, never over something that is not a file, and every failure named by the user's path.

- `check` (before anything slow): the target must not exist, or be a regular file and `force` given. A
  directory, a device, a FIFO or a socket is refused (2) even with `force`; a symlink is followed, as the
  shell's `>` and `cp` do: the file it points to is written, the link stays a link. A missing directory,
  a read-only file system or one without write permission is an output error (7) at once.
- `writing`: the file is written as `.NAME.PID.tmp` beside the target (SQLite adds `-journal`) and renamed
  over it when complete; on any error (Ctrl-C too) the temporary files are deleted. Those of a run that
  was killed (its PID no longer runs) are deleted by the next write of the same name.
- `failure`: an OSError as an OutputError (7) naming the target, with a hint for a full or read-only disk.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

from ..environment import process_alive
from ..errors import OutputError, UsageError

# What SQLite (and others) put beside a database while writing it.
_COMPANIONS = ("", "-journal", "-wal", "-shm")
FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def real_path(path: str | Path) -> Path:
    """`path` with its symlinks followed: the file a write replaces (absolute)."""
    return Path(os.path.realpath(Path(path)))


def check(path: str | Path, *, force: bool, exists_hint: str = "--force replaces it") -> Path:
    """Refuse a target squeeze must not write (see the module's docstring); return the real path."""
    path = Path(path)
    real = real_path(path)
    try:
        info = os.stat(real)
    except FileNotFoundError:
        info = None
    except OSError as exc:  # a component that is a file, a symlink loop, no permission to look
        raise failure(path, exc) from None
    if info is not None:
        if not stat.S_ISREG(info.st_mode):
            raise UsageError(f"{path} is {_kind(info.st_mode)}, not a file; squeeze writes only regular files",
                             hint="name a new file (an existing one is replaced only with --force)")
        if not force:
            raise UsageError(f"{path} already exists", hint=exists_hint)
    directory = real.parent
    if not directory.is_dir():
        raise OutputError(f"{path}: cannot write: no directory {directory}", hint="create it first, or write elsewhere")
    if not os.access(directory, os.W_OK):
        raise failure(path, OSError(errno.EROFS if _read_only(directory) else errno.EACCES, "", str(directory)))
    return real


@contextlib.contextmanager
def writing(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path`'s real file, to write the whole file to; renamed over the target
    when the block ends without an error, deleted otherwise. Call `check` first, before anything slow."""
    path = Path(path)
    real = real_path(path)
    remove_stale(real)
    temporary = real.with_name(f".{real.name}.{os.getpid()}.tmp")
    try:
        try:
            yield temporary
        except OSError as exc:
            raise failure(path, exc) from None
        try:
            info = os.stat(real)
        except FileNotFoundError:
            info = None
        if info is not None and not stat.S_ISREG(info.st_mode):  # put there while we wrote
            raise UsageError(f"{path} became {_kind(info.st_mode)} while squeeze wrote it; nothing was replaced")
        try:
            os.replace(temporary, real)
            _fsync_directory(real.parent)
        except OSError as exc:
            raise failure(path, exc) from None
    finally:
        _remove(temporary)


def failure(path: str | Path, exc: OSError) -> OutputError:
    """`exc`, met while writing `path`, as an OutputError naming `path` (not a temporary file)."""
    if exc.errno in FULL:
        return OutputError(f"{path}: cannot write: no space left on device", hint="free some space, or write it elsewhere")
    if exc.errno == errno.EROFS:
        return OutputError(f"{path}: cannot write: read-only file system", hint="write it to a writable directory")
    if exc.errno == errno.EACCES or exc.errno == errno.EPERM:
        return OutputError(f"{path}: cannot write: permission denied", hint="write it to a directory you can write to")
    if exc.errno == errno.ENOENT:
        return OutputError(f"{path}: cannot write: its directory is gone", hint="create it first, or write elsewhere")
    return OutputError(f"{path}: cannot write: {exc.strerror or exc}")


def remove_stale(real: Path) -> list[Path]:
    """Delete the temporary files of earlier writes of `real` whose process no longer runs; return them."""
    pattern = re.compile(rf"^\.{re.escape(real.name)}\.(\d+)\.tmp(-journal|-wal|-shm)?$")
    removed = []
    try:
        names = os.listdir(real.parent)
    except OSError:
        return removed
    for name in names:
        match = pattern.match(name)
        if match and int(match.group(1)) != os.getpid() and not process_alive(int(match.group(1))):
            with contextlib.suppress(OSError):
                os.unlink(real.parent / name)
                removed.append(real.parent / name)
    return removed


def _remove(temporary: Path) -> None:
    for suffix in _COMPANIONS:
        with contextlib.suppress(OSError):
            os.unlink(f"{temporary}{suffix}")


def _kind(mode: int) -> str:
    return ("a directory" if stat.S_ISDIR(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")


def _read_only(directory: Path) -> bool:
    try:
        return bool(os.statvfs(directory).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        return False


def _fsync_directory(directory: Path) -> None:
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):  # the rename is done; a file system without directory fsync is fine
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
