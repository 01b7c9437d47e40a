"""`squeeze run-distributed TASK`: a task command's work on a Ray cluster, results into a directory.

One subcommand per task, with that task command's own options (the same decorators, so help and parsing
match), the usual input and model options, and the run's: --output, --address, --format, --workers. The
Ray side lives in `integrations/raydata.py`; this module imports neither Ray nor torch, since the CLI
imports it at start-up. Without Ray installed the command stops with one line naming the extra.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ..environment import Environment
from ..errors import SqueezeError
from ..io.batches import WINDOW_BATCHES
from ..io.pipeline import InputOptions
from . import tasks
from .options import (
    ModelOptions,
    input_options,
    model_options,
    pass_environment,
    with_options,
)

INSTALL_HINT = "pip install 'squeezecli[ray]'"


@dataclasses.dataclass(frozen=True)
class RunOptions:
    output: Path
    address: str | None  # None: a local cluster started for the run
    format: str
    workers: int | None  # None: as many as the cluster's CPUs allow
    quiet: bool
    verbose: bool = False  # Ray's own log lines too


def loopback_only_ray() -> None:
    """Make Ray, when next imported, start local clusters on 127.0.0.1 only (see raydata.start_local_cluster).

    Ray replaces a loopback node address by the machine's routable one, and binds its servers to every
    interface, unless multi-machine clusters are off, as they are on macOS and Windows; this turns them
    off. Ray reads it once, on import, so it must come before the first `import ray`.
    """
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"


def quiet_ray() -> None:
    """Keep Ray's Python warnings (token authentication, ...) off the user's stderr: squeeze reports what
    matters itself; `--verbose` lets them through."""
    logging.getLogger("ray").setLevel(logging.ERROR)


def run_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--output, --address, --format, --workers, --quiet and --verbose, passed as `run: RunOptions`."""

    @functools.wraps(command)
    def with_run(*args: Any, output: Path, address: str | None, fmt: str, workers: int | None, quiet: bool,
                 verbose: bool, **kwargs: Any) -> Any:
        return command(*args, run=RunOptions(output, address, fmt, workers, quiet, verbose), **kwargs)

    return with_options(with_run, [
        click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), required=True, metavar="DIR",
                     help="Directory for the results: DIR/results.jsonl or DIR/results.parquet (replaced)."),
        click.option("--address", metavar="ADDRESS",
                     help="Ray cluster to join: auto (the one started on this machine with `ray start`), or its "
                          "address. Default: a local cluster for this run, one CPU per core, on loopback only."),
        click.option("--format", "fmt", type=click.Choice(["jsonl", "parquet"]), default="jsonl", show_default=True,
                     help="JSON lines exactly as the task command prints them, or Parquet."),
        click.option("--workers", type=click.IntRange(min=1), metavar="N",
                     help="Model workers, each loading the model once and taking --threads CPUs "
                          "(default: as many as the cluster has CPUs for)."),
        click.option("--quiet", is_flag=True, help="No progress bars and no summary line (a count of texts cut to "
                                                   "the window still shows, as in the task commands)."),
        click.option("--verbose", is_flag=True, help="Let Ray's own log lines through (its workers' and its warnings)."),
    ])


@click.group("run-distributed")
def run_distributed() -> None:
    """Run a task over FILEs on a Ray cluster, results into a directory (needs squeezecli[ray]).

    \b
      squeeze run-distributed sentiment reviews/*.txt --output out/
      squeeze run-distributed embed --jsonl docs.jsonl --output vectors/ --format parquet --address auto

    The files are read here, the model runs on the cluster's workers (each loads it once, pulling it
    once per machine), and the rows the task command would print are written, in input order, to
    DIR/results.jsonl or DIR/results.parquet.
    """


def _task(name: str, *task_options: Callable[[Callable[..., Any]], Callable[..., Any]]
          ) -> Callable[[Callable[..., Any]], click.Command]:
    """The subcommand `name`: the task command's own option groups, then the model, input and run options,
    in the order --help lists them."""

    def decorate(function: Callable[..., Any]) -> click.Command:
        function = pass_environment(function)
        for decorator in (run_options, input_options, model_options, *reversed(task_options)):
            function = decorator(function)
        return run_distributed.command(name)(function)

    return decorate


