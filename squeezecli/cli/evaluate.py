"""`squeeze eval`: a task's standard metrics on the user's own labelled records, at each precision side by
side, with each precision's agreement with fp32, its lines/s, and the records whose prediction changed.

The records are read whole first (an evaluation set is small next to what the tasks stream), then each
precision's pipeline runs over them in turn, one model in memory at a time. The TASK choices, their
options and checks come from the table of tasks (tasks/table.py); each row's evaluator
(tasks/evaluation.py) turns records into gold values and results into predictions, and
tasks/metrics.py computes the metrics; this module runs the passes and reports.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Sequence
from typing import Any

import click

from ..environment import Environment
from ..errors import InputError
from ..io.pipeline import InputOptions
from ..io.progress import progress_of
from ..io.record import Record
from ..io.writers import print_json, print_rich
from ..precision.names import AUTO, FP32, INT8, PRECISIONS
from ..tasks.evaluation import CHUNK, Evaluator
from ..tasks.table import TASKS, Option, TaskSpec, imported
from . import tasks
from .options import ModelOptions, input_options, model_options, pass_environment, with_options


@dataclasses.dataclass
class Run:
    """One precision's pass: what it predicted, how fast, and what that scores."""

    precision: str
    runs_as: str  # what auto resolved to
    predictions: list[Any]
    seconds: float
    metrics: dict[str, Any]


def evaluated_tasks(rows: Iterable[TaskSpec] | None = None) -> dict[str, TaskSpec]:
    """The rows of the table that eval can score, by name."""
    return {spec.name: spec for spec in (TASKS.values() if rows is None else rows) if spec.evaluation}


def evaluation_options(rows: Iterable[TaskSpec]) -> list[Option]:
    """eval's task options: each row's, once by name, in table order."""
    found: dict[str, Option] = {}
    for spec in rows:
        for option in spec.evaluation.options if spec.evaluation else ():
            found.setdefault(option.name, option)
    return list(found.values())


def evaluate_command(rows: Iterable[TaskSpec] | None = None) -> click.Command:
    """`squeeze eval`, its TASK choices and task options generated from the table's rows."""
    scored = evaluated_tasks(rows)
    task_options = evaluation_options(scored.values())

    def run(env: Environment, inputs: InputOptions, model: ModelOptions, task: str, gold_field: str, precisions: str,
            show_diff: int, as_json: bool, quiet: bool, **values: Any) -> None:
        run_evaluation(env, inputs, model, scored[task], gold_field, precisions, show_diff, as_json, quiet, values)

    function = pass_environment(run)
    function = input_options(model_options(precision=False)(function))
    function = with_options(function, [
        click.argument("task", type=click.Choice(list(scored)), metavar="TASK"),
        click.option("--labels-from", "gold_field", required=True, metavar="FIELD",
                     help="The field (or column) that holds each record's gold answer: a label name or index "
                          "(classification), [{start, end, label}] (ner), a list of answers (qa, empty: none), a "
                          "score (embed), a relevance (rerank: 0/false, or a gain)."),
        click.option("--precision", "precisions", default=f"{AUTO},{INT8},{FP32}", show_default=True, metavar="P,P,...",
                     help=f"The precisions to compare, comma-separated ({', '.join(PRECISIONS)})."),
        *(tasks.click_option(option) for option in task_options),
        click.option("--show-diff", type=click.IntRange(min=0), default=0, metavar="N",
                     help="Show up to N records whose prediction differs between the precisions."),
        click.option("--json", "as_json", is_flag=True, help="JSON even on a terminal."),
        click.option("--quiet", is_flag=True, help="No progress bar."),
    ])
    return click.command("eval", help=HELP)(function)


HELP = """Score TASK on labelled records (JSON lines by default, or --csv/--tsv/--parquet) at each precision.

\b
  squeeze eval sentiment --labels-from label reviews.jsonl
  squeeze eval zero-shot --labels sports,politics --labels-from topic --csv news.csv
  squeeze eval embed --pair-field other --labels-from score sts.jsonl
  squeeze eval rerank --query-field query --labels-from relevant judged.jsonl

Classification: accuracy, macro-F1, per-label precision/recall/F1, confusion matrix. ner: entity-level
precision/recall/F1 (exact span and type, seqeval's strict mode). qa: exact match and F1 as the
SQuAD v2 script computes them. embed: Spearman correlation of cosine similarity with the gold score.
rerank: MRR@10 and nDCG@10 over the queries that have a relevant candidate.
"""


def run_evaluation(env: Environment, inputs: InputOptions, model: ModelOptions, spec: TaskSpec, gold_field: str,
                   precisions: str, show_diff: int, as_json: bool, quiet: bool, values: dict[str, Any]) -> None:
    """eval's run: check, read the records, then each precision's pass, then the report."""
    assert spec.evaluation is not None
    chosen = list(dict.fromkeys(p.strip() for p in precisions.split(",") if p.strip()))
    unknown = [p for p in chosen if p not in PRECISIONS]
    if unknown or not chosen:
        raise click.BadParameter(f"{unknown[0] if unknown else precisions!r} is not one of {', '.join(PRECISIONS)}",
                                 param_hint="--precision")
    given = {**values, "model": model.model}
    tasks.run_check(spec.evaluation.check, given)
    if inputs.unit == "line":  # labels need fields: JSON lines unless a table format is named
        inputs = dataclasses.replace(inputs, unit="jsonl")
    records = list(inputs.read(env=env))
    if not records:
        raise InputError("no records to evaluate")
    options = spec.evaluation.arguments(given, tasks.model_id(spec.name, model))
    evaluator_class = imported(spec.evaluation.evaluator)
    runs = []
    for precision in chosen:
        pipeline = tasks.load(spec.name, dataclasses.replace(model, precision=precision), env, quiet, **options)
        evaluator = evaluator_class(pipeline, records, gold_field, given)
        with progress_of(env, len(records), quiet or len(records) < CHUNK, label=precision) as shown:
            start = time.perf_counter()
            predictions = evaluator.predict(shown.done)
            seconds = time.perf_counter() - start
        runs.append(Run(precision, pipeline.runtime.precision, predictions, seconds, evaluator.score(predictions)))
        del pipeline, evaluator
    report = _report(spec.name, evaluator_class, records, runs, show_diff)
    if as_json or not env.stdout_is_terminal:
        print_json(env, report)
    else:
        _print_tables(env, spec.name, evaluator_class, report)


# -- the report -------------------------------------------------------------------------------------------


def _report(task: str, evaluator: type[Evaluator], records: list[Record], runs: list[Run], show_diff: int
            ) -> dict[str, Any]:
    reference = next((run for run in runs if run.precision == FP32), next((run for run in runs if run.runs_as == FP32), None))
    report: dict[str, Any] = {"task": task, "records": len(records), "reference": reference.precision if reference else None,
                              "precisions": {}}
    for run in runs:
        report["precisions"][run.precision] = {
            "runs_as": run.runs_as, **run.metrics, "lines_per_second": len(records) / run.seconds if run.seconds else None,
            "agreement": evaluator.agreement(run.predictions, reference.predictions) if reference else None,
        }
    if show_diff and len(runs) > 1:
        changed = []
        for i, record in enumerate(records):
            values = [run.predictions[i] for run in runs]
            if evaluator.changed(values):
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


def _print_tables(env: Environment, task: str, evaluator: type[Evaluator], report: dict[str, Any]) -> None:
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

    for key in evaluator.headline:
        row(key, [column[key] for column in columns])
    nested = evaluator.per_kind
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


evaluate = evaluate_command()
