"""Similarity search over an index file (io/index.py holds the format): embedding records into index
items, the index's model check, top-k over the index in blocks, and the fusion of a dense and a keyword
ranking (hybrid search).

Vectors are stored at unit length, so cosine similarity is a dot product. int8 stores each vector as
round(v / scale) with scale = max|v| / 127 (per vector: precision/int8.py's per-row quantization; 4x
smaller than float32); float16 and float32 store it as it is. A scan holds one block of BLOCK_ROWS
vectors and, per query, the best k so far: memory is bounded by the block, not the index
(benchmarks/index_memory.py measures it).
"""

from __future__ import annotations

import ctypes
import json
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import UsageError
from ..io.index import Index, Item
from ..io.record import Record
from ..precision.int8 import quantize_per_token
from .embed import Embed, tie_keys

VECTOR_TYPES = {"int8": torch.int8, "float16": torch.float16, "float32": torch.float32}
BLOCK_ROWS = 4096
QUERIES_PER_SCAN = 256
# Reciprocal rank fusion's constant: an item's fused score is the sum over the rankings of 1 / (RRF_K + rank).
# 60 is the value Cormack, Clarke and Buettcher (SIGIR 2009) found best and left fixed, and the one
# Elasticsearch, OpenSearch and txtai use; it keeps one list's first place from outweighing agreement.
RRF_K = 60


def index_meta(embed: Embed, vectors: str) -> dict[str, Any]:
    """What an index built with `embed` records about its model and vectors (see io/index.py)."""
    runtime = embed.runtime
    return {
        "model": runtime.model_id, "commit": runtime.commit, "name": runtime.name, "precision": runtime.precision,
        "dimension": embed.dimension, "vectors": vectors, "pooling": list(embed.pipeline.pooling),
        "normalize": embed.pipeline.normalize, "max_length": embed.max_length, "chunk": embed.chunk,
        "overlap": embed.overlap,
    }


def check_model(index: Index, embed: Embed) -> None:
    """Refuse to mix models: the model that embeds the queries (or new items) must be the index's, at
    the same commit where both are known, with the same vectors."""
    meta, runtime = index.meta, embed.runtime
    same_id = (runtime.model_id.lower() == str(meta["model"]).lower() if "/" in runtime.model_id
               and not runtime.model_id.startswith("/") else runtime.model_id == meta["model"])
    built = f"{meta['model']}" + (f" at {str(meta['commit'])[:12]}" if meta.get("commit") else "")
    hint = f"leave out -m: the index's own model ({meta['name']}) is used; or build an index with this model"
    if not same_id:
        raise UsageError(f"{index.path} was built with {built}, not {runtime.model_id}", hint=hint)
    if meta.get("commit") and runtime.commit and meta["commit"] != runtime.commit:
        raise UsageError(f"{index.path} was built with {built}, not with its commit {runtime.commit[:12]}",
                         hint=f"leave out --revision (or give --revision {meta['commit']})")
    if meta["dimension"] != embed.dimension or list(meta["pooling"]) != list(embed.pipeline.pooling):
        raise UsageError(f"{index.path} holds {meta['dimension']}-dimensional {'+'.join(meta['pooling'])} vectors; "
                         f"this model gives {embed.dimension}-dimensional {'+'.join(embed.pipeline.pooling)} ones")


def items(embed: Embed, records: Sequence[Record], vectors: str) -> list[Item]:
    """The index items of `records`: one per text, or with the embed task's chunking one per chunk."""
    texts = [record.text for record in records]
    if embed.chunk is not None:
        spans = embed.chunk_spans(texts)
        owners = [(i, start, end) for i, own in enumerate(spans) for start, end in own]
        embedded, cut = embed.embed_texts([texts[i][start:end] for i, start, end in owners])
    else:
        owners = [(i, None, None) for i in range(len(texts))]
        embedded, cut = embed.embed_texts(texts)
    scales, raw = encode(embedded, vectors)
    width = len(raw) // max(len(owners), 1)
    sources = [json.dumps({**record.source, **record.extra}, ensure_ascii=False) for record in records]
    return [(texts[i] if start is None else texts[i][start:end], sources[i], start, end, tokens, scale,
             raw[row * width:(row + 1) * width])
            for row, ((i, start, end), tokens, scale) in enumerate(zip(owners, cut, scales))]


