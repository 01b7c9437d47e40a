"""Sentence embeddings, pooled and normalised as the model's sentence-transformers files say, and the
nearest-neighbour search behind `squeeze similar`.

A sentence-transformers checkpoint lists its pipeline in modules.json: the transformer, then a Pooling
module (its directory's config.json picks CLS, mean, max, ... pooling), optionally Normalize (unit
length). sentence_bert_config.json (or another of the names checkpoint/layout.py lists) caps the input
length (all-MiniLM-L6-v2 was trained on 256 tokens of its 512 positions) and may ask for lowercasing.
A plain checkpoint without these files is embedded with mean pooling over the real tokens and no
normalisation, the usual way to get a sentence vector out of a bare encoder.

A long text can be embedded as chunks of whole words (`chunk` tokens each, `overlap` shared) rather
than cut to the window: one vector per chunk with its character span, or the chunks pooled into one.
"""

from __future__ import annotations

import heapq
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from ..checkpoint import heads
from ..checkpoint.layout import SENTENCE_TRANSFORMER_CONFIGS
from ..errors import ModelError, SqueezeError, UsageError
from ..io.batches import batched
from .base import Task, cut_lengths, mark_truncated

if TYPE_CHECKING:
    from ..model.runtime import Runtime
    from ..model.tokenizer import Counted

# sentence-transformers' pooling modes, in the order it concatenates them when several are on, with the
# legacy config.json flag of each.
POOLING_MODES = {
    "cls": "pooling_mode_cls_token",
    "max": "pooling_mode_max_tokens",
    "mean": "pooling_mode_mean_tokens",
    "mean_sqrt_len_tokens": "pooling_mode_mean_sqrt_len_tokens",
    "weightedmean": "pooling_mode_weightedmean_tokens",
    "lasttoken": "pooling_mode_lasttoken",
}


@dataclass(frozen=True)
class SentencePipeline:
    """What sentence-transformers does around the encoder: pooling, normalisation, input limits."""

    pooling: tuple[str, ...] = ("mean",)  # concatenated in this order
    normalize: bool = False
    max_seq_length: int | None = None  # None: the model's own limit
    lowercase: bool = False

    @classmethod
    def from_dir(cls, model_dir: Path, hidden_size: int) -> SentencePipeline:
        transformer = _read_first_json(model_dir, SENTENCE_TRANSFORMER_CONFIGS)
        max_seq_length = transformer.get("max_seq_length")
        lowercase = bool(transformer.get("do_lower_case", False))
        modules_path = model_dir / "modules.json"
        if not modules_path.is_file():
            return cls(max_seq_length=max_seq_length, lowercase=lowercase)
        modules = _read_json(modules_path, list)
        if not all(isinstance(module, dict) for module in modules):
            raise ModelError(f"{modules_path} is not a list of modules", hint=f"the file at {modules_path} is damaged")
        pooling, normalize = ("mean",), False
        for module in modules:
            kind = str(module.get("type", "")).rsplit(".", 1)[-1]
            if kind == "Pooling":
                pooling = _pooling_modes(_read_json(model_dir / module.get("path", "") / "config.json"), hidden_size)
            elif kind == "Normalize":
                normalize = True
            elif kind != "Transformer":
                raise ModelError(
                    f"the model's sentence-transformers pipeline has a {kind or 'nameless'} module, "
                    "which squeeze cannot run",
                    hint="squeeze embeds with Transformer, Pooling and Normalize modules only",
                )
        return cls(pooling, normalize, max_seq_length, lowercase)


CHUNK_POOLS = ("mean", "max", "first")
# Scores equal to this many decimals rank in corpus order: the same vector scores a few ulps apart at
# different places in a batched product, and which of two copies of a text ranks first must not depend on it.
TIE_DECIMALS = 6


# Where a score that is not a number ranks: below every cosine (NaN, -inf) or above (+inf).
_LOWEST, _HIGHEST = -2.0, 2.0


def tie_key(score: float) -> int:
    """The integer scores are ranked by: score x 10^TIE_DECIMALS in float64, rounded half to even (a
    NaN as the lowest score)."""
    if not math.isfinite(score):
        score = _HIGHEST if score > 0 else _LOWEST
    return round(score * 10**TIE_DECIMALS)


def tie_keys(scores: torch.Tensor) -> torch.Tensor:
    """tie_key of each of `scores` (any float dtype), as int64: the same integers, computed as torch does."""
    finite = torch.nan_to_num(scores.double(), nan=_LOWEST, posinf=_HIGHEST, neginf=_LOWEST)
    return torch.round(finite * 10**TIE_DECIMALS).long()


