"""`squeeze models`: pull, list, inspect and remove the models in squeeze's cache.

Only `pull` runs a model (to quantize it) and so imports torch; `list`, `info` and `rm` read manifests and
file sizes, so they answer instantly. Output follows the rest of the CLI: a table on a terminal, JSON
lines (or one JSON object for `info`) in a pipe, JSON always with `--json`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

import click

from ..checkpoint import heads
from ..environment import Environment
from ..errors import write_stderr
from ..io.writers import left_cut, print_json, print_rich, print_text, terminal_width
from . import views
from .options import complete_cached_models, json_option, model_argument, pass_environment


@click.group("models")
def models() -> None:
    """Manage squeeze's model cache: pull, list, info, rm.

    Models are downloaded into the standard Hugging Face cache (shared with transformers), quantized to
    int8 once, and kept in squeeze's cache (SQUEEZE_CACHE_DIR, else the user cache directory). MODEL is a
    Hub id (owner/name), a squeeze alias (see `squeeze models aliases`) or a local directory in Hub format.
    """


def _model_command(name: str, revision_help: str) -> Callable[[Callable[..., Any]], click.Command]:
    """A `models` subcommand about one MODEL at a --revision, given the run's Environment first."""
    return lambda function: models.command(name)(model_argument(revision_help)(pass_environment(function)))


@_model_command("pull", "Hub branch, tag or commit (default: main).")
@click.option("--force", is_flag=True, help="Quantize again even if the model is cached.")
@json_option("Print the entry as JSON.")
def pull(env: Environment, model: str, revision: str | None, force: bool, as_json: bool) -> None:
    """Download MODEL and quantize it to int8, unless it is cached already.

    A branch or tag is looked up on the Hub, so pulling again picks up a new commit. With HF_HUB_OFFLINE=1
    nothing is downloaded: a model in the Hugging Face cache is still quantized.
    """
    from ..assembly import fetch

    entry = fetch.pull(model, revision, force=force, progress=env.stderr_is_terminal, env=env)
    summary = entry.summary()
    if as_json or not env.stdout_is_terminal:
        print_json(env, summary)
    else:
        print_text(
            env,
            f"{_display_name(summary)} @ {summary['commit'][:12]}: {summary['architecture']} "
            f"({', '.join(summary['heads'])}), {_parameters(summary['parameters'])} parameters, "
            f"{views.size(summary['size_int8'])} int8 ({views.size(summary['size_source'])} source)"
        )


@models.command("list")
@json_option("JSON lines even on a terminal.")
@pass_environment
def list_models(env: Environment, as_json: bool) -> None:
    """List cached models, most recently used first.

    An entry whose files are missing or not their recorded size is marked (damaged), one whose files
    changed since the build (modified), from sizes and times alone, as a run checks them first.
    On a terminal too narrow for the whole table the source size, parameters, architecture, commit and
    last use are left out, in that order, so that model ids stay whole (`models info` shows them all).
    """
    from ..store import cache

    summaries = [entry.summary() for entry in cache.list_entries(env)]
    if as_json or not env.stdout_is_terminal:
        for summary in summaries:
            print_json(env, summary)
        return
    if not summaries:
        write_stderr(env.stderr, "No models cached yet; `squeeze models pull MODEL` adds one.\n")
        return
    from rich.table import Table

    now = time.time()
    rows = [{"model": (s["alias"] or (_short_path(s["id"]) if s["kind"] == "dir" else s["id"]))
             + ("" if s["state"] == "ok" else f" ({s['state']})"), "commit": s["commit"][:8],
             "arch": s["architecture"], "head": s["heads"][0], "params": _parameters(s["parameters"]),
             "int8": views.size(s["size_int8"]), "source": views.size(s["size_source"]),
             "last used": _ago(now, s["last_used"])} for s in summaries]
    table = Table(box=None, header_style="bold", pad_edge=False)
    shown = _fitting(list(rows[0]), rows, terminal_width())
    for column in shown:
        # The model column folds only if even the fewest columns do not fit; `models info` shows every detail.
        table.add_column(column, overflow="fold" if column == "model" else "ellipsis", no_wrap=column != "model",
                         justify="right" if column in ("params", "int8", "source") else "left")
    for row in rows:
        table.add_row(*(row[column] for column in shown))
    print_rich(env, table)
    if any(s["state"] == "damaged" for s in summaries):
        write_stderr(env.stderr, "squeeze: a damaged entry's files are missing or cut short; a run refuses it, and "
                                 "`squeeze models pull --force MODEL` rebuilds it\n")
    elif any(s["state"] == "modified" for s in summaries):
        write_stderr(env.stderr, "squeeze: a modified entry's files changed since it was built; a run checks their "
                                 "checksums (`squeeze models info --verify MODEL` does now)\n")


# Left out in this order when a terminal is too narrow for the whole table, so that model ids stay whole.
DROPPED_FIRST = ("source", "params", "arch", "commit", "last used")


def _fitting(columns: list[str], rows: list[dict[str, str]], width: int) -> list[str]:
    """`columns`, less as few of DROPPED_FIRST as it takes for the rows to fit in `width` cells."""
    from rich.cells import cell_len  # display width: a CJK character takes two cells

    widths = {column: max(cell_len(column), *(cell_len(row[column]) for row in rows)) for column in columns}
    shown = list(columns)
    for column in DROPPED_FIRST:
        if sum(widths[c] for c in shown) + 2 * (len(shown) - 1) <= width:
            break
        shown.remove(column)
    return shown


