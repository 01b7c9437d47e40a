"""The task commands: sentiment, classify, qa, ner, embed, similar.

Each is a thin layer over `squeezecli.load`: it turns its options into task options, loads the pipeline
(pulling the model on first use), and hands `run_pipeline` the batch function. torch is imported only
once a command runs, never for `--help` or completion.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterable
from typing import Any

import click

from .errors import SqueezeError
from .options import (
    InputOptions,
    ModelOptions,
    OutputOptions,
    complete_file_names,
    input_options,
    model_options,
    output_options,
    run_pipeline,
)
from .output import resolved_format
from .stream import Record, batched

# Hub ids of SQuAD 2.0 fine-tunes say so; those models learned to point at [CLS] for "no answer".
_SQUAD2 = re.compile(r"squad[-_]?v?2", re.IGNORECASE)


def _notify(message: str) -> None:
    click.echo(f"squeeze: {message}", err=True)


def _load(task: str, model: ModelOptions, output: OutputOptions | None = None, **options: Any) -> Any:
    from .api import load

    return load(
        task, model.model, revision=model.revision, precision=model.precision, offline=model.offline,
        batch_size=model.batch_size, max_length=model.max_length, threads=model.threads,
        progress=not (output and output.quiet), notify=_notify, **options,
    )


TableView = Callable[[dict[str, Any]], dict[str, Any]]


def _run(pipeline: Any, inputs: InputOptions, output: OutputOptions, batch_size: int,
         columns: list[str] | None = None, table_view: TableView | None = None) -> None:
    """Run `pipeline` over the inputs. In a table, each result is shown through `table_view` (nested
    results as one line of text) next to its input's text; JSON lines and CSV get the results as they are
    (named by file and line, not by their text)."""
    table = resolved_format(output.format) == "table"

    def process_batch(records: list[Record]) -> list[dict[str, Any]]:
        results = pipeline.run_batch([record.text for record in records])
        if not table:
            return results
        return [{**(table_view(result) if table_view else result), "text": record.text}
                for record, result in zip(records, results)]

    run_pipeline(
        inputs, output, batch_size=batch_size,
        length_of=lambda record: pipeline.length_of(record.text),
        process_batch=process_batch,
        columns=columns,
    )


def _scored(pairs: Iterable[tuple[str, float]]) -> str:
    return ", ".join(f"{label} {score:.4f}" for label, score in pairs)


def _ranked_labels_view(result: dict[str, Any]) -> dict[str, Any]:
    """classify --top-k/--all-scores: "POSITIVE 0.9900, NEGATIVE 0.0100"."""
    return {"labels": _scored((entry["label"], entry["score"]) for entry in result["labels"])}


def _zero_shot_view(result: dict[str, Any]) -> dict[str, Any]:
    """classify --labels: "sports 0.7000, politics 0.3000"."""
    return {"labels": _scored(zip(result["labels"], result["scores"]))}


def _entities_view(result: dict[str, Any]) -> dict[str, Any]:
    """Entities as "Ada Lovelace (PER), London (LOC)"."""
    return {"entities": ", ".join(f"{entity['text']} ({entity['label']})" for entity in result["entities"])}


def _answers_view(result: dict[str, Any]) -> dict[str, Any]:
    """Each question followed by its answers as "text (score)", "-" for no answer."""
    by_question: dict[str, list[str]] = {}
    for answer in result["answers"]:
        shown = "-" if answer["answer"] is None else answer["answer"]
        by_question.setdefault(answer["question"], []).append(f"{shown} ({answer['score']:.4f})")
    return {"answers": "; ".join(f"{question} {', '.join(answers)}" for question, answers in by_question.items())}


def _run_classifier(pipeline: Any, inputs: InputOptions, output: OutputOptions, batch_size: int, ranked: bool) -> None:
    if ranked:
        _run(pipeline, inputs, output, batch_size, ["labels", "text"], _ranked_labels_view)
    else:
        _run(pipeline, inputs, output, batch_size, ["label", "score", "text"])


def classify_task(model: ModelOptions, labels: str | None, template: str) -> str:
    """The task `classify` runs: "zero-shot" into --labels, else "classify" with --model's own labels."""
    if labels is not None:
        if "{}" not in template:
            raise click.BadParameter("the template needs a {} where the label goes", param_hint="--template")
        return "zero-shot"
    if model.model is None:
        raise click.UsageError("give a classification model with --model, or candidate labels with --labels")
    return "classify"


