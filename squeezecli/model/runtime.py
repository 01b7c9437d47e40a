"""A model ready to run: encoder (fp32 or int8), tokenizer, and the directory they came from.

Tasks receive a `Runtime` and never care where it came from (assembly/loader.py builds it). `forward` runs
a batch in slices of at most TOKENS_PER_PASS tokens and hands freed memory back to the OS after each
batch (process.py says why). Slicing changes no fp32 result: rows are independent.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from tokenizers import Encoding

from . import process
from ..checkpoint.config import EncoderConfig
from .encoder import Encoder
from .tokenizer import Tokenizer, collate

# Padding included; rows are never split, so one text longer than this still runs whole. At ~1,000 tokens
# a pass is already big enough for the matrix kernels to run at full speed (docs/performance.md)...
TOKENS_PER_PASS = 1024
# ...and from this size on, a pass is closed rather than pad more than this share of its tokens.
MIN_PASS_TOKENS = 256
PASS_PADDING = 0.125


@dataclass
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

    @property
    def config(self) -> EncoderConfig:
        return self.encoder.cfg

    @property
    def max_length(self) -> int:
        """The longest input the model takes: the tokenizer's limit within the position table."""
        return min(self.tokenizer.model_max_length, self.config.max_length)

    @classmethod
    def from_dir(cls, model_dir: str | Path, head: str = "base", name: str = "",
                 dtype: torch.dtype = torch.float32) -> "Runtime":
        """Straight from a Hub-format directory: fp32, or with the products in bf16 (`dtype`)."""
        from .weights import load_encoder

        encoder = load_encoder(model_dir, head, dtype)
        return cls(encoder, Tokenizer.from_dir(model_dir), Path(model_dir), name or str(model_dir),
                   model_id=str(Path(model_dir).resolve()), precision="bf16" if dtype == torch.bfloat16 else "fp32")

    def forward(self, encodings: Sequence[Encoding]) -> torch.Tensor:
        """Run the encoder over a batch; the head's output (see Encoder) for each encoding, in the order
        given, token-level outputs padded to the longest encoding (what padding positions hold is not
        defined: read each row's own tokens).

        The batch runs in passes of rows of similar length, each padded only to its own longest row:
        rows sorted by length, a pass closed when it would hold more than TOKENS_PER_PASS tokens, or pad
        more than PASS_PADDING of them once it holds MIN_PASS_TOKENS. Rows are independent, so the
        passes change no result, and little of the work goes to padding.
        """
        lengths = [len(encoding.ids) for encoding in encodings]
        passes = _passes(lengths)
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


def _passes(lengths: Sequence[int]) -> list[list[int]]:
    """Row indices in passes (see Runtime.forward), shortest rows first."""
    passes: list[list[int]] = []
    current: list[int] = []
    real = 0
    for i in sorted(range(len(lengths)), key=lengths.__getitem__):
        width, count = lengths[i], len(current) + 1  # sorted: the new row is the pass's longest
        padded = width * count
        if current and (padded > TOKENS_PER_PASS or (
                len(current) * lengths[current[-1]] >= MIN_PASS_TOKENS and padded - real - width > PASS_PADDING * padded)):
            passes.append(current)
            current, real = [], 0
        current.append(i)
        real += width
    return [*passes, current]
