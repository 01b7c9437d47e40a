"""Text classification (sentiment and any sequence-classification checkpoint), scored as transformers'
TextClassificationPipeline scores it: softmax over the labels, sigmoid for multi-label checkpoints (and
single-logit ones), raw logits for regression.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from ..checkpoint import heads
from ..errors import ModelError, SqueezeError, UsageError
from ..io.batches import batched
from .base import AGGREGATIONS, Task, cut_lengths, mark_truncated

if TYPE_CHECKING:
    from ..model.runtime import Runtime


class Classify(Task):
    """Result per text: `{"label": best label, "score": its score}`, plus with `top_k=N` the N best as
    `"labels": [{"label", "score"}, ...]`, or all of them with `all_scores=True`, best first (equal scores
    keep the model's label order). Texts longer than `max_length` tokens (default: the model's limit)
    are truncated, and their results say so (`truncated`, `tokens`).

    With `chunk`, a text is scored as chunks of whole words instead (`overlap` tokens shared, see
    Task.chunk_spans) and the chunks' scores aggregated per label, their mean (the default) or max;
    the result then says how many `chunks` it read.
    """

    head = heads.SEQUENCE
    chunkable = True

    def __init__(self, runtime: Runtime, *, top_k: int | None = None, all_scores: bool = False,
                 chunk: int | None = None, overlap: int = 0, aggregate: str | None = None, **options: Any) -> None:
        super().__init__(runtime, **options)
        if top_k is not None and top_k < 1:
            raise SqueezeError(f"top_k must be at least 1, not {top_k}")
        self.set_chunking(chunk, overlap, needs_chunk={"--aggregate": aggregate is not None})
        if aggregate not in (None, *AGGREGATIONS):
            raise UsageError(f"unknown aggregation {aggregate!r}", hint=f"use {', '.join(AGGREGATIONS)}")
        self.aggregate = aggregate or AGGREGATIONS[0]
        self.labels = labels_in_id_order(runtime.config.id2label)
        self.score = score_function(runtime.config.problem_type, len(self.labels))
        self.top_k = len(self.labels) if all_scores else top_k

    def __call__(self, texts: list[str]) -> list[dict[str, Any]]:
        return self.run(self.prepare(texts))

    def prepare(self, texts: list[str]) -> list[Any]:
        if self.chunk is not None:
            return super().prepare(texts)
        return self.runtime.tokenizer.encode_counted(texts, self.max_length)

    def run(self, prepared: list[Any]) -> list[dict[str, Any]]:
        if not prepared:
            return []
        if self.chunk is not None:
            return self._chunked([item.text for item in prepared])
        results = [self._ranked(row) for row in self._scores(prepared).tolist()]
        return mark_truncated(results, cut_lengths(prepared))

    def _scores(self, encodings: list) -> torch.Tensor:
        return torch.cat([self.score(self.runtime.forward(chunk).float())
                          for chunk in batched(encodings, self.batch_size)])  # [N, labels]

    def _ranked(self, row: list[float]) -> dict[str, Any]:
        # sorted() is stable: equal scores keep label order, as the pipeline's list.sort does.
        ranked = sorted(zip(self.labels, row), key=lambda pair: pair[1], reverse=True)
        result: dict[str, Any] = {"label": ranked[0][0], "score": ranked[0][1]}
        if self.top_k is not None:
            result["labels"] = [{"label": label, "score": score} for label, score in ranked[: self.top_k]]
        return result

    def _chunked(self, texts: list[str]) -> list[dict[str, Any]]:
        spans = self.chunk_spans(texts)
        pieces = [text[start:end] for text, own in zip(texts, spans) for start, end in own]
        scores = self._scores(self.runtime.tokenizer.encode(pieces, max_length=self.max_length))  # [chunks, labels]
        results, first = [], 0
        for own in spans:
            rows = scores[first:first + len(own)]
            first += len(own)
            row = rows.mean(0) if self.aggregate == "mean" else rows.amax(0)  # [labels]
            results.append({**self._ranked(row.tolist()), "chunks": len(own)})
        return results


def labels_in_id_order(id2label: dict[int, str]) -> list[str]:
    """The label names by class id; the ids must be 0..n-1, one per logit."""
    if sorted(id2label) != list(range(len(id2label))):
        raise ModelError(f"config.json's id2label ids are not 0..{len(id2label) - 1}: {sorted(id2label)}")
    return [id2label[i] for i in range(len(id2label))]


def score_function(problem_type: str | None, num_labels: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """Logits -> scores, chosen as the pipeline's default function_to_apply is, from config.json's
    problem_type and the number of labels."""
    if problem_type == "regression":
        return lambda logits: logits
    if problem_type == "multi_label_classification" or num_labels == 1:
        return torch.sigmoid
    return lambda logits: torch.softmax(logits, dim=-1)
