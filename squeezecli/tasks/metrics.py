"""The metrics `squeeze eval` reports, each as its reference computes it (the tests compare them):

- classification: accuracy, macro-F1, per-label precision/recall/F1 and the confusion matrix, as
  scikit-learn's (a label never predicted, or never true, has precision or recall 0);
- NER: entity-level precision/recall/F1 over exact (start, end, label) spans, as seqeval's strict mode,
  micro over all entities and per type;
- QA: exact match and token F1 as the official SQuAD v2 script (answers normalised: lower case, no
  punctuation, no articles, single spaces; a question without answers is right only if the model gives
  none), each the best over the gold answers, averaged over questions;
- embeddings: Spearman's rank correlation between predicted and gold scores (ties get their mean rank),
  as scipy's spearmanr;
- reranking: MRR@10 (the reciprocal rank of the first relevant candidate in the ten best, 0 if none) and
  nDCG@10 (the gains of the ten best, relevance / log2(rank + 1), over the best possible ordering's, as
  scikit-learn's ndcg_score), averaged over the queries that have a relevant candidate; candidates of
  equal score keep their input order.

Pure Python: no torch, no numpy.
"""

from __future__ import annotations

import collections
import math
import re
import string
from collections.abc import Hashable, Sequence
from typing import Any


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def _scores(correct: int, predicted: int, true: int) -> dict[str, Any]:
    """Precision, recall and F1 from counts (0 where a count is 0, as scikit-learn and seqeval), and the
    support (how many are true)."""
    precision = correct / predicted if predicted else 0.0
    recall = correct / true if true else 0.0
    return {"precision": precision, "recall": recall, "f1": _f1(precision, recall), "support": true}


def classification(gold: Sequence[Hashable], predicted: Sequence[Hashable], labels: Sequence[Hashable]) -> dict[str, Any]:
    """Accuracy, macro-F1 over `labels`, per label {precision, recall, f1, support}, and the confusion
    matrix (rows: gold, columns: predicted, in `labels` order)."""
    index = {label: i for i, label in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for truth, guess in zip(gold, predicted, strict=True):
        matrix[index[truth]][index[guess]] += 1
    per_label = {str(label): _scores(matrix[i][i], sum(row[i] for row in matrix), sum(matrix[i]))
                 for i, label in enumerate(labels)}
    total = len(gold)
    return {
        "accuracy": sum(matrix[i][i] for i in range(len(labels))) / total if total else 0.0,
        "macro_f1": sum(entry["f1"] for entry in per_label.values()) / len(labels) if labels else 0.0,
        "per_label": per_label,
        "confusion": {"labels": [str(label) for label in labels], "matrix": matrix},
    }


Span = tuple[int, int, str]


def entities(gold: Sequence[Sequence[Span]], predicted: Sequence[Sequence[Span]]) -> dict[str, Any]:
    """Entity-level precision, recall and F1 over exact (start, end, label) spans, micro over every
    entity, and per type {precision, recall, f1, support}."""
    counts: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0, 0])  # type -> [correct, predicted, gold]
    for truth, guess in zip(gold, predicted, strict=True):
        truth_set, guess_set = set(map(tuple, truth)), set(map(tuple, guess))
        for span in truth_set:
            counts[span[2]][2] += 1
        for span in guess_set:
            counts[span[2]][1] += 1
            counts[span[2]][0] += span in truth_set
    overall = _scores(*(sum(c[i] for c in counts.values()) for i in range(3)))
    return {**{key: overall[key] for key in ("precision", "recall", "f1")},
            "per_type": {kind: _scores(*counts[kind]) for kind in sorted(counts)}}


