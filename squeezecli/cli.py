"""The `squeeze` command line: the Click group, the options every task shares, and the one place where
errors become exit statuses.

Task commands are thin: they take the option groups below as `inputs`, `output` and `model` objects, load
their model, and hand `run_pipeline` a function that turns a batch of records into result dicts.
Nothing imported here may import torch at module level: `squeeze --help` must stay fast.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

import click

from . import __version__
from .errors import ExitStatus, report
from .output import FORMATS, Format, open_writer, row_for
from .stream import (
    DecodeErrors,
    Record,
    Unit,
    check_paths,
    progress_for,
    read_records,
    run_windows,
)

DEFAULT_BATCH_SIZE = 32
# Records are read this many batches at a time and sorted by length, so each batch pads little.
WINDOW_BATCHES = 8

Precision = Literal["int8", "fp32"]


@dataclasses.dataclass(frozen=True)
class InputOptions:
    """What to read: FILEs ("-" or none for stdin), as lines, JSON lines (text in `field`) or documents."""

    files: tuple[str, ...]
    unit: Unit
    field: str | None
    errors: DecodeErrors

    def read(self, on_read: Callable[[int], None] | None = None) -> Iterator[Record]:
        return read_records(self.files, self.unit, self.field, self.errors, on_read)


@dataclasses.dataclass(frozen=True)
class OutputOptions:
    format: Format
    quiet: bool


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


def _with_options(command: Callable[..., Any], options: Sequence[Callable[[Any], Any]]) -> Callable[..., Any]:
    # Applied last to first so --help lists them in the order written.
    for option in reversed(options):
        command = option(command)
    return command


batch_size_option = click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=DEFAULT_BATCH_SIZE,
    show_default=True,
    help="Records per model call; results are printed one batch at a time.",
)


def input_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """FILE... plus --jsonl/--field/--doc/--errors, passed to the command as `inputs: InputOptions`.

    The paths are checked before the command body runs, so a typo fails before a model is loaded.
    """

    @functools.wraps(command)
    def with_inputs(*args: Any, files: tuple[str, ...], jsonl: bool, field: str | None, doc: bool,
                    errors: DecodeErrors, **kwargs: Any) -> Any:
        if doc and (jsonl or field is not None):
            raise click.UsageError("--doc reads whole files as text; it cannot be combined with --jsonl/--field")
        unit: Unit = "doc" if doc else "jsonl" if jsonl or field is not None else "line"
        check_paths(files)
        return command(*args, inputs=InputOptions(files, unit, field, errors), **kwargs)

    return _with_options(with_inputs, [
        click.argument("files", nargs=-1, metavar="[FILE]..."),
        click.option("--jsonl", is_flag=True,
                     help="Read JSON lines: the text is in --field, other fields are copied to the output "
                          "(unless a result field has the same name)."),
        click.option("--field", metavar="NAME",
                     help="The JSON field that holds the text (default: text). Implies --jsonl."),
        click.option("--doc", is_flag=True, help="Treat each whole file as one text instead of one text per line."),
        click.option("--errors", type=click.Choice(["strict", "replace"]), default="strict", show_default=True,
                     help="On invalid UTF-8: stop with an error, or replace the bad bytes with U+FFFD."),
    ])


def output_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--format and --quiet, passed to the command as `output: OutputOptions`."""

    @functools.wraps(command)
    def with_output(*args: Any, fmt: Format, quiet: bool, **kwargs: Any) -> Any:
        return command(*args, output=OutputOptions(fmt, quiet), **kwargs)

    return _with_options(with_output, [
        click.option("--format", "fmt", type=click.Choice(FORMATS), default="auto", show_default=True,
                     help="auto is a table on a terminal and JSON lines in a pipe or file."),
        click.option("-q", "--quiet", is_flag=True, help="No progress bar."),
    ])


