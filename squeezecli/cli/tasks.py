"""The task commands: sentiment, classify, qa, ner, embed (similar: search.py).

Each is a thin layer over `squeezecli.load`: it turns its options into task options, loads the pipeline
(pulling the model on first use), and hands `run_pipeline` the batch function. torch is imported only
once a command runs, never for `--help` or completion. The task-specific option groups are decorators
here, so `run-distributed` (distributed.py) offers the same options with the same help.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable
from typing import Any

import click

from ..environment import Environment
from ..errors import SqueezeError, UsageError
from ..io.batches import batched
from ..io.pipeline import InputOptions, OutputOptions, TableView, run_pipeline
from ..io.writers import left_cut, write_npy
from ..tasks import DEFAULT_TEMPLATE
from . import views
from .options import (
    ModelOptions,
    input_options,
    model_options,
    output_options,
    pass_environment,
    with_options,
)

# Hub ids of SQuAD 2.0 fine-tunes say so; those models learned to point at [CLS] for "no answer".
_SQUAD2 = re.compile(r"squad[-_]?v?2", re.IGNORECASE)


def load(task: str, model: ModelOptions, env: Environment, quiet: bool = False, **options: Any) -> Any:
    """The pipeline of `task` for the model options, notices to stderr."""
    from ..api import load as load_pipeline
    from ..io.progress import status_line
    from ..store import catalogue

    name = model.model or catalogue.default_for(task)
    # A path by its end, in Rich's cell widths: only where the status line shows (Rich imports slowly).
    shown = left_cut(name, 40) if env.stderr_is_terminal and not quiet else name
    with status_line(env, f"loading {shown} ({model.precision})…", quiet):
        return load_pipeline(
            task, model.model, revision=model.revision, precision=model.precision, offline=model.offline,
            batch_size=model.batch_size, max_length=model.max_length, threads=model.threads,
            progress=not quiet, env=env, **options,
        )


def _run(pipeline: Any, inputs: InputOptions, output: OutputOptions, env: Environment, batch_size: int,
         columns: list[str], table_view: TableView | None = None) -> None:
    texts = cut = 0

    def process_batch(prepared: list[Any]) -> list[dict[str, Any]]:
        nonlocal texts, cut
        results = pipeline.run_prepared(prepared)
        texts += len(results)
        cut += sum(1 for result in results if result.get("truncated"))
        return results

    run_pipeline(inputs, output, batch_size=batch_size, length_of=lambda item: item.length,
                 prepare=lambda records: pipeline.prepare([record.text for record in records]),
                 process_batch=process_batch, columns=columns, table_view=table_view, env=env)
    if cut:
        env.notice(truncation_notice(cut, texts, pipeline.task.max_length, pipeline.runtime.max_length,
                                     chunkable=pipeline.task.chunkable))


def truncation_notice(cut: int, texts: int, window: int, limit: int, chunkable: bool = False) -> str:
    """The run's last word when texts were cut to the model's window: how many, and what reads more."""
    message = (f"{cut:,} of {texts:,} text{'s' if texts != 1 else ''} {'were' if cut != 1 else 'was'} longer "
               f"than the {window}-token window and cut to it (their JSON results say \"truncated\": true)")
    remedies = ([f"--max-length {limit} keeps more of each"] if window < limit else []) + (
        ["--chunk TOKENS reads all of each"] if chunkable else [])
    return "; ".join([message, " or ".join(remedies)]) if remedies else message


def _run_classifier(pipeline: Any, inputs: InputOptions, output: OutputOptions, env: Environment, batch_size: int,
                    ranked: bool) -> None:
    if ranked:
        _run(pipeline, inputs, output, env, batch_size, ["labels", "text"], views.ranked_labels)
    else:
        _run(pipeline, inputs, output, env, batch_size, ["label", "score", "text"])


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
    from ..store import catalogue

    if inputs.unit == "line" and not lines:
        inputs = dataclasses.replace(inputs, unit="doc")
    if no_answer is None:
        name = model.model or catalogue.default_for("qa")
        entry = catalogue.by_alias(name)
        no_answer = bool(_SQUAD2.search(entry.repo_id if entry else name))
    return inputs, no_answer


# -- the task-specific options, shared with run-distributed ---------------------------------------------


Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def classification_options(command: Callable[..., Any]) -> Callable[..., Any]:
    return with_options(command, [
        click.option("--top-k", type=click.IntRange(min=1), metavar="N", help="The N best labels with their scores."),
        click.option("--all-scores", is_flag=True, help="Every label with its score."),
    ])


def zero_shot_options(command: Callable[..., Any]) -> Callable[..., Any]:
    return with_options(command, [
        click.option("--labels", metavar="A,B,C", help="Zero-shot: the candidate labels, comma-separated."),
        click.option("--template", default=DEFAULT_TEMPLATE, show_default=True,
                     help="Zero-shot: the hypothesis each label is put into."),
        click.option("--multi-label", is_flag=True, help="Zero-shot: score each label on its own (several may be true)."),
    ])


def qa_options(command: Callable[..., Any]) -> Callable[..., Any]:
    return with_options(command, [
        click.option("-q", "--question", "questions", multiple=True, required=True, metavar="QUESTION",
                     help="A question to answer from each context; repeat for several."),
        click.option("--lines", is_flag=True, help="Each line is a context (default: each file, or stdin, is one)."),
        click.option("--top-k", type=click.IntRange(min=1), default=1, show_default=True, help="Answers per question."),
        click.option("--stride", type=click.IntRange(min=0), metavar="TOKENS",
                     help="Overlap between the windows of a long context (default: 128, or half the window)."),
        click.option("--max-answer-len", type=click.IntRange(min=1), default=15, show_default=True, metavar="TOKENS",
                     help="The longest answer in tokens."),
        click.option("--no-answer/--always-answer", default=None,
                     help="Let the model say the context holds no answer (default: on for SQuAD 2.0 models)."),
    ])


def ner_options(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--aggregation", type=click.Choice(["none", "simple", "first", "average", "max"]),
                        default="simple", show_default=True,
                        help="How tokens are merged into entities, as in transformers' pipeline.")(command)


def chunk_options(what: str) -> Decorator:
    """--chunk and --overlap: a long text as chunks of whole words, `what` each chunk gets. What can be
    checked without the model is checked before the command loads one."""

    def checked(command: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(command)
        def with_chunking(*args: Any, **kwargs: Any) -> Any:
            from ..tasks.base import check_chunking

            needs = {f"--{name}": kwargs.get(name) is not None for name in ("pool", "aggregate")}
            check_chunking(kwargs.get("chunk"), kwargs.get("overlap") or 0, needs_chunk=needs)
            return command(*args, **kwargs)

        return with_chunking

    return lambda command: with_options(checked(command), [
        click.option("--chunk", type=click.IntRange(min=1), metavar="TOKENS",
                     help=f"Read each text as chunks of whole words of at most TOKENS tokens, instead of cutting it "
                          f"to the window: {what}."),
        click.option("--overlap", type=click.IntRange(min=0), default=0, show_default=True, metavar="TOKENS",
                     help="Tokens of words each chunk repeats from the end of the previous one."),
    ])


def embed_options(command: Callable[..., Any]) -> Callable[..., Any]:
    return with_options(chunk_options("one vector per chunk, with its character offsets")(command), [
        click.option("--pool", type=click.Choice(["mean", "max", "first"]),
                     help="One vector per text from its chunks: their mean, element-wise max, or the first."),
    ])


def window_options(command: Callable[..., Any]) -> Callable[..., Any]:
    return with_options(chunk_options("each chunk is scored, and the scores aggregated")(command), [
        click.option("--aggregate", type=click.Choice(["mean", "max"]),
                     help="With --chunk: a label's score is the mean (default) or the max of its chunks' scores."),
    ])


def task_command(*option_groups: Decorator, extra_formats: tuple[str, ...] = ()) -> Callable[..., click.Command]:
    """A task command: its own option groups, then the model, input and output options, and the run's
    Environment as its first argument."""

    def decorate(function: Callable[..., Any]) -> click.Command:
        function = output_options(pass_environment(function), extra_formats=extra_formats)
        for decorator in (input_options, model_options, *reversed(option_groups)):
            function = decorator(function)
        return click.command()(function)

    return decorate


# -- the commands -------------------------------------------------------------------------------------


@task_command(classification_options, window_options)
def sentiment(env: Environment, inputs: InputOptions, output: OutputOptions, model: ModelOptions, top_k: int | None,
              all_scores: bool, chunk: int | None, overlap: int, aggregate: str | None) -> None:
    """Sentiment of each line: label and score (default model: DistilBERT SST-2)."""
    pipeline = load("sentiment", model, env, output.quiet, top_k=top_k, all_scores=all_scores, chunk=chunk,
                    overlap=overlap, aggregate=aggregate)
    _run_classifier(pipeline, inputs, output, env, model.batch_size, ranked=bool(top_k or all_scores))


@task_command(zero_shot_options, classification_options, window_options)
def classify(env: Environment, inputs: InputOptions, output: OutputOptions, model: ModelOptions, labels: str | None,
             template: str, multi_label: bool, top_k: int | None, all_scores: bool, chunk: int | None, overlap: int,
             aggregate: str | None) -> None:
    """Classify each line with a text-classification model (--model), or zero-shot into --labels.

    \b
      squeeze classify --model textattack/bert-base-uncased-ag-news news.txt
      squeeze classify --labels "sports,politics,tech" headlines.txt
    """
    if classify_task(model, labels, template) == "zero-shot":
        pipeline = load("zero-shot", model, env, output.quiet, labels=labels, template=template,
                        multi_label=multi_label, chunk=chunk, overlap=overlap, aggregate=aggregate)
        _run(pipeline, inputs, output, env, model.batch_size, ["labels", "text"], views.zero_shot)
        return
    pipeline = load("classify", model, env, output.quiet, top_k=top_k, all_scores=all_scores, chunk=chunk,
                    overlap=overlap, aggregate=aggregate)
    _run_classifier(pipeline, inputs, output, env, model.batch_size, ranked=bool(top_k or all_scores))


@task_command(qa_options)
def qa(env: Environment, inputs: InputOptions, output: OutputOptions, model: ModelOptions, questions: tuple[str, ...],
       lines: bool, top_k: int, stride: int | None, max_answer_len: int, no_answer: bool | None) -> None:
    """Answer questions from each context with a span of its text and the span's character offsets."""
    inputs, no_answer = qa_settings(inputs, model, lines, no_answer)
    pipeline = load("qa", model, env, output.quiet, questions=list(questions), top_k=top_k, stride=stride,
                    max_answer_len=max_answer_len, handle_impossible_answer=no_answer)
    columns = ["file", "line", "answers", "text"] if lines else ["file", "answers"]
    _run(pipeline, inputs, output, env, model.batch_size, columns, views.answers)


