"""`squeeze help [TOPIC|COMMAND]` and the man page, generated from the Click commands themselves and the
facts' own homes (errors.EXIT_MEANINGS, environment.VARIABLES), so they cannot drift from the code.

    squeeze help                 the topics and commands
    squeeze help formats         input and output formats (from the task commands' options)
    squeeze help exit-status     what each exit status means
    squeeze help environment     the variables squeeze reads
    squeeze help sentiment       a command's --help
    squeeze help --man           the man page, troff (docs/squeeze.1 is this, committed)
"""

from __future__ import annotations

import re

import click

from .._version import __version__
from ..environment import VARIABLES, Environment
from ..errors import EXIT_MEANINGS
from ..io.writers import print_text
from .options import pass_environment

FORMAT_OPTIONS = ("--jsonl", "--csv", "--tsv", "--parquet", "--field", "--doc", "--errors", "--on-error", "--format",
                  "--fields", "--no-color")


def _root(ctx: click.Context) -> click.Group:
    return ctx.find_root().command  # type: ignore[return-value]


def _options_of(command: click.Command, names: tuple[str, ...]) -> list[tuple[str, str]]:
    found = []
    for param in command.params:
        if isinstance(param, click.Option) and any(opt in names for opt in param.opts):
            record = param.get_help_record(click.Context(command))
            if record:
                found.append(record)
    return found


def topics(root: click.Group) -> dict[str, str]:
    """Each topic's text, generated now."""
    sentiment = root.commands["sentiment"]
    formats = "\n".join(f"  {flags}\n      {text}" for flags, text in _options_of(sentiment, FORMAT_OPTIONS))
    return {
        "formats": "Input and output, for every task command (`squeeze TASK --help` has the rest):\n\n" + formats,
        "exit-status": "\n".join(f"  {int(status):>3}  {meaning}" for status, meaning in EXIT_MEANINGS.items()),
        "environment": "\n".join(f"  {name}\n      {effect}" for name, effect in VARIABLES.items()),
    }


@click.command("help")
@click.argument("topic", required=False, metavar="[TOPIC|COMMAND]")
@click.option("--man", is_flag=True, help="Print the man page (troff) of every command and topic.")
@click.pass_context
@pass_environment
def help_command(env: Environment, ctx: click.Context, topic: str | None, man: bool) -> None:
    """Help on a topic (formats, exit-status, environment) or a command; --man prints the man page."""
    root = _root(ctx)
    if man:
        print_text(env, man_page(root).rstrip("\n"))
        return
    pages = topics(root)
    if topic is None:
        commands = ", ".join(name for name, command in root.commands.items() if not command.hidden)
        print_text(env, f"Topics: {', '.join(pages)}.\nCommands: {commands}.\nsqueeze help TOPIC|COMMAND shows one.")
        return
    if topic in pages:
        print_text(env, pages[topic])
        return
    command = root.commands.get(topic)
    if command is None or command.hidden:
        raise click.BadParameter(f"no topic or command {topic!r} (topics: {', '.join(pages)})", param_hint="TOPIC")
    with click.Context(command, info_name=topic, parent=ctx.find_root()) as context:
        print_text(env, command.get_help(context))


def man_page(root: click.Group) -> str:
    """The man page of `squeeze`: synopsis, every public command's help (subcommands too), the topics."""
    lines = [f'.TH SQUEEZE 1 "" "squeeze {__version__}" "User Commands"', ".SH NAME",
             "squeeze \\- " + _troff(" ".join((root.help or "").split("\n\n")[0].split())), ".SH SYNOPSIS",
             ".B squeeze", "COMMAND [OPTIONS] [FILE]...", ".SH COMMANDS"]
    for name, command in root.commands.items():
        if command.hidden or name == "help":
            continue
        for path, leaf in _leaves(name, command):
            parent = click.Context(root, info_name="squeeze", **root.context_settings)  # -h as well as --help
            with click.Context(leaf, info_name=path, parent=parent) as context:
                usage = " ".join(leaf.collect_usage_pieces(context))
                lines += [".SS " + _troff(f"squeeze {path} {usage}"), _paragraphs(leaf.help or "")]
                for param in leaf.get_params(context):
                    record = param.get_help_record(context)
                    if record:
                        lines += [".TP", ".B " + _troff(record[0]), _troff(record[1])]
    for title, text in topics(root).items():
        lines += [f".SH {title.upper().replace('-', ' ')}", ".nf", _troff(text), ".fi"]
    return "\n".join(lines) + "\n"


def _leaves(name: str, command: click.Command) -> list[tuple[str, click.Command]]:
    if isinstance(command, click.Group):
        return [(f"{name} {sub}", leaf) for sub, child in command.commands.items() if not child.hidden
                for _, leaf in _leaves(sub, child)]
    return [(name, command)]


def _paragraphs(text: str) -> str:
    text = re.sub(r"^\s*\x08\s*$", "", text, flags=re.MULTILINE)  # Click's \b "keep this paragraph" marker
    return "\n.PP\n".join(_troff(" ".join(part.split())) for part in text.split("\n\n") if part.strip())


def _troff(text: str) -> str:
    """Text safe in a troff line: backslashes doubled, a leading dot or quote escaped."""
    escaped = text.replace("\\", "\\\\").replace("-", "\\-")
    return "\n".join(("\\&" + line if line.startswith((".", "'")) else line) for line in escaped.splitlines())