def encode(vectors: torch.Tensor, kind: str) -> tuple[list[float], bytes]:
    """Vectors [N, D] -> (per-vector scales, their stored values end to end) at unit length."""
    unit = F.normalize(vectors.float(), dim=-1)  # [N, D]
    if kind == "int8":
        stored, scale = quantize_per_token(unit)  # int8 [N, D], one scale per vector [N, 1]
        scales = scale.squeeze(1).tolist()
    else:
        stored, scales = unit.to(VECTOR_TYPES[kind]), [1.0] * len(unit)
    stored = stored.contiguous()
    return scales, ctypes.string_at(stored.data_ptr(), stored.numel() * stored.element_size())  # a copy, no numpy


def decode(raw: bytes, scales: Sequence[float], kind: str, dimension: int) -> torch.Tensor:
    """The stored values of len(scales) vectors -> their unit vectors [B, D] in float32."""
    stored = torch.frombuffer(bytearray(raw), dtype=VECTOR_TYPES[kind]).view(len(scales), dimension)
    if kind == "int8":
        return stored.float() * torch.tensor(scales)[:, None]
    return stored.float()


def top_k(index: Index, queries: torch.Tensor, k: int, block_rows: int = BLOCK_ROWS
          ) -> Iterator[list[tuple[int, float]]]:
    """Per query vector ([Q, D]), the `k` items most similar to it as (id, score), best first; equal
    scores rank in index order. Queries are scanned QUERIES_PER_SCAN at a time, one block of the index
    at a time (ties: embed.tie_key)."""
    kind, dimension = index.meta["vectors"], index.meta["dimension"]
    for first in range(0, len(queries), QUERIES_PER_SCAN):
        group = F.normalize(queries[first:first + QUERIES_PER_SCAN].float(), dim=-1)  # [Q, D]
        best_scores = group.new_empty(len(group), 0)  # [Q, <=k]
        best_ids = torch.empty(len(group), 0, dtype=torch.long)
        for ids, scales, raw in index.blocks(block_rows):
            scores = group @ decode(raw, scales, kind, dimension).T  # [Q, B]
            scores = torch.cat([best_scores, scores], dim=1)  # [Q, C]: the kept best, then the block in id order
            candidates = torch.cat([best_ids, torch.tensor(ids).expand(len(group), -1)], dim=1)
            # Of scores equal to TIE_DECIMALS (embed.tie_key, the corpus search's rule) the earlier candidate
            # wins: one integer key per candidate, the rounded score then the reversed position, so the
            # keys are distinct and a top-k of them picks (and orders) what a stable sort of the rounded
            # scores would.
            width = scores.shape[1]
            keys = tie_keys(scores) * width + torch.arange(width - 1, -1, -1)  # [Q, C] int64
            order = torch.topk(keys, min(k, width), dim=1).indices  # [Q, <=k], best first
            best_scores, best_ids = scores.gather(1, order), candidates.gather(1, order)
        yield from ([(i, s) for i, s in zip(row_ids, row_scores)]
                    for row_ids, row_scores in zip(best_ids.tolist(), best_scores.tolist()))


def hits(index: Index, ranked: list[tuple[int, float]]) -> list[dict[str, Any]]:
    """The ranked (id, score) of one query as results: rank, score, text, the item's source fields,
    its chunk span and its truncation mark where it has them."""
    stored = index.items([i for i, _ in ranked])
    results = []
    for rank, (i, score) in enumerate(ranked, 1):
        item = stored[i]
        result = {**item["source"], "rank": rank, "score": score, "text": item["text"]}
        if item["start"] is not None:
            result.update(start=item["start"], end=item["end"])
        if item["tokens"] is not None:
            result.update(truncated=True, tokens=item["tokens"])
        results.append(result)
    return results


def fuse(rankings: Sequence[Sequence[tuple[int, float]]], k: int) -> list[tuple[int, float]]:
    """Reciprocal rank fusion of rankings of (id, score), each best first: the `k` best ids by the sum of
    1 / (RRF_K + rank) over the rankings they are in, best first, equal sums in index order."""
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, (item, _) in enumerate(ranking, 1):
            fused[item] = fused.get(item, 0.0) + 1 / (RRF_K + rank)
    return sorted(fused.items(), key=lambda pair: (-pair[1], pair[0]))[:k]