def qa_settings(inputs: InputOptions, model: ModelOptions, lines: bool, no_answer: bool | None
                ) -> tuple[InputOptions, bool]:
    """What `qa` reads as one context (each file, or each line with --lines), and whether the model may
    answer "no answer" (by default, if it is a SQuAD 2.0 fine-tune)."""
    from . import catalogue

    if inputs.unit == "line" and not lines:
        inputs = InputOptions(inputs.files, "doc", inputs.field, inputs.errors)
    if no_answer is None:
        name = model.model or catalogue.default_for("qa")
        entry = catalogue.by_alias(name)
        no_answer = bool(_SQUAD2.search(entry.repo_id if entry else name))
    return inputs, no_answer


def _classification_options(command: Any) -> Any:
    command = click.option("--all-scores", is_flag=True, help="Every label with its score.")(command)
    return click.option("--top-k", type=click.IntRange(min=1), metavar="N",
                        help="The N best labels with their scores.")(command)


@click.command()
@_classification_options
@model_options
@input_options
@output_options
def sentiment(inputs: InputOptions, output: OutputOptions, model: ModelOptions, top_k: int | None,
              all_scores: bool) -> None:
    """Sentiment of each line: label and score (default model: DistilBERT SST-2)."""
    pipeline = _load("sentiment", model, output, top_k=top_k, all_scores=all_scores)
    _run_classifier(pipeline, inputs, output, model.batch_size, ranked=bool(top_k or all_scores))


@click.command()
@click.option("--labels", metavar="A,B,C", help="Zero-shot: the candidate labels, comma-separated.")
@click.option("--template", default="This example is {}.", show_default=True,
              help="Zero-shot: the hypothesis each label is put into.")
@click.option("--multi-label", is_flag=True, help="Zero-shot: score each label on its own (several may be true).")
@_classification_options
@model_options
@input_options
@output_options
def classify(inputs: InputOptions, output: OutputOptions, model: ModelOptions, labels: str | None, template: str,
             multi_label: bool, top_k: int | None, all_scores: bool) -> None:
    """Classify each line with a text-classification model (--model), or zero-shot into --labels.

    \b
      squeeze classify --model textattack/bert-base-uncased-ag-news news.txt
      squeeze classify --labels "sports,politics,tech" headlines.txt
    """
    if classify_task(model, labels, template) == "zero-shot":
        pipeline = _load("zero-shot", model, output, labels=labels, template=template, multi_label=multi_label)
        _run(pipeline, inputs, output, model.batch_size, ["labels", "text"], _zero_shot_view)
        return
    pipeline = _load("classify", model, output, top_k=top_k, all_scores=all_scores)
    _run_classifier(pipeline, inputs, output, model.batch_size, ranked=bool(top_k or all_scores))


@click.command()
@click.option("-q", "--question", "questions", multiple=True, required=True, metavar="QUESTION",
              help="A question to answer from each context; repeat for several.")
@click.option("--lines", is_flag=True, help="Each line is a context (default: each file, or stdin, is one).")
@click.option("--top-k", type=click.IntRange(min=1), default=1, show_default=True, help="Answers per question.")
@click.option("--stride", type=click.IntRange(min=0), metavar="TOKENS",
              help="Overlap between the windows of a long context (default: 128, or half the window).")
