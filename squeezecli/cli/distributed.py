"""`squeeze run-distributed TASK`: a task command's work on a Ray cluster, results into a directory.

One subcommand per command of the table of tasks (tasks/table.py), generated from the same row as the
task command (so options, help and checks match), the usual input and model options, and the run's:
--output, --address, --format, --workers. The Ray side lives in `integrations/raydata.py`; this module
imports neither Ray nor torch, since the CLI imports it at start-up. Without Ray installed the command
stops with one line naming the extra.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import click

from ..environment import Environment
from ..errors import SqueezeError
from ..io.batches import WINDOW_BATCHES
from ..io.pipeline import InputOptions
from ..tasks.table import TASKS, TaskSpec
from . import tasks
from .options import (
    MAX_REMOTE_THREADS,
    ModelOptions,
    check_threads,
    input_options,
    model_options,
    pass_environment,
    with_options,
)

INSTALL_HINT = "pip install 'squeezecli[ray]'"
THREADS_HELP = (f"CPU threads of each worker, at most the CPUs this process may use (with --address, whose "
                f"machines' CPUs are not known here: {MAX_REMOTE_THREADS}; default: 1).")


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
        check_threads(kwargs["model"].threads, remote=address is not None)  # a local cluster runs on these CPUs
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


def subcommand_for(spec: TaskSpec) -> click.Command:
    """The subcommand of a row of the table: the task command's own options, then the model, input and
    run options, in the order --help lists them; checked as the task command checks them."""

    def run(env: Environment, inputs: InputOptions, model: ModelOptions, run: RunOptions, **values: Any) -> None:
        chosen = tasks.plan(spec, model, inputs, tasks.given_of(spec, values, model))
        _run(chosen.spec.name, env, chosen.inputs, model, run, **chosen.arguments)

    function = run_options(pass_environment(run))
    function = tasks.task_options(spec.options)(model_options(threads_help=THREADS_HELP)(input_options(function)))
    return click.command(spec.name, help=spec.brief)(tasks.checked(spec)(function))


def add_subcommands(group: click.Group, rows: Iterable[TaskSpec] | None = None) -> click.Group:
    """`group` with a subcommand per row of the table that is a command."""
    for spec in TASKS.values() if rows is None else rows:
        if spec.command:
            group.add_command(subcommand_for(spec))
    return group


add_subcommands(run_distributed)


def _run(task: str, env: Environment, inputs: InputOptions, model: ModelOptions, run: RunOptions,
         **task_options: Any) -> None:
    if run.address is None:
        loopback_only_ray()
    if not run.verbose:
        quiet_ray()
    _require_ray()
    from ..integrations import raydata

    raydata.check_output(run.output, run.format)  # a results file squeeze may not write: before the model loads
    load_options = {**tasks.load_arguments(model), **task_options}
    # Loaded here once before any cluster work: a wrong model or option fails with the task command's own
    # message, and this machine's cache holds the int8 model before its workers ask for it. With this
    # machine's threads: --threads is each worker's (with --address, on machines that may have more CPUs).
    pipeline = tasks.load(task, dataclasses.replace(model, threads=None), env, run.quiet, **task_options)
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