_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """The SQuAD v2 script's normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _exact(gold: str, predicted: str) -> int:
    return int(normalize_answer(gold) == normalize_answer(predicted))


def _token_f1(gold: str, predicted: str) -> float:
    gold_tokens, predicted_tokens = normalize_answer(gold).split(), normalize_answer(predicted).split()
    if not gold_tokens or not predicted_tokens:  # a no-answer: right only when both are empty
        return float(gold_tokens == predicted_tokens)
    common = collections.Counter(gold_tokens) & collections.Counter(predicted_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    return _f1(same / len(predicted_tokens), same / len(gold_tokens))


def squad(gold: Sequence[Sequence[str]], predicted: Sequence[str | None]) -> dict[str, Any]:
    """Exact match and F1 (0-1) averaged over questions, each the best over its gold answers; a question
    with no gold answers counts the empty string as its one answer; a None prediction is no answer.
    Also each over the questions that have answers and those that have none, as the script splits them."""
    exact, f1, has_answer = [], [], []
    for answers, guess in zip(gold, predicted, strict=True):
        answers = [answer for answer in answers if normalize_answer(answer)] or [""]
        guess = guess or ""
        exact.append(max(_exact(answer, guess) for answer in answers))
        f1.append(max(_token_f1(answer, guess) for answer in answers))
        has_answer.append(answers != [""])

    def mean(values: list[float], keep: list[bool] | None = None) -> float | None:
        chosen = [v for v, k in zip(values, keep or [True] * len(values)) if k]
        return sum(chosen) / len(chosen) if chosen else None

    without = [not flag for flag in has_answer]
    return {"exact": mean(exact), "f1": mean(f1), "has_answer_exact": mean(exact, has_answer),
            "has_answer_f1": mean(f1, has_answer), "no_answer_exact": mean(exact, without),
            "no_answer_f1": mean(f1, without), "questions": len(exact)}


def _ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties given the mean of the ranks they span (scipy.stats.rankdata's "average")."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for position in range(start, end + 1):
            ranks[order[position]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def spearman(gold: Sequence[float], predicted: Sequence[float]) -> float | None:
    """Spearman's rank correlation (Pearson's over average ranks); None where it is undefined (fewer
    than two pairs, or a constant side)."""
    if len(gold) != len(predicted):
        raise ValueError("gold and predicted differ in length")
    if len(gold) < 2:
        return None
    x, y = _ranks(gold), _ranks(predicted)
    mean_x, mean_y = sum(x) / len(x), sum(y) / len(y)
    covariance = sum((a - mean_x) * (b - mean_y) for a, b in zip(x, y))
    spread = math.sqrt(sum((a - mean_x) ** 2 for a in x) * sum((b - mean_y) ** 2 for b in y))
    return covariance / spread if spread else None


def ranking(gold: Sequence[Sequence[float]], predicted: Sequence[Sequence[float]], k: int = 10) -> dict[str, Any]:
    """MRR@k and nDCG@k over queries, each given as its candidates' gold relevance (0: not relevant;
    graded values are gains) and predicted scores, in the same order. Queries without a relevant
    candidate are left out (both metrics are undefined there) and counted in `unjudged`."""
    reciprocal, gains = [], []
    for relevance, scores in zip(gold, predicted, strict=True):
        if len(relevance) != len(scores):
            raise ValueError("a query's gold and predicted differ in length")
        if not any(value > 0 for value in relevance):
            continue
        order = sorted(range(len(scores)), key=lambda i: -scores[i] if scores[i] == scores[i] else math.inf)
        ranked = [relevance[i] for i in order[:k]]
        reciprocal.append(next((1 / rank for rank, value in enumerate(ranked, 1) if value > 0), 0.0))
        ideal = sorted(relevance, reverse=True)[:k]
        gains.append(_dcg(ranked) / _dcg(ideal))
    judged = len(reciprocal)
    return {f"mrr@{k}": sum(reciprocal) / judged if judged else None,
            f"ndcg@{k}": sum(gains) / judged if judged else None,
            "queries": judged, "unjudged": len(gold) - judged}


def _dcg(gains: Sequence[float]) -> float:
    return sum(gain / math.log2(rank + 1) for rank, gain in enumerate(gains, 1))
