"""Zero-shot classification with an NLI model, as transformers' ZeroShotClassificationPipeline does it.

Each text is the premise and each candidate label becomes a hypothesis ("This example is {label}."); the
model's entailment logit says how well the label fits. With one winner wanted (the default), the
entailment logits of all candidates go through one softmax, so the scores sum to 1; with `multi_label`
(or a single candidate) each candidate is judged on its own, by a softmax over its contradiction and
entailment logits.

With `chunk`, a long text is read as chunks of whole words, each chunk paired with every hypothesis, and
a label's score is the mean (default) or max of its chunks' scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from ..checkpoint import heads
from ..errors import InputError, ModelError, UsageError
from ..io.batches import batched
from .table import DEFAULT_TEMPLATE
from .base import AGGREGATIONS, Task, mark_truncated

if TYPE_CHECKING:
    from ..model.runtime import Runtime


class ZeroShot(Task):
    """Result per text: `{"labels": [...], "scores": [...]}`, best first, as the pipeline returns them.

    `labels` are the candidates (a list, or one comma-separated string as the pipeline accepts);
    `template` turns a label into a hypothesis with str.format. Each text expands to one (text, hypothesis)
    pair per candidate; at most `batch_size` pairs go through the model at once. A text too long for
    `max_length` tokens (default: the model's limit) is truncated, never the hypothesis (and marked).
    With `chunk` (at most the room the longest hypothesis leaves), a text is scored as chunks and each
    label's score aggregated over them (`aggregate`: "mean" or "max"); the result says how many `chunks`.
    The mean of one-winner scores still sums to 1 over the labels; the max does not.
    """

    head = heads.SEQUENCE
    chunkable = True
    pairs = True

    def __init__(
        self,
        runtime: Runtime,
        *,
        labels: Sequence[str] | str,
        template: str = DEFAULT_TEMPLATE,
        multi_label: bool = False,
        chunk: int | None = None,
        overlap: int = 0,
        aggregate: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(runtime, **options)
        self.labels = candidate_labels(labels)
        self.hypotheses = hypotheses(template, self.labels)
        self.entailment_id, self.contradiction_id = nli_ids(runtime.config.id2label)
        # The pipeline judges a lone candidate on its own: a softmax over one logit would always give 1.
        self.independent = multi_label or len(self.labels) == 1
        self._check_hypotheses_fit()
        self.set_chunking(chunk, overlap, needs_chunk={"--aggregate": aggregate is not None})
        if aggregate not in (None, *AGGREGATIONS):
            raise UsageError(f"unknown aggregation {aggregate!r}", hint=f"use {', '.join(AGGREGATIONS)}")
        self.aggregate = aggregate or AGGREGATIONS[0]

    def _check_hypotheses_fit(self) -> None:
        """Fail before any input is read if a hypothesis leaves no room for the text in the window (the
        text is what gets truncated, never the hypothesis)."""
        tokenizer = self.runtime.tokenizer
        single = tokenizer.backend.num_special_tokens_to_add(is_pair=False)
        pair = tokenizer.backend.num_special_tokens_to_add(is_pair=True)
        # A window far beyond any hypothesis: nothing is truncated, so these are the full lengths.
        lengths = [len(encoding.ids) - single for encoding in tokenizer.encode(self.hypotheses, max_length=1 << 30)]
        # The hypothesis that leaves a text the least room: if any pair cuts a text, this one's does.
        self._tightest = max(range(len(lengths)), key=lengths.__getitem__)
        self._longest_hypothesis = lengths[self._tightest]
        for label, tokens in zip(self.labels, lengths):
            if tokens + pair + 1 > self.max_length:
                raise UsageError(
                    f"--labels: the hypothesis for label {label!r} is {tokens} tokens long, which leaves no room for "
                    f"the text in the {self.max_length}-token window",
                    hint=f"use a shorter label or --template{self.raise_max_length()}",
                )

    def chunk_room(self) -> int:
        pair = self.runtime.tokenizer.backend.num_special_tokens_to_add(is_pair=True)
        return self.max_length - pair - self._longest_hypothesis

    def __call__(self, texts: list[str]) -> list[dict[str, Any]]:
        if not texts:
            return []
        if self.chunk is not None:
            spans = self.chunk_spans(texts)
            scores, _ = self._scores([text[start:end] for text, own in zip(texts, spans) for start, end in own])
            results, first = [], 0
            for own in spans:
                rows = scores[first:first + len(own)]  # [chunks, labels]
                first += len(own)
                row = rows.mean(0) if self.aggregate == "mean" else rows.amax(0)  # [labels]
                results.append({**self._ranked(row.tolist()), "chunks": len(own)})
            return results
        scores, encodings = self._scores(texts)
        results = [self._ranked(row) for row in scores.tolist()]
        tightest = encodings[self._tightest::len(self.labels)]  # each text's pair with the longest hypothesis
        return mark_truncated(results, self.runtime.tokenizer.cut_lengths(texts, tightest, self.max_length))

    def _ranked(self, row: list[float]) -> dict[str, Any]:
        # Stable: equal scores keep the order the labels were given in.
        ranked = sorted(zip(self.labels, row), key=lambda pair: pair[1], reverse=True)
        return {"labels": [label for label, _ in ranked], "scores": [score for _, score in ranked]}

    def _scores(self, texts: list[str]) -> tuple[torch.Tensor, list]:
        """Each text's score per label [N, labels] (in self.labels' order), and the pairs' encodings."""
        count = len(self.labels)
        # Pair p is (text p // count, hypothesis p % count).
        encodings = self.runtime.tokenizer.encode(
            [text for text in texts for _ in range(count)],
            self.hypotheses * len(texts),
            max_length=self.max_length,
            truncation="only_first",
        )
        logits = torch.cat(
            [self.runtime.forward(chunk).float() for chunk in batched(encodings, self.batch_size)]
        ).view(len(texts), count, -1)  # [N, labels, NLI classes]
        if self.independent:
            pair = logits[..., [self.contradiction_id, self.entailment_id]]  # [N, labels, 2]
            scores = torch.softmax(pair, dim=-1)[..., 1]  # [N, labels]
        else:
            scores = torch.softmax(logits[..., self.entailment_id], dim=-1)  # [N, labels]
        return scores, encodings


