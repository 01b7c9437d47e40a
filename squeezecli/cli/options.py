"""The options every task command shares, as decorators (simonw/llm style): a command takes them as
`inputs`, `output` and `model` objects. Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any, Literal

import click

from ..environment import Environment, usable_cpus
from ..errors import SqueezeError, UsageError
from ..io.batches import DEFAULT_BATCH_SIZE, MAX_BATCH_SIZE
from ..io.pipeline import InputOptions, OutputOptions
from ..io.records import DecodeErrors, OnError, Unit, check_paths
from ..io.writers import FORMATS, Format
from ..precision.names import AUTO, PRECISIONS, Precision, help_text


@dataclasses.dataclass(frozen=True)
class ModelOptions:
    """Which model to run and how; interpreted by the model loader, not here."""

    model: str | None  # None: the task's default model
    revision: str | None
    batch_size: int
    max_length: int | None  # None: the model's own limit
    threads: int | None  # None: torch's default
    precision: Precision
    offline: bool
    server: bool = True  # --no-server: False (run here even when SQUEEZE_SERVER names a server)


def with_options(command: Callable[..., Any], options: Sequence[Callable[[Any], Any]]) -> Callable[..., Any]:
    """`command` with the Click `options` applied, listed by --help in the order given."""
    for option in reversed(options):
        command = option(command)
    return command


batch_size_option = click.option(
    "--batch-size",
    type=click.IntRange(1, MAX_BATCH_SIZE),
    default=DEFAULT_BATCH_SIZE,
    show_default=True,
    help="Records per model call; results are printed one batch at a time.",
)


# --threads of a model that runs on other machines (run-distributed --address): their CPUs are not known
# here, so a fixed ceiling, about the hardware threads of the largest single machines.
MAX_REMOTE_THREADS = 256


def check_threads(threads: int | None, *, remote: bool = False) -> None:
    """--threads at most the CPUs this process may use: more threads than CPUs only take turns (on 2 CPUs,
    999 threads ran 20 times slower). The machine's limit, so it cannot be a Click range in --help. For a
    model run on other machines (`remote`), at most MAX_REMOTE_THREADS."""
    if threads is None:
        return
    if remote:
        if threads > MAX_REMOTE_THREADS:
            raise UsageError(f"--threads {threads} is more than {MAX_REMOTE_THREADS}, the most a worker of a cluster "
                             "may be given", hint=f"give 1 to {MAX_REMOTE_THREADS}, at most the CPUs of the cluster's "
                             "largest machine")
        return
    cpus = usable_cpus()
    if threads > cpus:
        raise UsageError(f"--threads {threads} is more than the {cpus} CPU{'s' if cpus > 1 else ''} this process may use",
                         hint=f"give 1 to {cpus}, or leave --threads out for torch's choice")


def complete_file_names(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """Tab completion for FILE parameters: hand over to the shell's own file-name completion."""
    from click.shell_completion import CompletionItem

    return [CompletionItem(incomplete, type="file")]


