"""The process-wide settings a model run changes, in one place, made by explicit calls (api.load):
torch's thread count, and how glibc's malloc keeps freed memory.

Memory. A forward pass holds activations in proportion to the tokens it runs (SqueezeBERT int8: about a
quarter of a gigabyte for 32 texts of 150 tokens), and glibc keeps what is freed for reuse, where passes
of ever-changing shapes fragment it; so `Runtime.forward` hands the freed memory back to the OS after
each batch (`release_free_memory`). Within a batch, the opposite: by default glibc maps large blocks
afresh on every allocation and returns its heap's free top at once, so every layer page-faults its
activations in again; `reuse_freed_memory` tells it to keep freed blocks of activation size. The
docs/performance.md has the measurements.
"""

from __future__ import annotations

import ctypes
import functools

# glibc's mallopt parameters (malloc.h), and the sizes up to which freed blocks are kept for reuse: above
# any activation of a pass (BERT's [1,024 tokens, 3,072] is 12.6 MB; a whole 32 x 128 batch's, 50 MB).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
REUSE_BLOCKS_UP_TO = 64 << 20
KEEP_FREE_HEAP_UP_TO = 256 << 20


def prepare(threads: int | None = None) -> None:
    """Set up this process to run models: `threads` for torch (None: torch's own choice), and malloc's reuse."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    reuse_freed_memory()


def release_free_memory() -> None:
    """Return the heap's free pages to the OS (glibc's malloc_trim); elsewhere, nothing to do."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


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