def candidate_labels(labels: Sequence[str] | str) -> list[str]:
    """The candidates, stripped; a string is split on commas, as the pipeline splits it."""
    given = labels.split(",") if isinstance(labels, str) else list(labels)
    stripped = [label.strip() for label in given if label.strip()]
    if not stripped:
        raise InputError("no candidate labels", hint="give the labels to choose from, e.g. --labels sports,politics")
    repeated = sorted({label for label in stripped if stripped.count(label) > 1})
    if repeated:
        # A repeated label would split its score between its copies.
        raise InputError(f"candidate label {repeated[0]!r} is given more than once")
    return stripped


def hypotheses(template: str, labels: list[str]) -> list[str]:
    try:
        filled = [template.format(label) for label in labels]
    except (IndexError, KeyError, ValueError) as error:
        raise InputError(
            f"the hypothesis template {template!r} cannot be filled in: {error}",
            hint="mark where the label goes with {} and double any other braces, e.g. 'This text is about {}.'",
        ) from None
    if filled[0] == template:
        raise InputError(
            f"the hypothesis template {template!r} has no {{}} for the label",
            hint="e.g. 'This text is about {}.'",
        )
    return filled


def nli_ids(id2label: dict[int, str]) -> tuple[int, int]:
    """(entailment id, contradiction id) from the model's label names.

    The entailment id is the first label starting with "entail" (any case), as in the pipeline. The
    contradiction id is the label starting with "contradict"; a model that names none gets the pipeline's
    guess (class 0, or the last class when entailment is 0), which is what it would be in any common
    NLI label order.
    """
    entailment = next((i for i, name in sorted(id2label.items()) if name.lower().startswith("entail")), None)
    if entailment is None:
        raise ModelError(
            f"the model has no entailment label (its labels: {', '.join(id2label.values())})",
            hint="zero-shot classification needs an NLI model, e.g. squeezebert/squeezebert-mnli",
        )
    contradiction = next((i for i, name in sorted(id2label.items()) if name.lower().startswith("contradict")), None)
    if contradiction is None:
        contradiction = len(id2label) - 1 if entailment == 0 else 0
    return entailment, contradiction