@task_command(ner_options)
def ner(env: Environment, inputs: InputOptions, output: OutputOptions, model: ModelOptions, aggregation: str) -> None:
    """Named entities in each line: label, score, text and character offsets."""
    pipeline = load("ner", model, env, output.quiet, aggregation=aggregation)
    _run(pipeline, inputs, output, env, model.batch_size, ["entities", "text"], views.entities)


@task_command(embed_options, extra_formats=("npy",))
def embed(env: Environment, inputs: InputOptions, output: OutputOptions, model: ModelOptions, chunk: int | None,
          overlap: int, pool: str | None) -> None:
    """Embedding vector of each line, pooled and normalised as the model specifies.

    --format npy writes one float32 NumPy array [lines, dimension] to stdout (needs numpy).
    """
    if output.format == "npy" and env.stdout_is_terminal:
        raise SqueezeError("refusing to write a binary .npy array to a terminal", hint="redirect it: > vectors.npy")
    if output.format == "npy" and chunk is not None and pool is None:
        raise UsageError("--format npy holds one vector per text", hint="add --pool mean (or max, first) to --chunk")
    pipeline = load("embed", model, env, output.quiet, chunk=chunk, overlap=overlap, pool=pool)
    if output.format != "npy":
        if chunk is not None and pool is None:
            _run(pipeline, inputs, output, env, model.batch_size, ["chunks", "text"], views.chunks)
        else:
            _run(pipeline, inputs, output, env, model.batch_size, ["embedding", "text"])
        return
    vectors: list[list[float]] = []
    for batch in batched(inputs.read(env=env), model.batch_size):
        vectors.extend(row["embedding"] for row in pipeline.run_batch([record.text for record in batch]))
    write_npy(vectors, env.stdout.buffer, dimension=pipeline.task.dimension)


COMMANDS = [sentiment, classify, qa, ner, embed]
