"""A model ready to run: encoder (fp32 or int8), tokenizer, and the directory they came from.

Tasks receive a `Runtime` and never care where it came from (model/loader.py builds it). `forward` runs
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
from .config import EncoderConfig
from .encoder import Encoder
from .tokenizer import Tokenizer, collate

# Padding included; rows are never split, so one text longer than this still runs whole. At ~1,000 tokens
# a pass is already big enough for the matrix kernels to run at full speed.
TOKENS_PER_PASS = 1024


@dataclass
class Runtime:
    encoder: Encoder
    tokenizer: Tokenizer
    model_dir: Path  # config.json, tokenizer files, sentence-transformers pooling files
    name: str = ""  # what the user called the model, for messages and output

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
        process.release_free_memory()
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