@click.option("--max-answer-len", type=click.IntRange(min=1), default=15, show_default=True, metavar="TOKENS",
              help="The longest answer in tokens.")
@click.option("--no-answer/--always-answer", default=None,
              help="Let the model say the context holds no answer (default: on for SQuAD 2.0 models).")
@model_options
@input_options
@output_options
def qa(inputs: InputOptions, output: OutputOptions, model: ModelOptions, questions: tuple[str, ...], lines: bool,
       top_k: int, stride: int | None, max_answer_len: int, no_answer: bool | None) -> None:
    """Answer questions from each context with a span of its text and the span's character offsets."""
    inputs, no_answer = qa_settings(inputs, model, lines, no_answer)
    pipeline = _load("qa", model, output, questions=list(questions), top_k=top_k, stride=stride,
                     max_answer_len=max_answer_len, handle_impossible_answer=no_answer)
    columns = ["file", "line", "answers", "text"] if lines else ["file", "answers"]
    _run(pipeline, inputs, output, model.batch_size, columns, _answers_view)


@click.command()
@click.option("--aggregation", type=click.Choice(["none", "simple", "first", "average", "max"]), default="simple",
              show_default=True, help="How tokens are merged into entities, as in transformers' pipeline.")
@model_options
@input_options
@output_options
def ner(inputs: InputOptions, output: OutputOptions, model: ModelOptions, aggregation: str) -> None:
    """Named entities in each line: label, score, text and character offsets."""
    pipeline = _load("ner", model, output, aggregation=aggregation)
    _run(pipeline, inputs, output, model.batch_size, ["entities", "text"], _entities_view)


@click.command()
@model_options
@input_options
@output_options(extra_formats=["npy"])
def embed(inputs: InputOptions, output: OutputOptions, model: ModelOptions) -> None:
    """Embedding vector of each line, pooled and normalised as the model specifies.

    --format npy writes one float32 NumPy array [lines, dimension] to stdout (needs numpy).
    """
    pipeline = _load("embed", model, output)
    if output.format != "npy":
        _run(pipeline, inputs, output, model.batch_size, ["embedding", "text"])
        return
    from .tasks.embed import vectors_to_npy

    if sys.stdout.isatty():
        raise SqueezeError("refusing to write a binary .npy array to a terminal", hint="redirect it: > vectors.npy")
    vectors: list[list[float]] = []
    for batch in batched(inputs.read(), model.batch_size):
        vectors.extend(row["embedding"] for row in pipeline.run_batch([record.text for record in batch]))
    vectors_to_npy(vectors, sys.stdout.buffer, dimension=pipeline.task.dimension)


@click.command()
@click.argument("query")
@click.option("--corpus", "corpus", required=True, multiple=True, metavar="FILE",
              help="Lines to search (a file, or - for stdin); repeat for several.", shell_complete=complete_file_names)
@click.option("-k", "--top-k", "k", type=click.IntRange(min=1), default=5, show_default=True,
              help="How many of the nearest lines.")
@model_options
@output_options
def similar(output: OutputOptions, model: ModelOptions, query: str, corpus: tuple[str, ...], k: int) -> None:
    """The corpus lines nearest to QUERY by cosine similarity of their embeddings.

    The corpus is read and embedded one batch at a time: only the best k lines are kept.
    """
    from .options import open_writer
    from .stream import check_paths, read_records

    check_paths(corpus)
    pipeline = _load("embed", model, output)
    from .tasks.embed import nearest

    batches = ([(record.text, record.source) for record in batch]
               for batch in batched(read_records(corpus), model.batch_size))
    hits = nearest(pipeline.task, query, batches, k)
    rows = [{**hit["source"], "rank": rank, "score": hit["score"], "text": hit["text"]}
            for rank, hit in enumerate(hits, 1)]
    open_writer(output.format, ["rank", "score", "text", "file", "line"]).write_batch(rows)


COMMANDS = [sentiment, classify, qa, ner, embed, similar]
