"""The `squeeze` command line: the Click group, the `Environment` each run gets, and the one place where
errors become exit statuses. Task commands live in tasks.py, the model store's in models.py, the commands
about squeeze itself in tools.py. Nothing imported here may import torch: `squeeze --help` must stay fast.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
import threading
from collections.abc import Sequence
from typing import Any

import click

from .._version import __version__
from ..environment import Environment, choose_library_settings
from ..errors import ExitStatus, OutputError, SqueezeError, report
from ..io.batches import READER_THREAD
from ..io.pipeline import InputOptions, OutputOptions, run_pipeline
from ..io.record import Record
from .options import batch_size_option, input_options, output_options, pass_environment


class _StdoutClosed(Exception):
    """A BrokenPipeError on its way out of a command, disguised so Click's main() does not handle it:
    Click would exit 1 by itself, and the exit status is decided in `SqueezeGroup.main`."""


class SqueezeGroup(click.Group):
    """The `squeeze` group; its `main` is the one place that turns exceptions into exit statuses."""

    def invoke(self, ctx: click.Context) -> Any:
        ctx.obj = Environment.from_os()  # read now: a test runner swaps sys.stdout just before
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
            status = exit_status_for(exc, Environment.from_os())
        if standalone_mode:
            sys.exit(int(status))
        return int(status)


# Click 8.2 and later raise this for a bare group with no_args_is_help; 8.1 has no such class (an empty tuple
# matches nothing).
_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


def exit_status_for(exc: BaseException, env: Environment) -> int:
    """Report `exc` the way a shell user expects, and return the process's exit status.

    - squeeze's own errors and Click's (a bad option): one line and a hint (`errors.report`), their
      own status (2 for Click's usage errors);
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
    if isinstance(exc, _NO_ARGS_IS_HELP):
        # Bare `squeeze` (or `squeeze models`): its help, as git, cargo and docker print theirs; asking
        # what a command offers is not an error. (Click 8.1 prints it and exits 0 by itself.)
        click.echo(exc.ctx.get_help(), file=env.stdout)
        return ExitStatus.OK
    if isinstance(exc, click.ClickException):
        # In squeeze's own style, not Click's "Usage: ... Error: ...": one message style for every error.
        context = getattr(exc, "ctx", None)
        listed = "commands" if context and isinstance(context.command, click.Group) else "options"
        hint = f"'{context.command_path} --help' lists the {listed}" if isinstance(exc, click.UsageError) and context else None
        report(SqueezeError(exc.format_message(), hint=hint), stderr=env.stderr)
        return exc.exit_code
    return report(exc, stderr=env.stderr, debug=env.debug)


STDOUT_FD = 1


def _reopen_closed_descriptors() -> set[int]:
    """Put /dev/null on whichever of descriptors 0-2 the process was started without (`<&-`, `>&-`,
    `2>&-`), and return those. Otherwise the next file opened (a model, a cache entry being written)
    would get that number, and whatever a library writes to "stderr" would land in it."""
    closed = set()
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            closed.add(fd)
    for fd in sorted(closed):
        null = os.open(os.devnull, os.O_RDWR)
        if null != fd:
            os.dup2(null, fd)
            os.close(null)
    return closed


def _flush_stdout(status: int) -> int:
    """Flush what is left for stdout now, while a failure can still get its message and status (at exit,
    Python would print "Exception ignored" and exit 120)."""
    if sys.stdout is None:
        return status
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
        return ExitStatus.BROKEN_PIPE if status == ExitStatus.OK else status
    except (OSError, ValueError) as exc:
        _silence_stdout()
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        failed = OutputError(f"cannot write to stdout: {detail}")
        return report(failed, stderr=sys.stderr) if status == ExitStatus.OK else status
    return status


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
    epilog="Exit status: " + ", ".join(f"{int(status)} {status.name.lower().replace('_', ' ')}" for status in ExitStatus)
           + " (squeeze help exit-status). SQUEEZE_DEBUG=1 prints tracebacks.",
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
@pass_environment
def echo_lines(env: Environment, inputs: InputOptions, output: OutputOptions, batch_size: int) -> None:
    """Echo each record with its length, through the same input -> batches -> output path as the tasks.

    No model: this exercises the plumbing in tests and when debugging input problems.
    """

    def process_batch(batch: list[Record]) -> list[dict[str, Any]]:
        return [{"text": record.text, "length": len(record.text)} for record in batch]

    run_pipeline(inputs, output, batch_size=batch_size, length_of=lambda record: len(record.text),
                 process_batch=process_batch, env=env)


def _register() -> None:
    from .distributed import run_distributed
    from .models import models
    from . import search, tasks
    from .evaluate import evaluate
    from .help import help_command
    from .serve import serve
    from .tools import completion, doctor

    for command in [*tasks.commands(), *search.COMMANDS, evaluate]:
        squeeze.add_command(command)
    squeeze.add_command(help_command)
    squeeze.add_command(models)
    squeeze.add_command(completion)
    squeeze.add_command(doctor)
    squeeze.add_command(run_distributed)
    squeeze.add_command(serve)


_register()


def main() -> None:
    """Console-script entry point."""
    # Before anything loads torch: on a busy machine spinning OpenMP threads steal the slices the working
    # ones wait for (a pull took 160 s instead of 16 s at load 7 on 2 cores); on an idle one they are faster.
    choose_library_settings()  # and oneDNN's primitive cache size
    closed = _reopen_closed_descriptors()
    if STDOUT_FD in closed:
        # Every command prints its results, and nothing can read them.
        error = OutputError("stdout is closed", hint="redirect it to a file or /dev/null instead")
        sys.exit(report(error, stderr=sys.stderr))
    status = squeeze.main(prog_name="squeeze", standalone_mode=False)
    status = _flush_stdout(status)
    if any(t.name == READER_THREAD and t.is_alive() for t in threading.enumerate()):
        # A reader thread blocked on stdin (Ctrl-C during `tail -f | squeeze`) holds stdin's lock, and
        # interpreter shutdown would abort on it: flush what we wrote and leave without finalising.
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(status)
    # Everything alive now (torch's modules, the model) dies with the process: out of the garbage
    # collector's sight, the interpreter's exit does not walk it (a one-line run: 0.3-0.5 s less).
    gc.freeze()
    sys.exit(status)
