"""Named entities (token classification), aggregated exactly as transformers' TokenClassificationPipeline does.

Every token gets the softmax of its label logits; the aggregation strategy then turns tokens into entities:

    none     one entity per token, its best label (B-PER, I-PER, ...)
    simple   adjacent tokens with the same entity type are merged, unless a token starts a new one (B-)
    first    words first: each word takes the label of its first token, then merged as in simple
    average  words first: each word takes the best label of its tokens' averaged scores, then merged
    max      words first: each word takes the label of its single most confident token, then merged

"first", "average" and "max" never split a word; "simple" can ("Spring" + "field"), so squeeze's default
is "first" (DEFAULT_AGGREGATION: the label of a word's first token is what token-classification models are
trained on); transformers' pipeline defaults to "none". Labels in `ignore_labels` ("O") are dropped.

Unlike the transformers pipeline, which truncates a long text, every text is covered fully: a text longer than
one window is cut into windows overlapping by `stride` tokens and their entities are merged as transformers
merges them when given a stride (of overlapping entities the longest wins, then the most confident).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from tokenizers import Encoding

from ..checkpoint import heads
from ..errors import SqueezeError
from ..model.tokenizer import flatten_windows
from .base import WindowedTask

if TYPE_CHECKING:
    from ..model.runtime import Runtime

AGGREGATIONS = ("none", "simple", "first", "average", "max")
DEFAULT_AGGREGATION = "first"  # keeps words whole (module docstring)
_WORD_AGGREGATIONS = ("first", "average", "max")


@dataclass
class _Token:
    """A non-special token of one window, with what the aggregations need to know about it."""

    scores: torch.Tensor  # [labels]: softmax over the labels
    start: int  # character offsets into the text
    end: int
    is_subword: bool  # continues the word of the token before it


@dataclass
class _Entity:
    label: str
    score: float
    start: int
    end: int


class TokenClassification(WindowedTask):
    """Labels spans of each input text with the model's entity types.

    Result per input: `{"entities": [...]}` in text order, each entity

        {"label": str, "score": float, "text": str, "start": int, "end": int}

    with `start`/`end` character offsets into the input and `text` = input[start:end]. `label` is the
    model's tag ("B-PER") with aggregation "none", else the entity type ("PER"), transformers'
    entity_group. `score` is the tag's probability, averaged over the merged tokens or words.

    Options: `aggregation` (see the module docstring; default "first", which keeps words whole),
    `max_length` tokens per window (default: the model's limit), `stride` tokens of overlap between
    windows of a long text (default max_length // 4), `ignore_labels`, and `batch_size`, the most
    windows per forward pass.
    """

    head = heads.TOKEN

    def __init__(
        self,
        runtime: Runtime,
        *,
        aggregation: str = DEFAULT_AGGREGATION,
        stride: int | None = None,
        ignore_labels: Sequence[str] = ("O",),
        **options: Any,
    ) -> None:
        super().__init__(runtime, **options)
        if aggregation not in AGGREGATIONS:
            raise SqueezeError(f"unknown aggregation {aggregation!r}", hint=f"use one of {', '.join(AGGREGATIONS)}")
        self.aggregation = aggregation
        self.stride = self.max_length // 4 if stride is None else stride
        self.ignore_labels = set(ignore_labels)
        self.labels = runtime.config.id2label
        backend = runtime.tokenizer.backend
        # WordPiece marks word continuations ("##"), so a token is a subword when its text is longer than
        # the characters it covers; byte-level BPE does not, and transformers falls back to "no space
        # before it" (see _tokens).
        self._marks_subwords = bool(getattr(backend.model, "continuing_subword_prefix", None))
        unk_token = getattr(backend.model, "unk_token", None)
        self._unk_id = backend.token_to_id(unk_token) if unk_token else None

    def __call__(self, texts: list[str]) -> list[dict[str, Any]]:
        if not texts:
            return []
        encodings = self.runtime.tokenizer.encode(texts, max_length=self.max_length, stride=self.stride, overflow=True)
        windows = flatten_windows(encodings)
        scores = self._window_scores([window.encoding for window in windows])
        entities: list[list[_Entity]] = [[] for _ in texts]
        window_counts = [0] * len(texts)
        for window, window_scores in zip(windows, scores):
            text = texts[window.input_index]
            tokens = self._tokens(text, window.encoding, window_scores)
            entities[window.input_index] += [
                entity for entity in self._aggregate(tokens) if entity.label not in self.ignore_labels
            ]
            window_counts[window.input_index] += 1
        results = []
        for text, text_entities, count in zip(texts, entities, window_counts):
            if count > 1:
                text_entities = _resolve_overlaps(text_entities)
            results.append({"entities": [
                {"label": entity.label, "score": entity.score, "text": text[entity.start:entity.end],
                 "start": entity.start, "end": entity.end}
                for entity in text_entities
            ]})
        return results

    def _window_scores(self, encodings: list[Encoding]) -> list[torch.Tensor]:
        """Label probabilities [T, labels] of each window, unpadded."""
        return [logits.softmax(dim=-1) for logits in self.runtime.forward_each(encodings, self.batch_size)]

    def _tokens(self, text: str, encoding: Encoding, scores: torch.Tensor) -> list[_Token]:
        """transformers' gather_pre_entities."""
        backend = self.runtime.tokenizer.backend
        tokens = []
        for index, (token_id, (start, end), special) in enumerate(
            zip(encoding.ids, encoding.offsets, encoding.special_tokens_mask)
        ):
            if special:
                continue
            if token_id == self._unk_id:
                # "[UNK]" stands for the characters it replaced and is a word of its own.
                is_subword = False
            elif self._marks_subwords:
                # "##ing" covering "ing"
                is_subword = len(backend.id_to_token(token_id)) != end - start
            else:
                is_subword = start > 0 and " " not in text[start - 1 : start + 1]
            tokens.append(_Token(scores[index], start, end, is_subword))
        return tokens

    def _aggregate(self, tokens: list[_Token]) -> list[_Entity]:
        if self.aggregation in _WORD_AGGREGATIONS:
            tagged = [self._word_entity(word) for word in _words(tokens)]
        else:
            tagged = [self._entity(token.scores, token.start, token.end) for token in tokens]
        if self.aggregation == "none":
            return tagged
        return [_merge(group) for group in _entity_groups(tagged)]

    def _word_entity(self, word: list[_Token]) -> _Entity:
        """transformers' aggregate_word: one label for all tokens of a word."""
        if self.aggregation == "first":
            scores = word[0].scores
        elif self.aggregation == "max":
            # max() keeps the first of equally confident tokens, as transformers does.
            scores = max(word, key=lambda token: float(token.scores.max())).scores
        else:
            scores = torch.stack([token.scores for token in word]).nanmean(dim=0)  # [labels]
        return self._entity(scores, word[0].start, word[-1].end)

    def _entity(self, scores: torch.Tensor, start: int, end: int) -> _Entity:
        best = int(scores.argmax())
        return _Entity(self.labels[best], float(scores[best]), start, end)


def _words(tokens: list[_Token]) -> list[list[_Token]]:
    """Tokens grouped into words: a subword joins the word before it."""
    words: list[list[_Token]] = []
    for token in tokens:
        if words and token.is_subword:
            words[-1].append(token)
        else:
            words.append([token])
    return words


def _tag(label: str) -> tuple[str, str]:
    """("B" or "I", entity type); a label without a B-/I- prefix continues like I-."""
    if label.startswith(("B-", "I-")):
        return label[0], label[2:]
    return "I", label


def _entity_groups(entities: list[_Entity]) -> list[list[_Entity]]:
    """transformers' group_entities: runs of the same type, a B- tag starting a new run."""
    groups: list[list[_Entity]] = []
    for entity in entities:
        bi, entity_type = _tag(entity.label)
        if groups and bi != "B" and entity_type == _tag(groups[-1][-1].label)[1]:
            groups[-1].append(entity)
        else:
            groups.append([entity])
    return groups


def _merge(group: list[_Entity]) -> _Entity:
    """transformers' group_sub_entities: the first tag's type, the mean score, the span of the run."""
    entity_type = group[0].label.split("-", 1)[-1]
    score = sum(entity.score for entity in group) / len(group)
    return _Entity(entity_type, score, group[0].start, group[-1].end)


def _resolve_overlaps(entities: list[_Entity]) -> list[_Entity]:
    """transformers' aggregate_overlapping_entities, for the entities of overlapping windows: in start
    order, an entity starting inside the one kept replaces it if longer, or as long and more confident."""
    if not entities:
        return entities
    ordered = sorted(entities, key=lambda entity: entity.start)
    kept: list[_Entity] = []
    current = ordered[0]
    for entity in ordered:
        if current.start <= entity.start < current.end:
            length, current_length = entity.end - entity.start, current.end - current.start
            if length > current_length or (length == current_length and entity.score > current.score):
                current = entity
        else:
            kept.append(current)
            current = entity
    kept.append(current)
    return kept
