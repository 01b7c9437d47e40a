"""A model ready to run: encoder (fp32 or int8), tokenizer, and the directory they came from.

Tasks receive a `Runtime` and never care whether it was built from a Hub checkpoint (fp32) or from
squeeze's int8 cache; `store.py` builds the latter, `Runtime.from_dir` the former.

Memory. A forward pass holds activations in proportion to the tokens it runs (SqueezeBERT int8: about
a quarter of a gigabyte for 32 texts of 150 tokens), and glibc keeps what is freed for reuse, where
passes of ever-changing shapes fragment it: over 2,000 lines of mixed length peak RSS reached 1.1 GB
(int8) and 1.6 GB (fp32). So `forward` runs a batch in slices of at most TOKENS_PER_PASS tokens and
hands the freed memory back to the OS after each batch: 0.48 and 0.50 GB, at 2-5% of the speed.

Within a batch, the opposite: by default glibc maps large blocks afresh on every allocation and returns
its heap's free top to the OS at once, so every layer page-faults its activations in again (50-200
thousand faults a batch, 10-25% of a forward pass on a VM). Once a model is loaded, glibc is told to
keep freed blocks for reuse (mallopt); the explicit release after each batch bounds what it keeps.
"""

from __future__ import annotations

import ctypes
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from tokenizers import Encoding

from .config import EncoderConfig
from .encoder import Encoder
from .tokenizer import Tokenizer, collate

# Padding included; rows are never split, so one text longer than this still runs whole. At ~1,000 tokens
# a pass is already big enough for the matrix kernels to run at full speed.
TOKENS_PER_PASS = 1024
# glibc's mallopt parameters (malloc.h), and the sizes up to which freed blocks are kept for reuse: above
# any activation of a pass (BERT's [1,024 tokens, 3,072] is 12.6 MB; a whole 32 x 128 batch's, 50 MB).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
REUSE_BLOCKS_UP_TO = 64 << 20
KEEP_FREE_HEAP_UP_TO = 256 << 20


@dataclass
class Runtime:
    encoder: Encoder
    tokenizer: Tokenizer
    model_dir: Path  # config.json, tokenizer files, sentence-transformers pooling files
    name: str = ""  # what the user called the model, for messages and output

    def __post_init__(self) -> None:
        _reuse_freed_memory()

    @property
    def config(self) -> EncoderConfig:
        return self.encoder.cfg

    @property
    def max_length(self) -> int:
        """The longest input the model takes: the tokenizer's limit within the position table."""
        return min(self.tokenizer.model_max_length, self.config.max_length)

    @classmethod
    def from_dir(cls, model_dir: str | Path, head: str = "base", name: str = "") -> "Runtime":
        """fp32, straight from a Hub-format directory."""
        from .weights import load_encoder

        return cls(load_encoder(model_dir, head), Tokenizer.from_dir(model_dir), Path(model_dir), name or str(model_dir))

    def forward(self, encodings: Sequence[Encoding]) -> torch.Tensor:
        """Pad a batch of encodings and run the encoder; returns the head's output (see Encoder)."""
        batch = collate(encodings, self.tokenizer.pad_id)
        ids, mask, types = batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]  # [B, T] each
        b, t = ids.shape
        rows = max(1, TOKENS_PER_PASS // max(t, 1))
        with torch.inference_mode():
            # Rows are independent (but for int8's activation ranges, which are per call anyway).
            outs = [self.encoder(ids[s:s + rows], mask[s:s + rows], types[s:s + rows]) for s in range(0, max(b, 1), rows)]
        out = outs[0] if len(outs) == 1 else torch.cat(outs)  # [B, ...]
        _release_free_memory()
        return out

    def forward_each(self, encodings: Sequence[Encoding], batch_size: int) -> list[torch.Tensor]:
        """Per encoding, its token-level output [T_i, ...] without padding. Encodings of similar length
        share a forward pass of at most `batch_size` (QA windows and NER windows of long texts)."""
        outputs: list[torch.Tensor] = [torch.empty(0)] * len(encodings)
        by_length = sorted(range(len(encodings)), key=lambda i: len(encodings[i].ids))
        for start in range(0, len(by_length), batch_size):
            indices = by_length[start:start + batch_size]
            batch = self.forward([encodings[i] for i in indices]).float()  # [B, T, ...]
            for row, i in enumerate(indices):
                outputs[i] = batch[row, : len(encodings[i].ids)]  # [T_i, ...]
        return outputs


def _release_free_memory() -> None:
    """Return the heap's free pages to the OS (glibc's malloc_trim); elsewhere, nothing to do."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


@functools.cache
def _reuse_freed_memory() -> None:
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
