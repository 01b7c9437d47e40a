"""A model ready to run: encoder (fp32, bf16 or int8), tokenizer, and the directory they came from.

Tasks receive a `Runtime` and never care where it came from (assembly/loader.py builds it, complete:
it is frozen). This module is the one owner of how encodings are ordered by length and of the token budget
of a pass: `forward` runs a batch in passes of at most `tokens_per_pass` tokens (`passes`), chosen for
the CPU's kernels by `pass_tokens`; `length_batches` groups encodings of similar length (the windows of
QA and NER, calibration's texts). Which records share a batch is io/batches.py's (a window of the input
sorted by the lengths the tasks measure). Freed memory goes back to the OS after a batch when that
pays (process.py). Passes change no fp32 result: rows are independent. A `Preview` is the model before
its weights are read: what a task's constructor checks its options against (the window, the tokenizer).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from . import kernels, process
from ..checkpoint.config import EncoderConfig
from .encoder import Encoder
from .tokenizer import Tokenizer, collate

# Padding included; rows are never split, so one text longer than this still runs whole. At ~1,000 tokens
# a pass is already big enough for AVX-512 and AVX2 matrix kernels to run at full speed (docs/performance.md)...
TOKENS_PER_PASS = kernels.TOKENS_PER_PASS
# ...while AMX's tiles want more rows (one pass of 2,560 tokens ran 15% faster than 1,024-token ones):
# there a pass holds up to a whole batch of 32 x 128, as long as its widest activation (the feed-forward's
# [tokens, intermediate] in fp32) stays within PASS_ACTIVATION_BYTES, which keeps the peak RSS bound.
AMX_TOKENS_PER_PASS = 4096
PASS_ACTIVATION_BYTES = 32 << 20
# From this size on, a pass is closed rather than pad more than this share of its tokens.
MIN_PASS_TOKENS = 256
PASS_PADDING = 0.125


class Encoded(Protocol):
    """What a pass reads of an encoding (a tokenizers Encoding, or Tokenizer.encode_counted's Counted)."""

    ids: list[int]
    attention_mask: list[int]
    type_ids: list[int]


def pass_tokens(config: EncoderConfig, matrix_tiles: bool) -> int:
    """The most tokens one pass of this model runs on a CPU with AMX tiles (`matrix_tiles`) or without."""
    if not matrix_tiles:
        return TOKENS_PER_PASS
    return max(TOKENS_PER_PASS, min(AMX_TOKENS_PER_PASS, PASS_ACTIVATION_BYTES // (4 * config.intermediate_size)))


def window(tokenizer: Tokenizer, config: EncoderConfig) -> int:
    """The longest input a model takes: its tokenizer's limit within its position table."""
    return min(tokenizer.model_max_length, config.max_length)


@dataclass(frozen=True)
class Preview:
    """A model as its files describe it before any weight is read: config.json (with the labels the loaded
    model will have), the tokenizer and the directory. It has what a task's constructor may read of a
    `Runtime`, so a task is built on it first and refuses options that do not fit this model (a --stride
    or --chunk against its window) before the weights are downloaded, quantized or read (api.load)."""

    config: EncoderConfig
    tokenizer: Tokenizer
    model_dir: Path
    name: str = ""

    @property
    def max_length(self) -> int:
        return window(self.tokenizer, self.config)


@dataclass(frozen=True)
class Runtime:
    encoder: Encoder
    tokenizer: Tokenizer
    model_dir: Path  # config.json, tokenizer files, sentence-transformers pooling files
    name: str = ""  # what the user called the model, for messages and output
    # Which weights these are, for files that must not mix models (a similarity index): the Hub repo id
    # or the directory's path, and the Hub commit (or, for a cached directory's int8 entry, its content
    # hash; None where unknown). `precision` is what runs: "fp32", "bf16" or "int8".
    model_id: str = ""
    commit: str | None = None
    precision: str = "fp32"
    tokens_per_pass: int = TOKENS_PER_PASS  # the most tokens one pass runs (pass_tokens: from the CPU)

    @property
    def config(self) -> EncoderConfig:
        return self.encoder.cfg

    @property
    def max_length(self) -> int:
        """The longest input the model takes (`window`)."""
        return window(self.tokenizer, self.config)

    @classmethod
    def from_dir(cls, model_dir: str | Path, head: str = "base", name: str = "",
                 dtype: torch.dtype = torch.float32) -> "Runtime":
        """Straight from a Hub-format directory: fp32, or with the products in bf16 (`dtype`)."""
        from .weights import load_encoder

        encoder = load_encoder(model_dir, head, dtype)
        return cls(encoder, Tokenizer.from_dir(model_dir), Path(model_dir), name or str(model_dir),
                   model_id=str(Path(model_dir).resolve()), precision="bf16" if dtype == torch.bfloat16 else "fp32")

    def forward(self, encodings: Sequence[Encoded]) -> torch.Tensor:
        """Run the encoder over a batch; the head's output (see Encoder) for each encoding, in the order
        given, token-level outputs padded to the longest encoding (what padding positions hold is not
        defined: read each row's own tokens).

        The batch runs in passes of rows of similar length, each padded only to its own longest row:
        rows sorted by length, a pass closed when it would hold more than `tokens_per_pass` tokens, or pad
        more than PASS_PADDING of them once it holds MIN_PASS_TOKENS. Rows are independent, so the
        passes change no result, and little of the work goes to padding.
        """
        lengths = [len(encoding.ids) for encoding in encodings]
        passes = plan_passes(lengths, self.tokens_per_pass)
        outs: list[torch.Tensor] = []
        with torch.inference_mode():
            for rows in passes:
                batch = collate([encodings[i] for i in rows], self.tokenizer.pad_id)
                outs.append(self.encoder(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]))
        process.release_free_memory()
        if len(outs) == 1 and passes[0] == list(range(len(encodings))):
            return outs[0]
        width = max(lengths)
        token_level = self.encoder.head_kind != "sequence"
        out = outs[0].new_zeros(len(encodings), *((width,) if token_level else ()), *outs[0].shape[2 if token_level else 1:])
        for rows, result in zip(passes, outs):
            index = torch.tensor(rows)
            if token_level:
                out[index, : result.shape[1]] = result
            else:
                out[index] = result
        return out

    def forward_each(self, encodings: Sequence[Encoded], batch_size: int) -> list[torch.Tensor]:
        """Per encoding, its token-level output [T_i, ...] without padding. Encodings of similar length
        share a forward pass of at most `batch_size` (QA windows and NER windows of long texts)."""
        outputs: list[torch.Tensor] = [torch.empty(0)] * len(encodings)
        for indices in length_batches([len(encoding.ids) for encoding in encodings], batch_size):
            batch = self.forward([encodings[i] for i in indices]).float()  # [B, T, ...]
            for row, i in enumerate(indices):
                outputs[i] = batch[row, : len(encodings[i].ids)]  # [T_i, ...]
        return outputs


def by_length(lengths: Sequence[int]) -> list[int]:
    """Indices of `lengths`, shortest first; equal lengths keep their order (sorted() is stable)."""
    return sorted(range(len(lengths)), key=lengths.__getitem__)


def length_batches(lengths: Sequence[int], size: int) -> list[list[int]]:
    """Indices in batches of at most `size`, of similar length (by_length, cut in order)."""
    order = by_length(lengths)
    return [order[start:start + size] for start in range(0, len(order), size)]


def plan_passes(lengths: Sequence[int], tokens_per_pass: int = TOKENS_PER_PASS) -> list[list[int]]:
    """Row indices in passes (see Runtime.forward), shortest rows first."""
    passes: list[list[int]] = []
    current: list[int] = []
    real = 0
    for i in by_length(lengths):
        width, count = lengths[i], len(current) + 1  # sorted: the new row is the pass's longest
        padded = width * count
        if current and (padded > tokens_per_pass or (
                len(current) * lengths[current[-1]] >= MIN_PASS_TOKENS and padded - real - width > PASS_PADDING * padded)):
            passes.append(current)
            current, real = [], 0
        current.append(i)
        real += width
    return [*passes, current]