@_task("sentiment", tasks.classification_options, tasks.window_options)
def sentiment(env: Environment, inputs: InputOptions, model: ModelOptions, run: RunOptions, top_k: int | None,
              all_scores: bool, chunk: int | None, overlap: int, aggregate: str | None) -> None:
    """Sentiment of each line: label and score."""
    _run("sentiment", env, inputs, model, run, top_k=top_k, all_scores=all_scores, chunk=chunk, overlap=overlap,
         aggregate=aggregate)


@_task("classify", tasks.zero_shot_options, tasks.classification_options, tasks.window_options)
def classify(env: Environment, inputs: InputOptions, model: ModelOptions, run: RunOptions, labels: str | None,
             template: str, multi_label: bool, top_k: int | None, all_scores: bool, chunk: int | None, overlap: int,
             aggregate: str | None) -> None:
    """Classify each line with a text-classification model (--model), or zero-shot into --labels."""
    windows = dict(chunk=chunk, overlap=overlap, aggregate=aggregate)
    if tasks.classify_task(model, labels, template) == "zero-shot":
        _run("zero-shot", env, inputs, model, run, labels=labels, template=template, multi_label=multi_label,
             **windows)
    else:
        _run("classify", env, inputs, model, run, top_k=top_k, all_scores=all_scores, **windows)


@_task("qa", tasks.qa_options)
def qa(env: Environment, inputs: InputOptions, model: ModelOptions, run: RunOptions, questions: tuple[str, ...],
       lines: bool, top_k: int, stride: int | None, max_answer_len: int, no_answer: bool | None) -> None:
    """Answer questions from each context (each file, or each line with --lines)."""
    inputs, no_answer = tasks.qa_settings(inputs, model, lines, no_answer)
    _run("qa", env, inputs, model, run, questions=list(questions), top_k=top_k, stride=stride,
         max_answer_len=max_answer_len, handle_impossible_answer=no_answer)


@_task("ner", tasks.ner_options)
def ner(env: Environment, inputs: InputOptions, model: ModelOptions, run: RunOptions, aggregation: str) -> None:
    """Named entities in each line."""
    _run("ner", env, inputs, model, run, aggregation=aggregation)


@_task("embed", tasks.embed_options)
def embed(env: Environment, inputs: InputOptions, model: ModelOptions, run: RunOptions, chunk: int | None,
          overlap: int, pool: str | None) -> None:
    """Embedding vector of each line (with --chunk, of each chunk, or pooled per line)."""
    _run("embed", env, inputs, model, run, chunk=chunk, overlap=overlap, pool=pool)


def _run(task: str, env: Environment, inputs: InputOptions, model: ModelOptions, run: RunOptions,
         **task_options: Any) -> None:
    if run.address is None:
        loopback_only_ray()
    if not run.verbose:
        quiet_ray()
    _require_ray()
    from ..api import load
    from ..integrations import raydata

    load_options = dict(revision=model.revision, precision=model.precision, offline=model.offline,
                        batch_size=model.batch_size, max_length=model.max_length, threads=model.threads,
                        **task_options)
    # Loaded here once before any cluster work: a wrong model or option fails with the task command's own
    # message, and this machine's cache holds the int8 model before its workers ask for it.
    pipeline = load(task, model.model, progress=not run.quiet, env=env, **load_options)
    window, limit, chunkable = pipeline.task.max_length, pipeline.runtime.max_length, pipeline.task.chunkable
    del pipeline  # the workers load their own
    # Ray Data's INFO lines (plans, log paths, and progress when stderr is no terminal) are for Ray's
    # developers, its warnings too unless --verbose (as quiet_ray's); a terminal still gets its progress bars.
    logging.getLogger("ray.data").setLevel(logging.WARNING if run.verbose else logging.ERROR)
    with raydata.connected(run.address, quiet=run.quiet, verbose=run.verbose):
        path, count, cut = raydata.run(
            inputs.read(env=env), task, model.model, load_options, run.output, run.format,  # type: ignore[arg-type]
            rows_per_block=WINDOW_BATCHES * model.batch_size, workers=run.workers,
            cpus_per_worker=model.threads or 1, quiet=run.quiet,
        )
    if not run.quiet:
        env.notice(f"{count:,} results in {path}")
    if cut:
        env.notice(tasks.truncation_notice(cut, count, window, limit, chunkable))


def _require_ray() -> None:
    try:
        import pyarrow  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError:
        raise SqueezeError(f"run-distributed needs Ray Data, which is not installed: {INSTALL_HINT}") from None