def model_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--model, --revision, --batch-size, --max-length, --threads, --precision, --offline, passed to the
    command as `model: ModelOptions`."""

    @functools.wraps(command)
    def with_model(*args: Any, model: str | None, revision: str | None, batch_size: int, max_length: int | None,
                   threads: int | None, precision: Precision, offline: bool, **kwargs: Any) -> Any:
        options = ModelOptions(model, revision, batch_size, max_length, threads, precision, offline)
        return command(*args, model=options, **kwargs)

    return _with_options(with_model, [
        click.option("-m", "--model", metavar="NAME", help="Hub model id or local directory (default: the task's)."),
        click.option("--revision", metavar="REV", help="Hub branch, tag or commit of the model."),
        batch_size_option,
        click.option("--max-length", type=click.IntRange(min=1), metavar="TOKENS",
                     help="Truncate texts to this many tokens (default: the model's limit)."),
        click.option("--threads", type=click.IntRange(min=1), metavar="N",
                     help="CPU threads for the model (default: torch's choice)."),
        click.option("--precision", type=click.Choice(["int8", "fp32"]), default="int8", show_default=True,
                     help="int8: dynamically quantized linear layers, faster and smaller; fp32: exact."),
        click.option("--offline", is_flag=True, help="Use only the local cache; never contact the Hub."),
    ])


def run_pipeline(
    inputs: InputOptions,
    output: OutputOptions,
    *,
    batch_size: int,
    length_of: Callable[[Record], int],
    process_batch: Callable[[list[Record]], Sequence[dict[str, Any]]],
    columns: Sequence[str] | None = None,
) -> None:
    """Read the inputs, run `process_batch` on length-sorted batches, write rows in input order.

    `length_of` estimates a record's token count; `columns` picks the table's columns (see open_writer).
    """
    with progress_for(inputs.files, quiet=output.quiet) as progress:
        records = inputs.read(on_read=progress.advance)
        writer = open_writer(output.format, columns)
        for window in run_windows(records, length_of, batch_size, WINDOW_BATCHES * batch_size, process_batch, live=True):
            writer.write_batch([row_for(record, result) for record, result in window])


class _StdoutClosed(Exception):
    """A BrokenPipeError on its way out of a command, disguised so Click's main() does not handle it:
    Click would exit 1 by itself, and the exit status is decided in `SqueezeGroup.main`."""


class SqueezeGroup(click.Group):
    """The `squeeze` group; its `main` is the one place that turns exceptions into exit statuses."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError as exc:
            raise _StdoutClosed() from exc

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        try:
            returned = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            # Click returns an int only from ctx.exit(n) (--help, --version); commands return None.
            status = returned if isinstance(returned, int) else ExitStatus.OK
        except SystemExit:
            raise
        except BaseException as exc:  # noqa: BLE001 -- this is the top level: everything gets a status
            status = exit_status_for(exc)
        if standalone_mode:
            sys.exit(int(status))
        return int(status)


def exit_status_for(exc: BaseException) -> int:
    """Report `exc` the way a shell user expects, and return the process's exit status.

    - squeeze's own errors: one line and a hint (`errors.report`), their own status;
    - usage errors: Click's message and usage line, status 2;
    - stdout closed by the reader (`squeeze ... | head`): nothing printed, status 141, what the shell
      reports for a process killed by SIGPIPE, so `set -o pipefail` scripts see the truncation;
    - Ctrl-C: nothing printed, status 130;
    - anything else is a bug: one line "squeeze: internal error", the traceback with SQUEEZE_DEBUG=1.
    """
    if isinstance(exc, (_StdoutClosed, BrokenPipeError)):
        _silence_stdout()
        return ExitStatus.BROKEN_PIPE
    if isinstance(exc, (click.exceptions.Abort, KeyboardInterrupt)):
        return ExitStatus.INTERRUPTED
    if isinstance(exc, click.ClickException):
        exc.show()
        return exc.exit_code
    return report(exc)


def _silence_stdout() -> None:
    # Python flushes stdout once more at exit; if anything is still buffered for the closed pipe, that flush
    # prints "Exception ignored ... BrokenPipeError" (the fix the Python docs give for SIGPIPE).
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # a test runner's capture has no descriptor
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


@click.group(
    cls=SqueezeGroup,
    name="squeeze",
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="Exit status: 0 ok, 1 error, 2 usage, 3 input, 4 model, 5 network, 6 cache, "
           "130 interrupted, 141 output closed. SQUEEZE_DEBUG=1 prints tracebacks.",
)
@click.version_option(__version__, "--version", prog_name="squeeze", message="%(prog)s %(version)s")
def squeeze() -> None:
    """Compact encoder NLP from the shell: sentiment, zero-shot classification, extractive QA, NER and
    embeddings with int8 SqueezeBERT-family models on CPU.

    Reads FILEs or stdin one text per line (or JSON lines, or whole documents), in streaming batches;
    prints a table on a terminal and JSON lines in a pipe.
    """


@squeeze.command("echo-lines", hidden=True)
@input_options
@output_options
@batch_size_option
def echo_lines(inputs: InputOptions, output: OutputOptions, batch_size: int) -> None:
    """Echo each record with its length, through the same input -> batches -> output path as the tasks.

    No model: this exercises the plumbing in tests and when debugging input problems.
    """

    def process_batch(batch: list[Record]) -> list[dict[str, Any]]:
        return [{"text": record.text, "length": len(record.text)} for record in batch]

    run_pipeline(inputs, output, batch_size=batch_size, length_of=lambda record: len(record.text),
                 process_batch=process_batch)


def main() -> None:
    """Console-script entry point."""
    status = squeeze.main(prog_name="squeeze", standalone_mode=False)
    if any(t.name == "squeeze-reader" and t.is_alive() for t in threading.enumerate()):
        # A reader thread blocked on stdin (Ctrl-C during `tail -f | squeeze`) holds stdin's lock, and
        # interpreter shutdown would abort on it: flush what we wrote and leave without finalising.
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(status)
    sys.exit(status)
