"""The process-wide settings a model run changes, in one place, made by explicit calls (api.load):
torch's thread count, and how glibc's malloc keeps freed memory.

Memory. A forward pass holds activations in proportion to the tokens it runs (SqueezeBERT int8: about a
quarter of a gigabyte for 32 texts of 150 tokens), and glibc keeps what is freed for reuse, where passes
of ever-changing shapes fragment it; so `Runtime.forward` hands the freed memory back to the OS after
a batch (`release_free_memory`), but only once resident memory grew by more than RELEASE_FREE_ABOVE
since the last time: a small model's batches leave little, which would only be page-faulted in again.
Within a batch, the opposite: by default glibc maps large blocks afresh on every allocation and returns
its heap's free top at once, so every layer page-faults its activations in again; `reuse_freed_memory`
tells it to keep freed blocks of activation size. The docs/performance.md has the measurements.
"""

from __future__ import annotations

import ctypes
import functools
import os

# glibc's mallopt parameters (malloc.h), and the sizes up to which freed blocks are kept for reuse: above
# any activation of a pass (BERT's [1,024 tokens, 3,072] is 12.6 MB; a whole 32 x 128 batch's, 50 MB).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
REUSE_BLOCKS_UP_TO = 64 << 20
KEEP_FREE_HEAP_UP_TO = 256 << 20
# Free memory a run keeps between batches rather than hand back (docs/performance.md measures the choice).
RELEASE_FREE_ABOVE = 64 << 20
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_resident_after_release: int | None = None  # resident bytes just after the last release (or less since)


def prepare(threads: int | None = None) -> None:
    """Set up this process to run models: `threads` for torch (None: torch's own choice), and malloc's reuse."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    reuse_freed_memory()


def release_free_memory(keep: int = RELEASE_FREE_ABOVE) -> bool:
    """Return the heap's free pages to the OS (glibc's malloc_trim) if the process's resident memory grew
    by more than `keep` bytes since it last did (or where it cannot tell); elsewhere, nothing to do.
    True if it did. What a batch leaves resident beyond what it keeps alive is its freed activations."""
    global _resident_after_release
    libc = _glibc()
    if libc is None:
        return False
    resident = resident_bytes()
    if resident is not None and _resident_after_release is not None and resident - _resident_after_release <= keep:
        _resident_after_release = min(_resident_after_release, resident)
        return False
    libc.malloc_trim(0)
    _resident_after_release = resident_bytes()
    return True


def resident_bytes() -> int | None:
    """This process's resident memory now (Linux's /proc/self/statm), or None where there is none."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return None


@functools.cache
def reuse_freed_memory() -> None:
    """Have glibc keep freed blocks of activation size for reuse rather than unmapping them (once)."""
    libc = _glibc()
    if libc is not None:
        libc.mallopt(M_MMAP_THRESHOLD, REUSE_BLOCKS_UP_TO)
        libc.mallopt(M_TRIM_THRESHOLD, KEEP_FREE_HEAP_UP_TO)


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The C library the interpreter runs on, if it is glibc (it has malloc_trim and these mallopt knobs)."""
    try:
        libc = ctypes.CDLL(None)
    except OSError:  # Windows
        return None
    return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None  # not musl, macOS
