"""`squeeze eval`: a task's standard metrics on the user's own labelled records, at each precision side by
side, with each precision's agreement with fp32, its lines/s, and the records whose prediction changed.

The records are read whole first (an evaluation set is small next to what the tasks stream), then each
precision's pipeline runs over them in turn, one model in memory at a time. tasks/metrics.py computes
the metrics; this module turns records into gold values and results into predictions.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import click

from ..environment import Environment
from ..errors import InputError
from ..io.pipeline import InputOptions
from ..io.progress import progress_of
from ..io.record import Record
from ..io.writers import print_json, print_rich
from ..precision.names import PRECISIONS
from ..tasks import DEFAULT_TEMPLATE
from .options import ModelOptions, input_options, model_options, pass_environment
from .tasks import load, qa_settings

TASKS = ("sentiment", "classify", "zero-shot", "ner", "qa", "embed")
CHUNK = 256  # texts per call: the progress bar moves this often


@dataclasses.dataclass
class Run:
    """One precision's pass: what it predicted, how fast, and what that scores."""

    precision: str
    runs_as: str  # what auto resolved to
    predictions: list[Any]
    seconds: float
    metrics: dict[str, Any]


@click.command("eval")
@click.argument("task", type=click.Choice(TASKS), metavar="TASK")
@click.option("--labels-from", "gold_field", required=True, metavar="FIELD",
              help="The field (or column) that holds each record's gold answer: a label name or index "
                   "(classification), [{start, end, label}] (ner), a list of answers (qa, empty: none), a score "
                   "(embed).")
@click.option("--precision", "precisions", default="auto,int8,fp32", show_default=True, metavar="P,P,...",
              help=f"The precisions to compare, comma-separated ({', '.join(PRECISIONS)}).")
@click.option("--labels", metavar="A,B,C", help="zero-shot: the candidate labels.")
@click.option("--template", default=DEFAULT_TEMPLATE, show_default=True, help="zero-shot: the hypothesis.")
@click.option("--question-field", default="question", show_default=True, metavar="FIELD",
              help="qa: the field that holds each record's question (the text is its context).")
@click.option("--pair-field", metavar="FIELD", help="embed: the field that holds the second text of each pair.")
@click.option("--show-diff", type=click.IntRange(min=0), default=0, metavar="N",
              help="Show up to N records whose prediction differs between the precisions.")
