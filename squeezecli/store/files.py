"""File plumbing of squeeze's cache: JSON and checksums, durable and atomic writes, temporary
directories and their clean-up, deletion by rename, per-source locks, and write failures as CacheErrors.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..environment import CACHE_ENV, process_alive
from ..errors import CacheError, ModelError, SqueezeError

# A tmp/ directory whose owner process still runs is left alone unless it is this old (pid reuse).
STALE_TEMP_SECONDS = 24 * 3600


def read_json(path: Path, error: type[ModelError | CacheError]) -> dict[str, Any]:
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{path} is missing") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise error(f"{path} is not readable JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise error(f"{path} is not a JSON object")
    return payload


def files_under(directory: Path) -> list[str]:
    return sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file())


def file_record(path: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha256(path)}


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_durably(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}")
    try:
        write_durably(temp, text)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def fsync_tree(directory: Path) -> None:
    for path in sorted(directory.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        elif path.is_dir():
            fsync_dir(path)
    fsync_dir(directory)


def fsync_dir(directory: Path) -> None:
    if os.name != "posix":  # directories cannot be opened for fsync on Windows
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def touch(path: Path) -> None:
    with contextlib.suppress(OSError):  # a read-only cache still runs; it just cannot record use
        path.touch()


# -- writing the cache -------------------------------------------------------------------------------------


@contextlib.contextmanager
def writing_cache(root: Path) -> Iterator[None]:
    """OSErrors of writing the cache as CacheErrors naming the cache and the fix: a read-only or full disk
    is the user's to mend. An OSError about a file outside the cache is a model file that cannot be read."""
    try:
        yield
    except SqueezeError:
        raise
    except OSError as exc:
        named = [str(name) for name in (exc.filename, exc.filename2) if name]
        reading_elsewhere = named and not any(name.startswith(str(root)) for name in named)
        if reading_elsewhere and exc.errno not in FULL_OR_READ_ONLY:
            raise ModelError(f"cannot read {named[0]}: {exc.strerror or exc}") from exc
        raise unwritable(root, exc) from exc


# A copy from a model directory into the cache fails with these, naming the source (shutil sets it).
FULL_OR_READ_ONLY = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)


def unwritable(root: Path, exc: OSError) -> CacheError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        hint = f"free some space there, or point {CACHE_ENV} at a directory with room"
    elif exc.errno in (errno.ENOTDIR, errno.EEXIST):
        hint = f"something in squeeze's cache is a file where a directory belongs; point {CACHE_ENV} elsewhere"
    else:
        hint = (f"make it writable, or point {CACHE_ENV} at a writable directory; --precision fp32 runs a model "
                "from the Hugging Face cache without squeeze's")
    return CacheError(f"cannot write to squeeze's cache at {root}: {exc.strerror or exc}", hint=hint)


# -- temp dirs, trash and locks -------------------------------------------------------------------------


def new_temp_dir(root: Path, key: str) -> Path:
    path = root / "tmp" / f"{key}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    path.mkdir(parents=True)
    return path


def delete_dir(root: Path, path: Path) -> None:
    """Remove a directory so that it disappears at once: renamed into tmp/ (atomic), then deleted."""
    trash = root / "tmp" / f"trash.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    trash.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(path, trash)
    except FileNotFoundError:
        return
    shutil.rmtree(trash, ignore_errors=True)


def remove_stale_temp(root: Path) -> None:
    """Delete tmp/ directories left by pulls that were killed: their process is gone (or they are old)."""
    try:
        candidates = list((root / "tmp").iterdir())
    except FileNotFoundError:
        return
    now = time.time()
    for path in candidates:
        parts = path.name.rsplit(".", 2)
        pid = int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None
        try:
            old = now - path.stat().st_mtime > STALE_TEMP_SECONDS
        except FileNotFoundError:
            continue
        if old or pid is None or (pid != os.getpid() and not process_alive(pid)):
            shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def source_lock(root: Path, kind: str, source_id: str) -> Iterator[None]:
    """Serialise pulls and removals of one model source across threads and processes. The lock is an OS
    file lock, so a killed process releases it."""
    from filelock import FileLock

    locks = root / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha256(f"{kind}\0{source_id.lower() if kind == 'hub' else source_id}".encode()).hexdigest()[:32]
    with FileLock(str(locks / f"{name}.lock")):
        yield