def _short_path(path: str, width: int = 40) -> str:
    """A directory for a narrow column: the home directory as ~, and a longer path by its end ("…/x/y")."""
    home = os.path.expanduser("~")
    if home not in ("", "/") and (path == home or path.startswith(home + os.sep)):
        path = "~" + path[len(home):]
    return left_cut(path, width)


@_model_command("info", "The cached revision to describe (default: main, else the latest).")
@click.option("--verify", is_flag=True, help="Check the sha256 of every file (slower); a mismatch exits with status 6.")
@json_option("JSON even on a terminal.")
def info(env: Environment, model: str, revision: str | None, verify: bool, as_json: bool) -> None:
    """Describe a cached model: source, commit, heads, labels, quantization, sizes, files.

    Every load checks that the files are complete (sizes and the weights header); --verify also checks
    their checksums, which catches damage inside the weights.
    """
    from ..store import cache

    entry = cache.info(model, revision, verify=verify, env=env)
    record: dict[str, Any] = {
        **entry.summary(),
        "labels": _labels(entry),
        "quantization": entry.manifest["quantization"],
        "squeezecli": entry.manifest.get("squeezecli"),
        "files": entry.manifest["files"],
        "verified": "sha256" if verify else "sizes",
    }
    if as_json or not env.stdout_is_terminal:
        print_json(env, record)
        return
    from rich.table import Table

    table = Table(box=None, show_header=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")  # the path is the detail worth copying: wrap it, never cut it
    rows = [
        ("model", _display_name(record)), ("source", f"{record['kind']}: {record['id']}"),
        ("revision", record["revision"] or "-"), ("commit", record["commit"]), ("architecture", record["architecture"]),
        ("heads", ", ".join(record["heads"])), ("labels", ", ".join(record["labels"]) or "-"),
        ("parameters", _parameters(record["parameters"])),
        ("quantization", record["quantization"]["scheme"]),
        ("size", f"{views.size(record['size_int8'])} int8, {views.size(record['size_source'])} source"),
        ("created", record["created"]), ("last used", record["last_used"] or "-"),
        ("checked", "all checksums match" if verify else "files complete (--verify checks checksums)"),
        ("path", record["path"]),
    ]
    for name, value in rows:
        table.add_row(name, str(value))
    print_rich(env, table)


@models.command("rm")
@click.argument("names", nargs=-1, metavar="[MODEL]...", shell_complete=complete_cached_models)
@click.option("--all", "remove_all", is_flag=True, help="Remove every cached model.")
@pass_environment
def rm(env: Environment, names: tuple[str, ...], remove_all: bool) -> None:
    """Remove cached models (every cached commit of each MODEL).

    MODEL is named as for `pull`, or by the key `models list --json` shows. The Hugging Face download
    cache is left alone; `huggingface-cli delete-cache` cleans that.
    """
    from ..store import cache

    if remove_all == bool(names):
        raise click.UsageError("give one or more MODELs, or --all")
    for entry in cache.remove(names, all=remove_all, env=env):
        summary = entry.summary()
        print_text(env, f"removed {_display_name(summary)} @ {summary['commit'][:12]} ({views.size(summary['size_int8'])})")


@models.command("aliases")
@json_option("JSON lines even on a terminal.")
@pass_environment
def aliases(env: Environment, as_json: bool) -> None:
    """The built-in model aliases and each task's default."""
    from ..store import catalogue

    defaults = set(catalogue.DEFAULTS.values())
    rows = [
        {"alias": m.alias, "id": m.repo_id, "task": m.task, "default": m.alias in defaults,
         "architecture": m.architecture, "head": m.head, "labels": list(m.labels), "description": m.description}
        for m in catalogue.MODELS
    ]
    if as_json or not env.stdout_is_terminal:
        for row in rows:
            print_json(env, row)
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table(box=None, header_style="bold", pad_edge=False, caption="* the task's default")
    table.add_column("alias", no_wrap=True)
    table.add_column("task", no_wrap=True)
    table.add_column("model", overflow="fold")
    for row in rows:
        task = f"{row['task']}*" if row["default"] else row["task"]
        table.add_row(row["alias"], task, f"{row['id']}\n[dim]{escape(row['description'])}[/dim]")
    print_rich(env, table)


# -- formatting ------------------------------------------------------------------------------------


def _display_name(summary: dict[str, Any]) -> str:
    return f"{summary['alias']} ({summary['id']})" if summary.get("alias") else summary["id"]


def _labels(entry: Any) -> list[str]:
    path = entry.path / "config.json"
    try:
        id2label = json.loads(path.read_text(encoding="utf-8")).get("id2label") or {}
        return [str(id2label[k]) for k in sorted(id2label, key=int)] if entry.head in heads.LABELLED else []
    except (OSError, ValueError, AttributeError):
        return []


def _parameters(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e5 else f"{n / 1e3:.1f}k"


def _ago(now: float, iso: str | None) -> str:
    if not iso:
        return "never"
    from datetime import datetime

    seconds = now - datetime.fromisoformat(iso).timestamp()
    for limit, unit, size in ((120, "s", 1), (7200, "min", 60), (172800, "h", 3600)):
        if seconds < limit:
            return "just now" if seconds < 60 else f"{seconds / size:.0f} {unit} ago"
    return f"{seconds / 86400:.0f} days ago"