@click.option("--json", "as_json", is_flag=True, help="JSON even on a terminal.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@input_options
@model_options(precision=False)
@pass_environment
def evaluate(env: Environment, inputs: InputOptions, model: ModelOptions, task: str, gold_field: str, precisions: str,
             labels: str | None, template: str, question_field: str, pair_field: str | None, show_diff: int,
             as_json: bool, quiet: bool) -> None:
    """Score TASK on labelled records (JSON lines by default, or --csv/--tsv/--parquet) at each precision.

    \b
      squeeze eval sentiment --labels-from label reviews.jsonl
      squeeze eval zero-shot --labels sports,politics --labels-from topic --csv news.csv
      squeeze eval embed --pair-field other --labels-from score sts.jsonl

    Classification: accuracy, macro-F1, per-label precision/recall/F1, confusion matrix. ner: entity-level
    precision/recall/F1 (exact span and type, seqeval's strict mode). qa: exact match and F1 as the
    SQuAD v2 script computes them. embed: Spearman correlation of cosine similarity with the gold score.
    """
    chosen = list(dict.fromkeys(p.strip() for p in precisions.split(",") if p.strip()))
    unknown = [p for p in chosen if p not in PRECISIONS]
    if unknown or not chosen:
        raise click.BadParameter(f"{unknown[0] if unknown else precisions!r} is not one of {', '.join(PRECISIONS)}",
                                 param_hint="--precision")
    if task == "zero-shot" and not labels:
        raise click.UsageError("zero-shot needs the candidate labels: --labels A,B,C")
    if task == "classify" and not model.model:
        raise click.UsageError("classify needs a classification model: --model NAME")
    if task == "embed" and not pair_field:
        raise click.UsageError("embed is evaluated on pairs: --pair-field FIELD names the second text")
    if inputs.unit == "line":  # labels need fields: JSON lines unless a table format is named
        inputs = dataclasses.replace(inputs, unit="jsonl")
    records = list(inputs.read(env=env))
    if not records:
        raise InputError("no records to evaluate")
    options = _task_options(task, labels, template, inputs, model)
    runs = []
    for precision in chosen:
        pipeline = load(task, dataclasses.replace(model, precision=precision), env, quiet, **options)
        evaluator = EVALUATORS[task](pipeline, records, gold_field, question_field, pair_field)
        with progress_of(env, len(records), quiet or len(records) < CHUNK, label=precision) as shown:
            start = time.perf_counter()
            predictions = evaluator.predict(shown.done)
            seconds = time.perf_counter() - start
        runs.append(Run(precision, pipeline.runtime.precision, predictions, seconds, evaluator.score(predictions)))
        del pipeline, evaluator
    report = _report(task, records, runs, show_diff)
    if as_json or not env.stdout_is_terminal:
        print_json(env, report)
    else:
        _print_tables(env, task, report)


def _task_options(task: str, labels: str | None, template: str, inputs: InputOptions, model: ModelOptions
                  ) -> dict[str, Any]:
    if task == "zero-shot":
        return {"labels": labels, "template": template}
    if task == "qa":
        return {"questions": ["?"], "handle_impossible_answer": qa_settings(inputs, model, True, None)[1]}
    return {}


# -- gold values and predictions, per task ------------------------------------------------------------------


def _where(record: Record) -> str:
    source = record.source
    place = source.get("line", source.get("row"))
    return f"{source['file']}:{place}" if place is not None else str(source["file"])


def _field(record: Record, name: str) -> Any:
    if name not in record.extra:
        raise InputError(f"{_where(record)}: no {name!r} field", hint="name the field that holds it with --labels-from "
                         "(or --question-field, --pair-field)")
    return record.extra[name]


class _Evaluator:
    def __init__(self, pipeline: Any, records: list[Record], gold_field: str, question_field: str,
                 pair_field: str | None) -> None:
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


class _Classification(_Evaluator):
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
        from ..tasks import metrics

        return metrics.classification(self.gold, predictions, self.labels)


class _Entities(_Evaluator):
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
        from ..tasks import metrics

        return metrics.entities(self.gold, predictions)


class _Answers(_Evaluator):
    def __init__(self, pipeline: Any, records: list[Record], gold_field: str, question_field: str, *rest: Any) -> None:
        self.questions = [str(_field(record, question_field)) for record in records]
        super().__init__(pipeline, records, gold_field, question_field, *rest)

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
        from ..tasks import metrics

        return metrics.squad(self.gold, predictions)


class _Similarity(_Evaluator):
    def __init__(self, pipeline: Any, records: list[Record], gold_field: str, question_field: str,
                 pair_field: str | None) -> None:
        assert pair_field is not None
        self.pairs = [str(_field(record, pair_field)) for record in records]
        super().__init__(pipeline, records, gold_field, question_field, pair_field)

    def parse_gold(self, record: Record, value: Any) -> float:
        try:
            score = float(value)
        except (TypeError, ValueError):
            score = math.nan
        if isinstance(value, bool) or not math.isfinite(score):
            raise InputError(f"{_where(record)}: the gold score {value!r} is not a number")
        return score

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
        from ..tasks import metrics

        return {"spearman": metrics.spearman(self.gold, predictions), "pairs": len(predictions)}


EVALUATORS: dict[str, type[_Evaluator]] = {"sentiment": _Classification, "classify": _Classification,
                                           "zero-shot": _Classification, "ner": _Entities, "qa": _Answers,
                                           "embed": _Similarity}


# -- the report -------------------------------------------------------------------------------------------


def _agreement(task: str, ours: list[Any], reference: list[Any]) -> float:
    """The share of records predicted as the reference predicts them; for embeddings, 1 - the mean
    absolute difference of the cosine similarities."""
    if task == "embed":
        return 1 - sum(abs(a - b) for a, b in zip(ours, reference)) / len(ours)
    return sum(a == b for a, b in zip(ours, reference)) / len(ours)


def _report(task: str, records: list[Record], runs: list[Run], show_diff: int) -> dict[str, Any]:
    reference = next((run for run in runs if run.precision == "fp32"), next((run for run in runs if run.runs_as == "fp32"), None))
    report: dict[str, Any] = {"task": task, "records": len(records), "reference": reference.precision if reference else None,
                              "precisions": {}}
    for run in runs:
        report["precisions"][run.precision] = {
            "runs_as": run.runs_as, **run.metrics, "lines_per_second": len(records) / run.seconds if run.seconds else None,
            "agreement": _agreement(task, run.predictions, reference.predictions) if reference else None,
        }
    if show_diff and len(runs) > 1:
        changed = []
        for i, record in enumerate(records):
            values = [run.predictions[i] for run in runs]
            different = (max(values) - min(values) > 0.05) if task == "embed" else any(v != values[0] for v in values)
            if different:
                changed.append({**record.source, "text": record.text,
                                **{run.precision: _shown(run.predictions[i]) for run in runs}})
                if len(changed) == show_diff:
                    break
        report["changed"] = changed
    return report


def _shown(prediction: Any) -> Any:
    if isinstance(prediction, list):
        return [{"start": s, "end": e, "label": label} for s, e, label in prediction]
    return prediction


def _print_tables(env: Environment, task: str, report: dict[str, Any]) -> None:
    from rich.table import Table
    from rich.text import Text

    names = list(report["precisions"])
    columns = [report["precisions"][name] for name in names]
    table = Table(title=f"{task}: {report['records']:,} records", title_justify="left", box=None, pad_edge=False)
    table.add_column("metric")
    for name, column in zip(names, columns):
        table.add_column(name if column["runs_as"] == name else f"{name} ({column['runs_as']})", justify="right")

    def row(label: str, values: Sequence[Any], fmt: str = "{:.4f}") -> None:
        table.add_row(Text(label), *(Text("-" if v is None else fmt.format(v)) for v in values))

    for key in _headline(task):
        row(key, [column[key] for column in columns])
    nested = "per_label" if task in ("sentiment", "classify", "zero-shot") else "per_type" if task == "ner" else None
    if nested:
        for kind in columns[0][nested]:
            row(f"f1 {kind}", [column[nested][kind]["f1"] for column in columns])
    row("agreement with fp32", [column["agreement"] for column in columns])
    row("lines/s", [column["lines_per_second"] for column in columns], "{:,.1f}")
    print_rich(env, table)
    if nested == "per_label":
        for name, column in zip(names, columns):
            confusion = Table(title=f"confusion, {name} (rows: gold, columns: predicted)", title_justify="left",
                              box=None, pad_edge=False)
            confusion.add_column("")
            for label in column["confusion"]["labels"]:
                confusion.add_column(Text(label), justify="right")
            for label, counts in zip(column["confusion"]["labels"], column["confusion"]["matrix"]):
                confusion.add_row(Text(label), *(str(n) for n in counts))
            print_rich(env, confusion)
    if report.get("changed"):
        changed = Table(title="changed between precisions", title_justify="left", box=None, pad_edge=False)
        for name in ("where", "text", *names):
            changed.add_column(name, overflow="fold")
        for entry in report["changed"]:
            place = entry.get("line", entry.get("row"))
            changed.add_row(Text(f"{entry['file']}:{place}"), Text(entry["text"][:60]),
                            *(Text(str(entry[name])) for name in names))
        print_rich(env, changed)


def _headline(task: str) -> list[str]:
    return {"ner": ["precision", "recall", "f1"], "qa": ["exact", "f1", "has_answer_f1", "no_answer_exact"],
            "embed": ["spearman"]}.get(task, ["accuracy", "macro_f1"])
