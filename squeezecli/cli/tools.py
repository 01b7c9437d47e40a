"""`squeeze completion` and `squeeze doctor`: the commands about squeeze itself rather than about text.

`completion` prints Click's completion script for a shell; the script calls `squeeze` back with
_SQUEEZE_COMPLETE set, and that path (the whole CLI module tree) must never import torch, or every Tab
would pay for it. `doctor` reports what a bug report needs: versions, torch threads, which int8 kernels
exist, where the caches are and how big, whether the Hub answers, and the offline and token settings
(whether a token is set, never the token).
"""

from __future__ import annotations

import os
import stat
import sys
import time
from pathlib import Path
from typing import Any

import click

from .._version import __version__
from ..environment import KERNEL_ENV, OFFLINE_VARIABLES, Environment
from ..io.writers import print_json, print_rich, print_text
from . import views
from .options import json_option, pass_environment

PROG_NAME = "squeeze"
COMPLETE_VAR = "_SQUEEZE_COMPLETE"  # what Click derives from PROG_NAME; the scripts name it
SHELLS = ("bash", "zsh", "fish")

# Long enough for a slow link to answer a HEAD, short enough that `doctor` never seems to hang.
HUB_TIMEOUT_SECONDS = 3.0


# -- completion -------------------------------------------------------------------------------------


def completion_script(cli: click.Command, shell: str) -> str:
    """The completion script for `shell`, exactly as `_SQUEEZE_COMPLETE={shell}_source squeeze` prints it.

    Always for the program name "squeeze", whatever this process was started as (`python -m squeezecli`,
    a venv path): the script is installed for the command users type.
    """
    from click.shell_completion import get_completion_class

    completion_class = get_completion_class(shell)
    if completion_class is None:
        raise ValueError(f"Click has no completion for {shell!r}")
    return completion_class(cli, {}, PROG_NAME, COMPLETE_VAR).source()


@click.command()
@click.argument("shell", type=click.Choice(SHELLS), required=False, metavar="[SHELL]")
@click.pass_context
@pass_environment
def completion(env: Environment, ctx: click.Context, shell: str | None) -> None:
    """Print the Tab-completion script for a shell.

    SHELL is bash, zsh or fish (default: the shell in $SHELL). Install it once:

    \b
      bash:  squeeze completion bash > ~/.local/share/bash-completion/completions/squeeze
      zsh:   squeeze completion zsh > ~/.zfunc/_squeeze   (with ~/.zfunc in $fpath before compinit)
      fish:  squeeze completion fish > ~/.config/fish/completions/squeeze.fish

    Or load it for the current session only: eval "$(squeeze completion bash)".
    """
    shell = shell or (env.shell if env.shell in SHELLS else None)
    if shell is None:
        raise click.UsageError(f"cannot tell the shell from $SHELL; name it: {', '.join(SHELLS)}")
    # Bytes and no added newline, as Click's own `_SQUEEZE_COMPLETE=..._source` writes it: a text stream on
    # Windows would turn LF into CRLF, which breaks the scripts.
    print_text(env, completion_script(ctx.find_root().command, shell).encode())


# -- doctor -----------------------------------------------------------------------------------------


@click.command()
@json_option("JSON even on a terminal.")
@pass_environment
def doctor(env: Environment, as_json: bool) -> None:
    """Check the setup, the caches and the Hub connection.

    Reports versions, torch threads, the CPU, what --precision auto runs on it and what kernels each
    precision uses, where the caches are and their size, whether the Hub answers, the offline and
    token settings, and whether SQUEEZE_SERVER is set and answers. Sends one HEAD request to the Hub
    (HF_ENDPOINT, 3 s timeout, no token) unless offline mode is on, and one GET /health to SQUEEZE_SERVER
    if set. Prints whether a token is set, never the token. A table on a terminal, one JSON object otherwise.
    """
    report = diagnose(env)
    if as_json or not env.stdout_is_terminal:
        print_json(env, report)
        return
    _print_table(env, report)