def complete_models(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """Tab completion for a model to run: the catalogue's aliases, then the Hub ids cached here (squeeze's
    int8 entries and the Hugging Face cache's downloads); a path is left to the shell's directory
    completion. Reads names only: no torch, no network."""
    from click.shell_completion import CompletionItem

    from ..store import catalogue

    if incomplete.startswith((".", "/", "~")):
        return [CompletionItem(incomplete, type="dir")]
    offered = {model.alias: model.description for model in catalogue.MODELS}
    env = Environment.from_os()
    try:
        downloads = sorted(path.name[len("models--"):].replace("--", "/", 1)
                           for path in env.hf_cache_dir.glob("models--*--*") if path.is_dir())
    except OSError:
        downloads = []
    for name in [*_cached_names(env), *downloads]:
        offered.setdefault(name, "cached")
    return [CompletionItem(name, help=help) for name, help in offered.items() if name.startswith(incomplete)]


def complete_cached_models(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """Tab completion for a model in squeeze's cache (`models info`, `models rm`): aliases and Hub ids."""
    from click.shell_completion import CompletionItem

    names = _cached_names(Environment.from_os())
    return [CompletionItem(name, help="cached") for name in names if name.startswith(incomplete)]


def _cached_names(env: Environment) -> list[str]:
    """The aliases and Hub ids of squeeze's cache entries, most recently used first (none if unreadable)."""
    from ..store import cache

    try:
        entries = cache.list_entries(env)
    except (OSError, SqueezeError):
        return []
    names = [name for entry in entries if entry.kind == "hub" for name in (entry.alias, entry.source_id) if name]
    return list(dict.fromkeys(names))


def input_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """FILE... plus --jsonl/--csv/--tsv/--parquet/--field/--doc/--errors, passed to the command as
    `inputs: InputOptions`.

    The paths are checked before the command body runs, so a typo fails before a model is loaded.
    """

    @functools.wraps(command)
    def with_inputs(*args: Any, files: tuple[str, ...], jsonl: bool, csv: bool, tsv: bool, parquet: bool,
                    field: str | None, doc: bool, errors: DecodeErrors, on_error: OnError, **kwargs: Any) -> Any:
        chosen = [name for name, given in (("--jsonl", jsonl), ("--csv", csv), ("--tsv", tsv), ("--parquet", parquet),
                                           ("--doc", doc)) if given]
        if len(chosen) > 1:
            raise click.UsageError(f"{chosen[0]} and {chosen[1]} are different input formats: give one")
        if field is not None and not field.strip():
            raise UsageError("--field is empty", hint="name the JSON field or column that holds the text (default: text)")
        if doc and field is not None:
            raise click.UsageError("--doc reads whole files as text; it cannot be combined with --field")
        unit: Unit = ("doc" if doc else "csv" if csv else "tsv" if tsv else "parquet" if parquet
                      else "jsonl" if jsonl or field is not None else "line")
        check_paths(files)
        return command(*args, inputs=InputOptions(files, unit, field, errors, on_error), **kwargs)

    return with_options(with_inputs, [
        click.argument("files", nargs=-1, metavar="[FILE]...", shell_complete=complete_file_names),
        click.option("--jsonl", is_flag=True,
                     help="Read JSON lines: the text is in --field, other fields are copied to the output "
                          "(unless a result field has the same name)."),
        click.option("--csv", is_flag=True,
                     help="Read CSV with a header row: the text is in the --field column, the other columns are "
                          "copied to the output."),
        click.option("--tsv", is_flag=True, help="Read TSV (tab-separated) like --csv."),
        click.option("--parquet", is_flag=True,
                     help="Read Parquet like --csv (needs pyarrow: the parquet extra); rows are named by number."),
        click.option("--field", metavar="NAME",
                     help="The JSON field or CSV/TSV/Parquet column that holds the text (default: text). Alone, "
                          "implies --jsonl."),
        click.option("--doc", is_flag=True, help="Treat each whole file as one text instead of one text per line."),
        click.option("--errors", type=click.Choice(["strict", "replace"]), default="strict", show_default=True,
                     help="On invalid UTF-8: stop with an error, or replace the bad bytes with U+FFFD."),
        click.option("--on-error", type=click.Choice(["stop", "skip"]), default="stop", show_default=True,
                     help="On a malformed record (a bad JSON line, a CSV row that does not fit the header, invalid "
                          "UTF-8): stop, or leave it out and count it in one line on stderr at the end."),
    ])


def output_options(command: Callable[..., Any] | None = None, *, extra_formats: Sequence[str] = ()) -> Any:
    """--format and --quiet, passed to the command as `output: OutputOptions`.

    `@output_options(extra_formats=["npy"])` adds formats a command writes itself.
    """
    if command is None:
        return functools.partial(output_options, extra_formats=extra_formats)

    @functools.wraps(command)
    def with_output(*args: Any, fmt: Format, quiet: bool, fields: str | None, no_color: bool, **kwargs: Any) -> Any:
        chosen = None
        if fields is not None:
            chosen = tuple(dict.fromkeys(name.strip() for name in fields.split(",") if name.strip()))
            if not chosen:
                raise click.BadParameter("names no field", param_hint="--fields")
        return command(*args, output=OutputOptions(fmt, quiet, chosen, color=not no_color), **kwargs)

    return with_options(with_output, [
        click.option("--format", "fmt", type=click.Choice([*FORMATS, *extra_formats]), default="auto", show_default=True,
                     help="auto is a table on a terminal and JSON lines in a pipe or file."),
        click.option("--fields", metavar="A,B,C",
                     help="Only these fields, in this order (e.g. line,label,text; text is the input text); a row "
                          "without one has null (an empty cell)."),
        click.option("--quiet", is_flag=True, help="No progress bar."),
        click.option("--no-color", is_flag=True, help="No colour in tables (as NO_COLOR=1 does)."),
    ])


def model_options(command: Callable[..., Any] | None = None, *, precision: bool = True,
                  threads_help: str | None = None) -> Any:
    """--model, --revision, --batch-size, --max-length, --threads, --precision, --offline, passed to the
    command as `model: ModelOptions`. `@model_options(precision=False)` leaves out --precision (the
    command has its own; `model.precision` is then "auto"). --threads is checked against this process's
    CPUs, unless `threads_help` says how a command that may run the model elsewhere checks it itself."""
    if command is None:
        return functools.partial(model_options, precision=precision, threads_help=threads_help)

    @functools.wraps(command)
    def with_model(*args: Any, model: str | None, revision: str | None, batch_size: int, max_length: int | None,
                   threads: int | None, offline: bool, server: bool, **kwargs: Any) -> Any:
        chosen: Precision = kwargs.pop("precision") if precision else AUTO
        if model is not None and not model.strip():  # `-m ""`, `-m "$UNSET"`: not the default by accident
            raise click.BadParameter("is empty; leave it out for the task's default model", param_hint="'-m' / '--model'")
        if threads_help is None:
            check_threads(threads)
        options = ModelOptions(model, revision, batch_size, max_length, threads, chosen, offline, server)
        return command(*args, model=options, **kwargs)

    return with_options(with_model, [
        click.option("-m", "--model", metavar="NAME", shell_complete=complete_models,
                     help="Hub model id or local directory (default: the task's)."),
        click.option("--revision", metavar="REV", help="Hub branch, tag or commit of the model."),
        batch_size_option,
        click.option("--max-length", type=click.IntRange(min=1), metavar="TOKENS",
                     help="Truncate texts to this many tokens (default: the model's limit)."),
        click.option("--threads", type=click.IntRange(min=1), metavar="N",
                     help=threads_help or "CPU threads for the model, at most the CPUs this process may use (default: "
                                          "torch's choice)."),
        *([click.option("--precision", type=click.Choice(PRECISIONS), default=AUTO, show_default=True,
                        help=help_text())] if precision else []),
        click.option("--offline", is_flag=True, help="Use only the local cache; never contact the Hub."),
        click.option("--no-server", "server", flag_value=False, default=True,
                     help="Run here even when SQUEEZE_SERVER names a `squeeze serve` to run through."),
    ])


def model_argument(revision_help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """MODEL (an alias, a Hub id or a local directory) and --revision, for the `models` commands."""
    return lambda command: with_options(command, [
        click.argument("model", shell_complete=complete_models),
        click.option("--revision", metavar="REV", help=revision_help),
    ])


def json_option(help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """--json: JSON output even on a terminal, passed as `as_json`."""
    return click.option("--json", "as_json", is_flag=True, help=help)


def pass_environment(command: Callable[..., Any]) -> Callable[..., Any]:
    """Pass the command the `Environment` the group built for this run (`env`), as its first argument."""

    @functools.wraps(command)
    def with_environment(*args: Any, **kwargs: Any) -> Any:
        env = click.get_current_context().find_object(Environment) or Environment.from_os()
        return command(env, *args, **kwargs)

    return with_environment
