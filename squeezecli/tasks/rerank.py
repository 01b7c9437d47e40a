"""Reranking with a cross-encoder, as sentence-transformers' CrossEncoder scores a (query, text) pair.

A cross-encoder is a sequence classifier that reads the query and a candidate together, as one pair
through the tokenizer's pair encoding ([CLS] query [SEP] text [SEP] for BERT); its logit says how well the
candidate answers the query. CrossEncoder.predict applies the activation config.json names
(`sentence_transformers.activation_fn`, or before sentence-transformers 4 `sbert_ce_default_activation_function`),
by default a sigmoid for a one-logit model and the raw logits for several. With several labels, the score
that ranks is one label's: the `label` given, else the second of two (the positive class by convention).

The query is never cut: one longer than half the room the window leaves is refused, so CrossEncoder's
longest-first truncation and cutting the candidate alone agree, and a long candidate is cut (and marked,
`truncated` and its whole length in `tokens`) as the other tasks mark theirs.

Ordering candidates best first is the caller's (io/pipeline.py's `best_first`): a task scores the texts it
is given, in order.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from ..errors import ModelError, UsageError
from ..io.batches import batched
from .base import Task, mark_truncated
from .classify import labels_in_id_order

if TYPE_CHECKING:
    from ..model.runtime import Runtime

# The activations sentence-transformers may name in config.json (it imports only torch.* names), by name.
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "torch.nn.modules.activation.Sigmoid": torch.sigmoid,
    "torch.nn.modules.linear.Identity": lambda logits: logits,
    "torch.nn.modules.activation.Tanh": torch.tanh,
}


class Rerank(Task):
    """Result per text: `{"score": float}` of the pair (`query`, text), higher is more relevant; with
    several labels also `"labels": {label: score}`. Texts cut to the window say so (`truncated`, `tokens`).
    """

    head = "sequence"
    pairs = True

    def __init__(self, runtime: Runtime, *, query: str, label: str | None = None, **options: Any) -> None:
        super().__init__(runtime, **options)
        self.labels = labels_in_id_order(runtime.config.id2label) if runtime.config.num_labels else ["LABEL_0"]
        self.activation = activation(_raw_config(runtime), len(self.labels))
        self.ranking = ranking_label(self.labels, label)
        self.set_query(query)

    def set_query(self, query: str) -> None:
        """Score candidates against `query` from now on (one loaded model serves many queries)."""
        if not isinstance(query, str) or not query.strip():
            raise UsageError("the query is empty", hint="give the text to rank the candidates by, e.g. -q 'refund policy'")
        tokenizer = self.runtime.tokenizer
        room = self.max_length - tokenizer.backend.num_special_tokens_to_add(is_pair=True)
        tokens = tokenizer.total_tokens(query)
        if tokens > room // 2:
            raise UsageError(f"-q/--query is {tokens} tokens long, more than half the {self.max_length}-token window "
                             "it shares with each candidate", hint=f"use a shorter query{self.raise_max_length()}")
        self.query = query

    def __call__(self, texts: list[str]) -> list[dict[str, Any]]:
        if not texts:
            return []
        encodings = self.runtime.tokenizer.encode([self.query] * len(texts), texts, max_length=self.max_length,
                                                  truncation="longest_first")
        scores = torch.cat([self.activation(self.runtime.forward(chunk).float())
                            for chunk in batched(encodings, self.batch_size)])  # [N, labels]
        results: list[dict[str, Any]] = []
        for row in scores.tolist():
            result: dict[str, Any] = {"score": row[self.ranking]}
            if len(row) > 1:
                result["labels"] = dict(zip(self.labels, row))
            results.append(result)
        return mark_truncated(results, self.runtime.tokenizer.cut_lengths(texts, encodings, self.max_length, sequence=1))


def _raw_config(runtime: Runtime) -> dict[str, Any]:
    try:
        raw = json.loads((runtime.model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return raw if isinstance(raw, dict) else {}


def activation(config: dict[str, Any], num_labels: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """Logits -> scores as CrossEncoder.get_default_activation_fn chooses: config.json's named activation
    (a name outside torch it would not import, and ignores), else sigmoid for one logit, identity for more."""
    settings = config.get("sentence_transformers")
    name = settings.get("activation_fn") if isinstance(settings, dict) else None
    name = name or config.get("sbert_ce_default_activation_function")
    if isinstance(name, str) and name.startswith("torch."):
        if name not in ACTIVATIONS:
            raise ModelError(f"config.json names the activation {name}, which squeeze does not apply",
                             hint=f"squeeze applies {', '.join(sorted(ACTIVATIONS))}")
        return ACTIVATIONS[name]
    return torch.sigmoid if num_labels == 1 else ACTIVATIONS["torch.nn.modules.linear.Identity"]


def ranking_label(labels: list[str], label: str | None) -> int:
    """The index of the label whose score ranks: `label`, else the only one, else the second of two."""
    if label is not None:
        if label not in labels:
            raise UsageError(f"the model has no label {label!r}", hint=f"its labels: {', '.join(labels)}")
        return labels.index(label)
    if len(labels) <= 2:
        return len(labels) - 1
    raise ModelError(f"the model has {len(labels)} labels ({', '.join(labels)}): which one ranks is not clear",
                     hint="name it: squeezecli.load('rerank', query=..., label=NAME)")
