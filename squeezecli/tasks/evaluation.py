"""How `squeeze eval` scores a task: each record's gold value read from its fields, the task's results
turned into predictions, and the metrics of tasks/metrics.py over them. Each row of the table of tasks
(table.py) names its evaluator here. torch is imported only where a prediction needs it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from ..errors import InputError
from ..io.record import Record

CHUNK = 256  # texts per call: the progress bar moves this often


def _where(record: Record) -> str:
    source = record.source
    place = source.get("line", source.get("row"))
    return f"{source['file']}:{place}" if place is not None else str(source["file"])


def _field(record: Record, name: str) -> Any:
    if name not in record.extra:
        raise InputError(f"{_where(record)}: no {name!r} field", hint="name the field that holds it with --labels-from "
                         "(or --question-field, --pair-field)")
    return record.extra[name]


class Evaluator:
    """A task's gold values, its predictions and their metrics, for one loaded pipeline. `given` holds
    eval's options (the row's evaluation options by name). `headline` names the metrics a table shows
    first, `per_kind` the nested metrics shown one row per kind (per label, per entity type)."""

    headline: ClassVar[tuple[str, ...]] = ("accuracy", "macro_f1")
    per_kind: ClassVar[str | None] = None

    def __init__(self, pipeline: Any, records: list[Record], gold_field: str, given: Mapping[str, Any]) -> None:
        self.pipeline, self.records = pipeline, records
        self.gold = [self.parse_gold(record, _field(record, gold_field)) for record in records]

    def parse_gold(self, record: Record, value: Any) -> Any:
        raise NotImplementedError

    def predict(self, advance: Callable[[int], None]) -> list[Any]:
        texts = [record.text for record in self.records]
        results = []
        for first in range(0, len(texts), CHUNK):
            results += self.pipeline(texts[first:first + CHUNK])
            advance(len(texts[first:first + CHUNK]))
        return [self.prediction(result) for result in results]

    def prediction(self, result: dict[str, Any]) -> Any:
        raise NotImplementedError

    def score(self, predictions: list[Any]) -> dict[str, Any]:
        raise NotImplementedError

    @staticmethod
    def agreement(ours: list[Any], reference: list[Any]) -> float:
        """The share of records predicted as the reference predicts them."""
        return sum(a == b for a, b in zip(ours, reference)) / len(ours)

    @staticmethod
    def changed(values: list[Any]) -> bool:
        """Whether one record's predictions (one per precision) differ."""
        return any(v != values[0] for v in values)


class Classification(Evaluator):
    per_kind = "per_label"

    def __init__(self, pipeline: Any, *args: Any) -> None:
        self.labels = list(pipeline.task.labels)
        super().__init__(pipeline, *args)

    def parse_gold(self, record: Record, value: Any) -> str:
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise InputError(f"{_where(record)}: the label {value!r} is not a label name or index")
        if isinstance(value, str) and value in self.labels:
            return value
        text = str(value).strip()
        if text.lstrip("-").isdigit() and 0 <= int(text) < len(self.labels):
            return self.labels[int(text)]
        raise InputError(f"{_where(record)}: unknown label {value!r}",
                         hint=f"the labels are {', '.join(self.labels)} (or their indexes 0-{len(self.labels) - 1})")

    def prediction(self, result: dict[str, Any]) -> str:
        return result["label"] if "label" in result else result["labels"][0]

    def score(self, predictions: list[Any]) -> dict[str, Any]:
        from . import metrics

        return metrics.classification(self.gold, predictions, self.labels)


class Entities(Evaluator):
    headline = ("precision", "recall", "f1")
    per_kind = "per_type"

    def parse_gold(self, record: Record, value: Any) -> list[tuple[int, int, str]]:
        spans = []
        for entity in value if isinstance(value, list) else [None]:
            if not (isinstance(entity, dict) and isinstance(entity.get("start"), int)
                    and isinstance(entity.get("end"), int) and isinstance(entity.get("label"), str)):
                raise InputError(f"{_where(record)}: gold entities must be a list of "
                                 '{"start": int, "end": int, "label": str}')
            spans.append((entity["start"], entity["end"], entity["label"]))
        return spans

    def prediction(self, result: dict[str, Any]) -> list[tuple[int, int, str]]:
        return sorted((entity["start"], entity["end"], entity["label"]) for entity in result["entities"])

    def score(self, predictions: list[Any]) -> dict[str, Any]:
        from . import metrics

        return metrics.entities(self.gold, predictions)


