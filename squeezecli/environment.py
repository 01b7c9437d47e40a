"""The one place squeeze reads the process it runs in: its standard streams and the environment variables
it knows. `Environment.from_os()` reads them once; the CLI builds one per command and passes it down, the
Python API builds one per `load`, and tests build their own (as httpie's `Environment` does). Also the
variables squeeze sets for its libraries before torch loads: OpenMP's wait policy (`choose_openmp_wait`)
and the size of oneDNN's primitive cache (`choose_library_settings`).
"""

from __future__ import annotations

import io
import os
import stat
import sys
import time
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from .errors import DEBUG_ENV, one_line, write_stderr

CACHE_ENV = "SQUEEZE_CACHE_DIR"
KERNEL_ENV = "SQUEEZE_INT8_KERNEL"
SERVER_ENV = "SQUEEZE_SERVER"
API_KEY_ENV = "SQUEEZE_API_KEY"
DEFAULT_ENDPOINT = "https://huggingface.co"
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
TOKEN_VARIABLES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
# squeeze's own settings, which a Ray worker needs to find the models its driver found. Credentials are
# not among them: a runtime_env is readable by anyone who can reach the cluster.
SETTINGS = (CACHE_ENV, KERNEL_ENV, DEBUG_ENV, "HF_ENDPOINT", "HF_HOME", "HF_HUB_CACHE", *OFFLINE_VARIABLES)
# The variables squeeze reads, and what each does (`squeeze help environment`).
VARIABLES: dict[str, str] = {
    CACHE_ENV: "squeeze's cache of int8 builds and recorded commits (default: the user cache directory)",
    DEBUG_ENV: "1: print the traceback of an error",
    KERNEL_ENV: "auto (default): the int8 kernel that passes its probe; int_mm; none: int8 runs fp32 instead",
    SERVER_ENV: "http://HOST:PORT of a `squeeze serve`: task commands run through it (--no-server: here)",
    API_KEY_ENV: "the key `squeeze serve` requires (--api-key) and task commands send to SQUEEZE_SERVER; never printed",
    "HF_ENDPOINT": "the Hub's address, for a mirror (default https://huggingface.co)",
    "HF_TOKEN": "the token for gated and private models (also HUGGING_FACE_HUB_TOKEN); never printed",
    "HF_HUB_OFFLINE": "1: never contact the Hub (also TRANSFORMERS_OFFLINE)",
    "HF_HUB_CACHE": "where the Hugging Face download cache is (also HF_HOME, XDG_CACHE_HOME)",
    "NO_COLOR": "any value: no colour in tables (as --no-color)",
    "OMP_WAIT_POLICY": "OpenMP's, kept as set (also GOMP_SPINCOUNT); unset: PASSIVE when other work keeps half the "
                       "CPUs busy as squeeze starts, else OpenMP's own (spin briefly, then sleep)",
    "SHELL": "the shell `squeeze completion` writes for when none is named",
}
_TRUE_VALUES = {"1", "ON", "YES", "TRUE"}