def diagnose(env: Environment) -> dict[str, Any]:
    """Everything `doctor` reports, as plain JSON-able data."""
    import platform

    from ..store import cache

    offline = {"enabled": env.offline, "variables": {name: env.settings[name] for name in OFFLINE_VARIABLES
                                                     if name in env.settings}}
    return {
        "squeezecli": __version__,
        "python": {"version": platform.python_version(), "implementation": platform.python_implementation(),
                   "executable": sys.executable},
        "platform": platform.platform(),
        "packages": {name: _installed_version(name) for name in _dependencies()},
        "torch": _torch_report(),
        "cpu": _cpu_report(),
        "int8": _int8_report(env),
        "cache": {**_directory_report(cache.cache_root(env)), "models": len(cache.list_entries(env))},
        "hf_cache": _directory_report(env.hf_cache_dir),
        "hub": _hub_report(env.endpoint, check=not env.offline),
        "offline": offline,
        "token": env.token_source,
        "server": _server_report(env),
    }


def _server_report(env: Environment) -> dict[str, Any]:
    """Whether SQUEEZE_SERVER is set, answers (GET /health, 3 s) and runs this squeeze."""
    from ..serve.client import probe

    return probe(env.server, env.api_key)


def _torch_report() -> dict[str, Any]:
    import torch

    return {"version": torch.__version__, "threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(),
            # As libgomp read it when torch loaded (environment.choose_openmp_wait); None: OpenMP's default.
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")}


def _cpu_report() -> dict[str, Any]:
    """The CPU, the flags that decide squeeze's kernels, what --precision auto runs here and why."""
    from ..precision import cpu

    choice = cpu.auto_precision()
    return {"name": cpu.cpu_name(), "flags": cpu.present(cpu.REPORTED),
            "auto": {"precision": choice.precision, "reason": choice.reason}}


def _int8_report(env: Environment) -> dict[str, Any]:
    """The kernel squeeze's int8 path will use (None: int8 runs fall back to fp32), the setting that chose it,
    and what runs each projection and attention at each precision."""
    from ..assembly import precisions
    from ..errors import SqueezeError
    from ..precision.int8 import int8_backend

    try:
        backend, problem = int8_backend(env.kernel), None
    except SqueezeError as exc:  # a bad SQUEEZE_INT8_KERNEL: the one thing doctor must report, not die of
        backend, problem = None, exc.message
    return {"backend": backend, "setting": env.settings.get(KERNEL_ENV), "problem": problem,
            "kernels": precisions.kernels(backend)}


# What squeeze needs, should its own metadata be missing (run from a checkout that was never installed).
_FALLBACK_DEPENDENCIES = ("click", "rich", "torch", "tokenizers", "huggingface-hub", "safetensors", "platformdirs",
                          "numpy", "filelock")


def _dependencies() -> list[str]:
    """The distributions squeeze requires, as pyproject.toml declares them (its installed metadata)."""
    import re
    from importlib import metadata

    try:
        requires = metadata.requires("squeezecli") or []
    except metadata.PackageNotFoundError:
        return list(_FALLBACK_DEPENDENCIES)
    return [re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0] for requirement in requires if "extra ==" not in requirement]


def _installed_version(distribution: str) -> str | None:
    from importlib import (
        metadata,  # not at module level: importing it costs every Tab press tens of ms
    )

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _directory_report(path: Path) -> dict[str, Any]:
    exists = path.is_dir()
    return {"path": str(path), "exists": exists, "size": _tree_size(path) if exists else 0,
            "writable": _writable(path)}


def _tree_size(root: Path) -> int:
    """Bytes in the files under `root`. Links are not followed: the HF cache links every snapshot file to
    a blob, which would otherwise be counted twice."""
    total = 0
    for directory, _, filenames in os.walk(root):
        for filename in filenames:
            try:
                info = os.lstat(os.path.join(directory, filename))
            except OSError:  # removed while we walked
                continue
            if not stat.S_ISLNK(info.st_mode):
                total += info.st_size
    return total


