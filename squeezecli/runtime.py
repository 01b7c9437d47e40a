"""A model ready to run: encoder (fp32 or int8), tokenizer, and the directory they came from.

Tasks receive a `Runtime` and never care whether it was built from a Hub checkpoint (fp32) or from
squeeze's int8 cache; `store.py` builds the latter, `Runtime.from_dir` the former.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from tokenizers import Encoding

from .config import EncoderConfig
from .encoder import Encoder
from .tokenizer import Tokenizer, collate


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
        with torch.inference_mode():
            return self.encoder(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])

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