@dataclass(frozen=True)
class Environment:
    stdin: TextIO | None
    stdout: TextIO | None
    stderr: TextIO | None
    stdout_is_terminal: bool
    stderr_is_terminal: bool
    stdout_is_pipe: bool  # a pipe or socket: its reader usually prints to the same terminal
    cache_dir: Path  # squeeze's cache (SQUEEZE_CACHE_DIR, else the user cache directory); not checked here
    cache_dir_setting: str | None  # SQUEEZE_CACHE_DIR as given, for messages
    hf_cache_dir: Path  # the Hugging Face hub cache, resolved as huggingface_hub resolves it
    endpoint: str  # the Hub (HF_ENDPOINT)
    offline: bool  # HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE
    debug: bool  # SQUEEZE_DEBUG: tracebacks with errors
    kernel: str  # SQUEEZE_INT8_KERNEL, lower case, "auto" when unset
    shell: str | None  # the name of $SHELL
    token: str | None = field(default=None, repr=False)  # HF_TOKEN: never printed
    token_source: str | None = None  # where a token is: a variable's name, "token file", or None
    settings: Mapping[str, str] = field(default_factory=dict)  # SETTINGS that are set
    server: str | None = None  # SQUEEZE_SERVER: the `squeeze serve` task commands run through
    api_key: str | None = field(default=None, repr=False)  # SQUEEZE_API_KEY: never printed
    # Where notices go while a transient status line is on stderr (io.progress.status_line); none: stderr.
    notice_sinks: list[Callable[[str], None]] = field(default_factory=list, repr=False, compare=False)

    @classmethod
    def from_os(cls, environ: Mapping[str, str] | None = None) -> Environment:
        """Read the streams and variables now (sys.stdout may have been swapped, e.g. by a test runner)."""
        env = os.environ if environ is None else environ
        explicit = env.get(CACHE_ENV) or None
        if explicit:
            cache_dir = Path(_expand(explicit))
        else:
            import platformdirs

            cache_dir = Path(platformdirs.user_cache_dir("squeeze", appauthor=False))
        token = next((env[name].strip() for name in TOKEN_VARIABLES if env.get(name, "").strip()), None)
        return cls(
            stdin=sys.stdin,
            stdout=sys.stdout,
            stderr=sys.stderr,
            stdout_is_terminal=is_terminal(sys.stdout),
            stderr_is_terminal=is_terminal(sys.stderr),
            stdout_is_pipe=is_pipe(sys.stdout),
            cache_dir=cache_dir,
            cache_dir_setting=explicit,
            hf_cache_dir=_hf_cache_dir(env),
            endpoint=(env.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/"),
            offline=any(env.get(name, "").upper() in _TRUE_VALUES for name in OFFLINE_VARIABLES),
            debug=env.get(DEBUG_ENV, "") not in ("", "0"),
            kernel=env.get(KERNEL_ENV, "auto").strip().lower() or "auto",
            shell=os.path.basename(env.get("SHELL", "")) or None,
            token=token,
            token_source=_token_source(env),
            settings={name: env[name] for name in SETTINGS if env.get(name)},
            server=env.get(SERVER_ENV, "").strip() or None,
            api_key=env.get(API_KEY_ENV, "").strip() or None,
        )

    def notice(self, message: str) -> None:
        """One line for the user on stderr ("squeeze: ..."): a first-use download, a cut line."""
        line = f"squeeze: {one_line(message)}"
        if self.notice_sinks:
            self.notice_sinks[-1](line)
        else:
            write_stderr(self.stderr, line + "\n")


def is_terminal(stream: Any) -> bool:
    """Whether `stream` is a terminal; False for pipes, files and test runners' captures."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def is_pipe(stream: Any) -> bool:
    """Whether `stream` is a pipe or socket (False for files, /dev/null and streams without a descriptor)."""
    try:
        mode = os.fstat(stream.fileno()).st_mode
    except (AttributeError, ValueError, OSError, io.UnsupportedOperation):
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def _hf_cache_dir(env: Mapping[str, str]) -> Path:
    explicit = env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(_expand(explicit))
    home = env.get("HF_HOME") or os.path.join(env.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"), "huggingface")
    return Path(_expand(home)) / "hub"


def _token_source(env: Mapping[str, str]) -> str | None:
    """Where huggingface_hub would find a token (a variable, or the file `hf auth login` writes)."""
    for name in TOKEN_VARIABLES:
        if env.get(name, "").strip():
            return name
    hf_home = env.get("HF_HOME") or os.path.join(env.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    token_file = Path(os.path.expanduser(env.get("HF_TOKEN_PATH") or os.path.join(hf_home, "token")))
    return "token file" if token_file.is_file() else None


def _expand(path: str) -> str:
    return os.path.expandvars(os.path.expanduser(path))


# oneDNN keeps up to this many compiled kernels (its default: 1,024). A run of mixed-length texts makes
# passes of hundreds of shapes, each with its own kernels: 4,000 lines of SqueezeBERT held 140 MB of them
# at the default, with no speed to show for it (docs/performance.md).
ONEDNN_PRIMITIVE_CACHE = 64


def choose_library_settings(environ: MutableMapping[str, str] | None = None) -> None:
    """Before torch loads: OpenMP's wait policy (choose_openmp_wait) and oneDNN's primitive cache size,
    unless the user set either (ONEDNN_ or DNNL_PRIMITIVE_CACHE_CAPACITY)."""
    environ = os.environ if environ is None else environ
    if not ({"ONEDNN_PRIMITIVE_CACHE_CAPACITY", "DNNL_PRIMITIVE_CACHE_CAPACITY"} & environ.keys()):
        environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = str(ONEDNN_PRIMITIVE_CACHE)
    choose_openmp_wait(environ)


def choose_openmp_wait(environ: MutableMapping[str, str] | None = None, others: Callable[[], int] | None = None,
                       cores: int | None = None, torch_loaded: bool | None = None) -> str | None:
    """Set OMP_WAIT_POLICY for torch's OpenMP threads, which libgomp reads once, when torch loads (so
    before; afterwards it is too late and nothing is set): PASSIVE (sleep at once between parallel
    regions) when other tasks keep at least half of this process's CPUs busy, where spinning threads
    take the time slices the working ones wait for; else nothing, and OpenMP spins briefly, then sleeps.
    A policy or spin count the user set is theirs. Returns what was set. The docs/performance.md has
    the measurements (PASSIVE costs a quarter of the speed on an idle machine; spinning doubles the run
    time on a loaded one)."""
    environ = os.environ if environ is None else environ
    torch_loaded = "torch" in sys.modules if torch_loaded is None else torch_loaded
    if torch_loaded or "OMP_WAIT_POLICY" in environ or "GOMP_SPINCOUNT" in environ:
        return None
    if cores is None:
        cores = usable_cpus()
    busy = max(1, cores // 2)
    if (others or (lambda: others_running(below=busy)))() < busy:
        return None
    environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return "PASSIVE"


def others_running(read: Callable[[], str] | None = None, samples: int = 3, pause: float = 0.002,
                   below: int | None = None) -> int:
    """How many other tasks are runnable on this machine now: the fewest over `samples` readings of
    /proc/loadavg's running count, less this process (a burst of kernel work is not a load); 0 where it
    cannot be read. With `below`, the first reading under it is the answer (the fewest is under it too):
    an idle machine costs one reading, not three and two pauses."""
    read = read or (lambda: Path("/proc/loadavg").read_text(encoding="ascii"))
    counts = []
    for sample in range(samples):
        if sample:
            time.sleep(pause)
        try:
            counts.append(int(read().split()[3].split("/")[0]) - 1)
        except (OSError, ValueError, IndexError):
            return 0
        if below is not None and counts[-1] < below:
            break
    return max(min(counts), 0)


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask: a container's or `taskset`'s limit), not the
    machine's count."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def process_alive(pid: int) -> bool:
    """Whether process `pid` exists (for the temporary files of a run that may have been killed)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True