class Embed(Task):
    """Result per text: `{"embedding": [floats]}`, `dimension` long.

    Pooled and normalised as the model's sentence-transformers files say; a checkpoint without them
    (or whose modules.json lists no Pooling module) gets mean pooling and no normalisation. Texts longer
    than the input limit are truncated (and marked): `max_length` if given, else the model's
    sentence-transformers max_seq_length, never beyond the model's position table.

    With `chunk` (tokens, at most the window's room), each text is embedded as chunks of whole words
    instead (Tokenizer.word_chunks, `overlap` tokens shared): `{"chunks": [{"start", "end",
    "embedding"}, ...]}`, or with `pool` one `{"embedding", "chunks": n}`: the chunks' mean, element-wise
    max, or first vector (the mean of unit vectors is not renormalised).
    """

    head = heads.BASE
    chunkable = True

    def __init__(self, runtime: Runtime, *, chunk: int | None = None, overlap: int = 0, pool: str | None = None,
                 **options: Any) -> None:
        self.pipeline = SentencePipeline.from_dir(runtime.model_dir, runtime.config.hidden_size)
        super().__init__(runtime, default_max_length=self.pipeline.max_seq_length, **options)
        self.set_chunking(chunk, overlap, needs_chunk={"--pool": pool is not None})
        if pool is not None and pool not in CHUNK_POOLS:
            raise UsageError(f"unknown pool {pool!r}", hint=f"use {', '.join(CHUNK_POOLS)}")
        self.pool = pool

    @property
    def dimension(self) -> int:
        return self.runtime.config.hidden_size * len(self.pipeline.pooling)

    def __call__(self, texts: list[str]) -> list[dict[str, Any]]:
        return self.run(self.prepare(texts))

    def prepare(self, texts: list[str]) -> list[Any]:
        if self.chunk is not None:
            return super().prepare(texts)
        return self._encode(texts)

    def run(self, prepared: list[Any]) -> list[dict[str, Any]]:
        if self.chunk is not None:
            return self._chunked([item.text for item in prepared])
        vectors = self._vectors(prepared)
        return mark_truncated([{"embedding": vector} for vector in vectors.tolist()], cut_lengths(prepared))

    def _chunked(self, texts: list[str]) -> list[dict[str, Any]]:
        spans = self.chunk_spans(texts)
        vectors, lengths = self.embed_texts([text[start:end] for text, pieces in zip(texts, spans) for start, end in pieces])
        results, first = [], 0
        for pieces in spans:
            own, cut = vectors[first:first + len(pieces)], lengths[first:first + len(pieces)]  # [C, D]
            first += len(pieces)
            if self.pool is not None:
                pooled = own.mean(0) if self.pool == "mean" else own.amax(0) if self.pool == "max" else own[0]
                results.append({"embedding": pooled.tolist(), "chunks": len(pieces)})
            else:
                chunks = [{"start": start, "end": end, "embedding": vector}
                          for (start, end), vector in zip(pieces, own.tolist())]
                results.append({"chunks": mark_truncated(chunks, cut)})  # a word longer than the window
        return results

    def vectors(self, texts: Sequence[str]) -> torch.Tensor:
        """The embeddings of `texts` as one tensor [N, dimension]."""
        return self.embed_texts(texts)[0]

    def embed_texts(self, texts: Sequence[str]) -> tuple[torch.Tensor, list[int | None]]:
        """The embeddings [N, dimension] and the texts' cut lengths (see mark_truncated)."""
        encoded = self._encode(texts)
        return self._vectors(encoded), cut_lengths(encoded)

    def _encode(self, texts: Sequence[str]) -> list[Counted]:
        if self.pipeline.lowercase:
            texts = [text.lower() for text in texts]
        return self.runtime.tokenizer.encode_counted(texts, self.max_length)

    def _vectors(self, encoded: Sequence[Counted]) -> torch.Tensor:
        if not encoded:
            return torch.empty(0, self.dimension)
        return torch.cat([self._pooled(chunk) for chunk in batched(encoded, self.batch_size)])  # [N, D]

    def _pooled(self, encodings: list) -> torch.Tensor:
        hidden = self.runtime.forward(encodings).float()  # [N, T, H]
        lengths = torch.tensor([len(encoding.ids) for encoding in encodings])  # [N]
        mask = torch.arange(hidden.shape[1])[None, :] < lengths[:, None]  # [N, T]: real tokens (right padding)
        vectors = torch.cat([pool(hidden, mask, mode) for mode in self.pipeline.pooling], dim=-1)  # [N, D]
        return F.normalize(vectors, dim=-1) if self.pipeline.normalize else vectors