def _writable(path: Path) -> bool:
    """Whether squeeze could write there: the directory, or the nearest existing parent it would create it in."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate.is_dir() and os.access(candidate, os.W_OK | os.X_OK)
    return False


def _hub_report(endpoint: str, *, check: bool) -> dict[str, Any]:
    """Whether the Hub answers an HTTP request at all (any status counts: the server is there)."""
    endpoint = _without_credentials(endpoint)  # urllib would take "user:password@host" for the host name
    report: dict[str, Any] = {"endpoint": endpoint, "reachable": None, "status": None,
                              "detail": "not checked: offline mode is on", "seconds": None}
    if not check:
        return report
    import urllib.error
    import urllib.request

    # No Authorization header: the token is not needed to see whether the server answers.
    request = urllib.request.Request(endpoint + "/", method="HEAD", headers={"User-Agent": f"squeeze/{__version__}"})
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=HUB_TIMEOUT_SECONDS) as response:
            status, detail = response.status, "ok"
    except urllib.error.HTTPError as exc:
        status, detail = exc.code, "answered with an error status"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        report.update(reachable=False, detail=_failure(exc), seconds=round(time.monotonic() - started, 3))
        return report
    report.update(reachable=True, status=status, detail=detail, seconds=round(time.monotonic() - started, 3))
    return report


def _failure(exc: BaseException) -> str:
    import urllib.error

    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, TimeoutError):
        return f"no answer within {HUB_TIMEOUT_SECONDS:g} s"
    if isinstance(reason, ValueError):
        return "HF_ENDPOINT is not an http(s) URL"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) or type(reason).__name__


def _without_credentials(url: str) -> str:
    """`url` without a user:password@ part, which an HF_ENDPOINT behind a proxy may carry."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


# -- the table --------------------------------------------------------------------------------------


def _print_table(env: Environment, report: dict[str, Any]) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for name, value in _table_rows(report):
        # Text, not markup: a path like "[cache]" must print as typed.
        table.add_row(name, Text(value))
    print_rich(env, table)


def _table_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    python, torch_, cpu, cache, hf_cache, hub, offline = (report["python"], report["torch"], report["cpu"],
                                                          report["cache"], report["hf_cache"], report["hub"],
                                                          report["offline"])
    if hub["reachable"] is None:
        reachability = hub["detail"]
    elif hub["reachable"]:
        reachability = f"reachable (HTTP {hub['status']}, {hub['seconds']:.2f} s)"
    else:
        reachability = f"UNREACHABLE: {hub['detail']}"
    packages = ", ".join(f"{name} {version or 'missing'}" for name, version in report["packages"].items())
    return [
        ("squeeze", f"{report['squeezecli']} (Python {python['version']}, {report['platform']})"),
        ("torch", f"{torch_['version']}, {_count(torch_['threads'], 'thread')} ({torch_['interop_threads']} inter-op), "
                  f"OpenMP waits {(torch_['omp_wait_policy'] or 'spinning briefly').lower()}"),
        ("cpu", f"{cpu['name']} ({', '.join(cpu['flags']) or 'no AVX2, AVX-512 or AMX'})"),
        ("auto precision", f"{cpu['auto']['precision']}: {cpu['auto']['reason']}"),
        ("int8 kernel", _int8_line(report["int8"])),
        *_kernel_rows(report["int8"]["kernels"]),
        ("squeeze cache", _directory_line(cache, f", {cache['models']} models")),
        ("HF cache", _directory_line(hf_cache)),
        ("Hub", f"{hub['endpoint']}: {reachability}"),
        ("offline", _offline_line(offline)),
        ("token", f"set ({report['token']})" if report["token"] else "none (gated models need HF_TOKEN)"),
        ("server", _server_line(report["server"])),
        ("packages", packages),
    ]


def _server_line(server: dict[str, Any]) -> str:
    if not server["url"]:
        return server["detail"]
    models = f" ({', '.join(server['models'])})" if server["models"] else ""
    return f"{server['url']}: {server['detail']}{models}"


def _int8_line(int8: dict[str, Any]) -> str:
    chosen = int8["backend"] or "none, int8 runs fall back to fp32"
    setting = f" (SQUEEZE_INT8_KERNEL={int8['setting']})" if int8["setting"] else ""
    problem = f"; PROBLEM: {int8['problem']}" if int8["problem"] else ""
    return f"{chosen}{setting}{problem}"


def _kernel_rows(kernels: dict[str, dict[str, str]]) -> list[tuple[str, str]]:
    return [(f"{precision} kernels", f"{k['projections']}; attention: {k['attention']} ({k['why']})")
            for precision, k in kernels.items()]


def _offline_line(offline: dict[str, Any]) -> str:
    settings = ", ".join(f"{name}={value}" for name, value in offline["variables"].items())
    state = "on" if offline["enabled"] else "off"
    return f"{state} ({settings})" if settings else state


def _directory_line(directory: dict[str, Any], extra: str = "") -> str:
    if not directory["exists"]:
        state = "not created yet" + ("" if directory["writable"] else ", NOT WRITABLE")
        return f"{directory['path']} ({state})"
    state = views.size(directory["size"]) + extra + ("" if directory["writable"] else ", NOT WRITABLE")
    return f"{directory['path']} ({state})"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