class Answers(Evaluator):
    headline = ("exact", "f1", "has_answer_f1", "no_answer_exact")

    def __init__(self, pipeline: Any, records: list[Record], gold_field: str, given: Mapping[str, Any]) -> None:
        self.questions = [str(_field(record, given["question_field"])) for record in records]
        super().__init__(pipeline, records, gold_field, given)

    def parse_gold(self, record: Record, value: Any) -> list[str]:
        if isinstance(value, dict) and "text" in value:  # SQuAD's {"text": [...], "answer_start": [...]}
            value = value["text"]
        if isinstance(value, str):
            return [value]
        if isinstance(value, list):
            return [answer["text"] if isinstance(answer, dict) and "text" in answer else answer for answer in value
                    if isinstance(answer, str) or (isinstance(answer, dict) and isinstance(answer.get("text"), str))]
        raise InputError(f"{_where(record)}: gold answers must be a list of strings (empty: no answer)")

    def predict(self, advance: Callable[[int], None]) -> list[Any]:
        task = self.pipeline.task
        predictions: list[str | None] = [None] * len(self.records)
        by_question: dict[str, list[int]] = {}
        for i, question in enumerate(self.questions):
            by_question.setdefault(question, []).append(i)
        for question, rows in by_question.items():  # the QA task answers one set of questions per context
            asked = type(task)(task.runtime, questions=[question], max_length=task.max_length,
                               batch_size=task.batch_size, handle_impossible_answer=task.handle_impossible_answer,
                               max_answer_len=task.max_answer_len)
            for i, result in zip(rows, asked([self.records[i].text for i in rows])):
                predictions[i] = result["answers"][0]["answer"] if result["answers"] else None
            advance(len(rows))
        return predictions

    def score(self, predictions: list[Any]) -> dict[str, Any]:
        from . import metrics

        return metrics.squad(self.gold, predictions)


def _number(record: Record, value: Any, what: str) -> float:
    """A gold value that must be a finite number (true and false count as 1 and 0 where `what` allows)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        raise InputError(f"{_where(record)}: the {what} {value!r} is not a number")
    return number


class Scored(Evaluator):
    """An evaluator whose predictions are scores (a similarity, a relevance): precisions agree by how
    close their scores are, and a record changed when they differ by more than 0.05."""

    @staticmethod
    def agreement(ours: list[Any], reference: list[Any]) -> float:
        """1 - the mean absolute difference of the scores."""
        return 1 - sum(abs(a - b) for a, b in zip(ours, reference)) / len(ours)

    @staticmethod
    def changed(values: list[Any]) -> bool:
        return max(values) - min(values) > 0.05


class Similarity(Scored):
    """Pairs of texts: the cosine similarity of their embeddings against a gold score."""

    headline = ("spearman",)

    def __init__(self, pipeline: Any, records: list[Record], gold_field: str, given: Mapping[str, Any]) -> None:
        self.pairs = [str(_field(record, given["pair_field"])) for record in records]
        super().__init__(pipeline, records, gold_field, given)

    def parse_gold(self, record: Record, value: Any) -> float:
        if isinstance(value, bool):
            raise InputError(f"{_where(record)}: the gold score {value!r} is not a number")
        return _number(record, value, "gold score")

    def predict(self, advance: Callable[[int], None]) -> list[Any]:
        import torch.nn.functional as F

        vectors = self.pipeline.task.vectors
        scores: list[float] = []
        for first in range(0, len(self.records), CHUNK):
            left = F.normalize(vectors([r.text for r in self.records[first:first + CHUNK]]), dim=-1)
            right = F.normalize(vectors(self.pairs[first:first + CHUNK]), dim=-1)
            scores += (left * right).sum(-1).tolist()
            advance(len(left))
        return scores

    def score(self, predictions: list[Any]) -> dict[str, Any]:
        from . import metrics

        return {"spearman": metrics.spearman(self.gold, predictions), "pairs": len(predictions)}


class Ranking(Scored):
    """Candidates for queries (rerank): each record a candidate text with its query (--query-field) and
    gold relevance (0 or false: not relevant; a number: a graded gain). The cross-encoder's scores rank
    each query's candidates; MRR@10 and nDCG@10 over the queries with a relevant candidate."""

    headline = ("mrr@10", "ndcg@10")

    def __init__(self, pipeline: Any, records: list[Record], gold_field: str, given: Mapping[str, Any]) -> None:
        self.queries = [str(_field(record, given["query_field"])) for record in records]
        super().__init__(pipeline, records, gold_field, given)

    def parse_gold(self, record: Record, value: Any) -> float:
        relevance = _number(record, value, "relevance")
        if relevance < 0:
            raise InputError(f"{_where(record)}: the relevance {value!r} is below 0", hint="0 or false: not relevant")
        return relevance

    def _by_query(self) -> dict[str, list[int]]:
        groups: dict[str, list[int]] = {}
        for i, query in enumerate(self.queries):
            groups.setdefault(query, []).append(i)
        return groups

    def predict(self, advance: Callable[[int], None]) -> list[Any]:
        task = self.pipeline.task
        scores: list[float] = [0.0] * len(self.records)
        for query, rows in self._by_query().items():
            task.set_query(query)
            for first in range(0, len(rows), CHUNK):
                chunk = rows[first:first + CHUNK]
                for i, result in zip(chunk, self.pipeline([self.records[i].text for i in chunk])):
                    scores[i] = result["score"]
                advance(len(chunk))
        return scores

    def score(self, predictions: list[Any]) -> dict[str, Any]:
        from . import metrics

        groups = list(self._by_query().values())
        return metrics.ranking([[self.gold[i] for i in rows] for rows in groups],
                               [[predictions[i] for i in rows] for rows in groups])