def pool(hidden: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """One sentence vector [N, H] per row of token vectors `hidden` [N, T, H], over the tokens in `mask`
    [N, T], as sentence-transformers' Pooling computes `mode`."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)  # [N, T, 1]
    if mode == "cls":
        return hidden[:, 0]
    if mode == "lasttoken":
        return hidden[torch.arange(hidden.shape[0]), mask.sum(dim=1) - 1]
    if mode == "max":
        return hidden.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(dim=1)
    if mode == "weightedmean":
        # Token i of a sentence weighs i + 1.
        weights = weights * torch.arange(1, hidden.shape[1] + 1, dtype=hidden.dtype)[None, :, None]  # [N, T, 1]
    total = (hidden * weights).sum(dim=1)  # [N, H]
    count = weights.sum(dim=1).clamp(min=1e-9)  # [N, 1]
    return total / count.sqrt() if mode == "mean_sqrt_len_tokens" else total / count


def nearest(
    embed: Embed, query: str, corpus_batches: Iterable[list[tuple[str, Any]]], k: int, cut: list[Any] | None = None
) -> list[dict[str, Any]]:
    """The `k` corpus texts most similar to `query` by cosine similarity, best first.

    The corpus arrives as batches of (text, source) and is embedded one batch at a time; only the best
    `k` so far are kept, so the corpus can be any size. Each result is {"text", "score", "source"} with
    the source as given, plus `truncated` and `tokens` for a text cut to the window (see
    mark_truncated). Equal scores (to TIE_DECIMALS) rank in corpus order. `cut`, if given, collects the
    source of every cut corpus text.
    """
    if k < 1:
        raise SqueezeError(f"k must be at least 1, not {k}")
    target = F.normalize(embed.vectors([query]), dim=-1)[0]  # [D]
    # A min-heap of the best k so far: the root is the one to drop next, the lowest score and, among
    # equal scores, the latest (hence -position).
    best: list[tuple[int, int, str, Any, int | None, float]] = []  # (tie_key, -position, ...)
    position = 0
    for batch in corpus_batches:
        if not batch:
            continue
        vectors, lengths = embed.embed_texts([text for text, _ in batch])
        scores = F.normalize(vectors, dim=-1) @ target  # [B]
        for (text, source), key, score, tokens in zip(batch, tie_keys(scores).tolist(), scores.tolist(), lengths):
            entry = (key, -position, text, source, tokens, score)
            if len(best) < k:
                heapq.heappush(best, entry)
            else:
                heapq.heappushpop(best, entry)
            position += 1
            if cut is not None and tokens is not None:
                cut.append(source)
    ranked = sorted(best, key=lambda entry: (-entry[0], -entry[1]))
    return mark_truncated([{"text": text, "score": score, "source": source} for _, _, text, source, _, score in ranked],
                          [tokens for *_, tokens, _ in ranked])


def _pooling_modes(config: dict[str, Any], hidden_size: int) -> tuple[str, ...]:
    """The pooling modes of a Pooling module's config.json, in either sentence-transformers format."""
    dimension = config.get("embedding_dimension", config.get("word_embedding_dimension", hidden_size))
    if dimension != hidden_size:
        raise ModelError(
            f"the pooling module expects {dimension}-dimensional token vectors, the encoder gives {hidden_size}"
        )
    if "pooling_mode" in config:  # sentence-transformers >= 5: a name or a list of names
        named = config["pooling_mode"]
        modes = (named,) if isinstance(named, str) else tuple(named)
    else:
        modes = tuple(mode for mode, flag in POOLING_MODES.items() if config.get(flag)) or ("mean",)
    if not modes:
        raise ModelError("the model's pooling config names no pooling mode")
    unknown = [mode for mode in modes if mode not in POOLING_MODES]
    if unknown:
        raise ModelError(f"unknown pooling mode {unknown[0]!r} in the model's pooling config")
    return modes


def _read_first_json(directory: Path, names: Sequence[str]) -> dict[str, Any]:
    for name in names:
        if (directory / name).is_file():
            return _read_json(directory / name)
    return {}


def _read_json(path: Path, shape: type[dict] | type[list] = dict) -> Any:
    """A JSON file whose top level must be a `shape` (object or array)."""
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{path} is missing", hint="the model's sentence-transformers files are incomplete") from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ModelError(f"cannot read {path}: {error}", hint=f"the file at {path} is damaged") from None
    if not isinstance(payload, shape):
        kind = "object" if shape is dict else "array"
        raise ModelError(f"{path} is not a JSON {kind}", hint=f"the file at {path} is damaged")
    return payload
