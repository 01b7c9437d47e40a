"""The task commands, generated from the table of tasks (tasks/table.py): one command per row, with its
options made Click options, then the model, input and output options (options.py). `run-distributed`
(distributed.py) and `eval` (evaluate.py) build theirs from the same rows with the helpers here, and
every front end loads a pipeline through `load`. torch is imported only once a command runs, never for
`--help` or completion (the table is torch-free).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import click

from ..environment import Environment
from ..errors import SqueezeError, UsageError
from ..io.batches import batched
from ..io.pipeline import InputOptions, OutputOptions, TableView, run_pipeline
from ..io.writers import left_cut, write_npy
from ..precision.names import AUTO
from ..tasks.table import TASKS, Given, Option, TaskSpec, check_chunks, check_ranking, kept
from ..tasks.table import chunk_options as chunk_option_specs
from .options import (
    ModelOptions,
    input_options,
    model_options,
    output_options,
    pass_environment,
    with_options,
)

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def load(task: str, model: ModelOptions, env: Environment, quiet: bool = False, **options: Any) -> Any:
    """The pipeline of `task` for the model options, notices to stderr: the one load of every command
    (the task commands, run-distributed, eval, similar and index), with its "loading" status line."""
    from ..api import load as load_pipeline
    from ..io.progress import STATUS_WIDTH, status_line
    from ..store import catalogue

    name = model.model or catalogue.default_for(task)
    precision = model.precision
    if precision == AUTO and not quiet and env.stderr_is_terminal:  # the line shows: say what auto runs
        precision = f"{AUTO}: {auto_choice(name, model, env)}"
    shows = env.stderr_is_terminal and not quiet  # Rich's cell widths (slow to import) only for a line that shows
    shown = left_cut(name, STATUS_WIDTH - len(f"loading  ({precision})…")) if shows else name  # a path by its end
    with status_line(env, f"loading {shown} ({precision})…", quiet):
        return load_pipeline(task, model.model, progress=not quiet, env=env, **load_arguments(model), **options)


def auto_choice(name: str, model: ModelOptions, env: Environment) -> str:
    """What --precision auto will run for the model (a cached int8 entry that won here, or the CPU's choice);
    a name the load will refuse is the load's to report."""
    from ..assembly.fetch import auto_precision
    from ..precision.cpu import auto_precision as cpu_choice
    from ..store.sources import resolve_source

    try:
        return auto_precision(resolve_source(name, model.revision), env)
    except SqueezeError:
        return cpu_choice().precision


def load_arguments(model: ModelOptions) -> dict[str, Any]:
    """`squeezecli.load`'s arguments for the model options (but the model's name): here and for
    run-distributed's workers, which load their own."""
    return dict(revision=model.revision, precision=model.precision, offline=model.offline,
                batch_size=model.batch_size, max_length=model.max_length, threads=model.threads)


def served(spec: TaskSpec, model: ModelOptions, env: Environment, quiet: bool, given: Given) -> Any:
    """The row run on the `squeeze serve` SQUEEZE_SERVER names (None: run here): the server reads the
    same options off the same table, and loads the model, which this process never does."""
    if not (env.server and model.server) or model.revision is not None:
        return None
    from ..io.progress import status_line
    from ..serve.client import connect
    from ..store import catalogue

    values = {option.name: given[option.name] for option in spec.options}
    shown = left_cut(model.model or catalogue.default_for(spec.resolve(given).name), 40)
    with status_line(env, f"loading {shown} ({model.precision}) on {env.server}…", quiet):
        remote = connect(env.server, spec.name, model.model, values, precision=model.precision, env=env,
                         max_length=model.max_length, batch_size=model.batch_size)
        for notice in remote.notices if remote else ():
            env.notice(notice.removeprefix("squeeze: "))
    return remote


def model_id(task: str, model: ModelOptions) -> str:
    """The Hub id (or path) of the model `task` runs: a catalogue alias by its repository."""
    from ..store import catalogue

    return catalogue.hub_id(model.model or catalogue.default_for(task))


# -- from the table's rows to Click ---------------------------------------------------------------------


def click_option(option: Option) -> Decorator:
    """The Click option of a table `Option`."""
    kwargs: dict[str, Any] = {"help": option.help, "metavar": option.metavar, "default": option.default,
                              "show_default": option.show_default, "multiple": option.multiple,
                              "required": option.required}
    if option.type == "flag" and not any("/" in flag for flag in option.flags):
        kwargs["is_flag"] = True
    elif option.type == "int":
        bounded = option.min is not None or option.max is not None
        kwargs["type"] = click.IntRange(min=option.min, max=option.max) if bounded else int
    elif option.type == "choice":
        kwargs["type"] = click.Choice(option.choices)
    return click.option(*option.flags, option.name, **kwargs)


def task_options(options: Sequence[Option]) -> Decorator:
    """The Click options of `options`, listed by --help in their order."""
    return lambda command: with_options(command, [click_option(option) for option in options])


def usage_error(error: UsageError) -> SqueezeError:
    """A check's refusal as the command line reports it: with no hint of its own, the hint is the
    command's --help (as for Click's own usage errors)."""
    if error.hint is None:
        return click.UsageError(error.message, click.get_current_context(silent=True))  # type: ignore[return-value]
    return error


def run_check(check: Callable[[Given], None], given: Given) -> None:
    """`check(given)`, its refusal reported as a usage error of this command."""
    try:
        check(given)
    except UsageError as error:
        raise usage_error(error) from None


def checked(spec: TaskSpec) -> Decorator:
    """Run the row's check on the options as given, before any other option is read: a wrong combination
    is refused before the inputs are opened and the model is loaded."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(command)
        def with_check(*args: Any, **kwargs: Any) -> Any:
            values = {option.name: kwargs[option.name] for option in spec.command_options if option.name in kwargs}
            given = spec.given(values, model=kwargs.get("model"), format=kwargs.get("fmt"))
            # The command line's own options a row's check may need (qa's --stride against --max-length).
            given = {**given, "max_length": kwargs.get("max_length"), "doc": kwargs.get("doc")}
            run_check(spec.check, given)
            if spec.ranked:
                run_check(check_ranking, given)
            return command(*args, **kwargs)

        return with_check

    return decorate


@dataclasses.dataclass(frozen=True)
class Plan:
    """What runs for a row's options: the row (classify --labels: zero-shot), its constructor arguments
    and the inputs as it reads them."""

    spec: TaskSpec
    arguments: dict[str, Any]
    inputs: InputOptions


def plan(spec: TaskSpec, model: ModelOptions, inputs: InputOptions, given: Given) -> Plan:
    """What a row runs for `given` (its options, checked): the task command, run-distributed and any
    later front end run the same row with the same arguments from here."""
    ran = spec.resolve(given)
    unit = ran.unit(given)
    if unit is not None and inputs.unit == "line":
        inputs = dataclasses.replace(inputs, unit=unit)  # type: ignore[arg-type]
    if ran.empty_documents:
        inputs = dataclasses.replace(inputs, empty_documents=True)
    return Plan(ran, ran.arguments(given, model_id(ran.name, model)), inputs)


def given_of(spec: TaskSpec, values: dict[str, Any], model: ModelOptions, fmt: str | None = None) -> dict[str, Any]:
    """A row's `Given`: its command's options' values, the model asked for and the output format."""
    return spec.given({option.name: values[option.name] for option in spec.command_options if option.name in values},
                      model=model.model, format=fmt)


def command_for(spec: TaskSpec) -> click.Command:
    """The command of a row: its own options, then the model, input and output options."""

    def run(env: Environment, inputs: InputOptions, output: OutputOptions, model: ModelOptions, **values: Any) -> None:
        run_task(spec, env, inputs, output, model, given_of(spec, values, model, output.format))

    function = output_options(pass_environment(run), extra_formats=spec.extra_formats)
    function = task_options(spec.command_options)(model_options(input_options(function)))
    return click.command(spec.name, help=spec.help)(checked(spec)(function))


def commands(rows: Iterable[TaskSpec] | None = None) -> list[click.Command]:
    """The task commands: one per row of the table that is a command."""
    return [command_for(spec) for spec in (TASKS.values() if rows is None else rows) if spec.command]


def run_task(spec: TaskSpec, env: Environment, inputs: InputOptions, output: OutputOptions, model: ModelOptions,
             given: Given) -> None:
    """A task command's run: load the row's task, then its results, through the writers or as npy."""
    if output.format == "npy" and env.stdout_is_terminal:
        raise SqueezeError("refusing to write a binary .npy array to a terminal", hint="redirect it: > vectors.npy")
    chosen = plan(spec, model, inputs, given)
    pipeline = (served(spec, model, env, output.quiet, given)
                or load(chosen.spec.name, model, env, output.quiet, **chosen.arguments))
    if output.format == "npy":
        vectors: list[list[float]] = []
        for batch in batched(chosen.inputs.read(env=env), model.batch_size):
            vectors.extend(row["embedding"] for row in pipeline.run_batch([record.text for record in batch]))
        write_npy(vectors, env.stdout.buffer, dimension=pipeline.task.dimension)
        return
    _run(pipeline, chosen.inputs, output, env, model.batch_size, chosen.spec.columns(given), chosen.spec.view(given),
         ranked=chosen.spec.ranked, best=kept(given) if chosen.spec.ranked else None)


def chunk_options(what: str) -> Decorator:
    """--chunk and --overlap for a command outside the table (similar, index build), checked before
    the command loads a model."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(command)
        def with_chunking(*args: Any, **kwargs: Any) -> Any:
            check_chunks()(kwargs)
            return command(*args, **kwargs)

        return task_options(chunk_option_specs(what))(with_chunking)

    return decorate


def _run(pipeline: Any, inputs: InputOptions, output: OutputOptions, env: Environment, batch_size: int,
         columns: list[str], table_view: TableView | None = None, ranked: bool = False, best: int | None = None
         ) -> None:
    texts = cut = 0
    remote = hasattr(pipeline, "window")  # on a server: whole windows, which it sorts and batches as we would here
    if remote:
        batch_size = pipeline.window(batch_size)

    def process_batch(items: list[Any]) -> list[dict[str, Any]]:
        nonlocal texts, cut
        results = pipeline.run_batch([item.text for item in items]) if remote else pipeline.run_prepared(items)
        texts += len(results)
        cut += sum(1 for result in results if result.get("truncated"))
        return results

    # In process, each window's texts are tokenized once (Task.prepare) and sorted by those tokens.
    run_pipeline(inputs, output, batch_size=batch_size,
                 length_of=(lambda record: pipeline.length_of(record.text)) if remote else (lambda item: item.length),
                 prepare=None if remote else (lambda records: pipeline.prepare([record.text for record in records])),
                 process_batch=process_batch, columns=columns, table_view=table_view, env=env, with_text=ranked,
                 best=best)
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
