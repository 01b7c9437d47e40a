"""Whole processes, timed from spawn to exit, with the process's own peak RSS (wait4's rusage).

Output goes to files rather than pipes, so a chatty child can never block on a full pipe while we wait.
Each command runs as the child of a small launcher, not of this process: Linux starts a forked child's
ru_maxrss at its parent's RSS and keeps it across exec, so a direct child would report at least this
process's size (hundreds of MB once a model is built in it).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
SQUEEZE = [PYTHON, "-m", "squeezecli"]  # the console script's entry point, without needing it installed
HF_ONE_LINE = [PYTHON, str(ROOT / "benchmarks" / "hf_one_line.py")]


@dataclasses.dataclass(frozen=True)
class Finished:
    seconds: float
    peak_rss_mb: float
    status: int
    stdout: str
    stderr: str
    others_cores: float  # CPU used by other processes while this one ran, in cores (2.0: two cores, all along)

    def check(self, what: str) -> "Finished":
        if self.status != 0:
            tail = "\n".join(self.stderr.strip().splitlines()[-5:])
            raise RuntimeError(f"{what} exited with status {self.status}:\n{tail}")
        return self


def child_env(cache_dir: Path) -> dict[str, str]:
    """squeeze's cache in `cache_dir`, squeezecli importable from the checkout, nothing from the network."""
    env = dict(os.environ, SQUEEZE_CACHE_DIR=str(cache_dir), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


# Runs argv[2:] as its child; writes the child's peak RSS (KiB) and wall time from fork to exit to argv[1].
_LAUNCHER = """
import os, sys, time
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
seconds = time.perf_counter() - start
with open(sys.argv[1], "w") as report:
    report.write(f"{usage.ru_maxrss} {seconds}")
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run(command: Sequence[str], env: dict[str, str], stdin_text: str = "") -> Finished:
    with tempfile.TemporaryFile("w+") as stdin, tempfile.TemporaryFile("w+") as out, \
            tempfile.TemporaryFile("w+") as err, tempfile.NamedTemporaryFile("r") as report:
        stdin.write(stdin_text)
        stdin.seek(0)
        busy_before = cpu_busy_seconds()
        start = time.perf_counter()
        process = subprocess.Popen([PYTHON, "-c", _LAUNCHER, report.name, *command], stdin=stdin, stdout=out,
                                   stderr=err, env=env, cwd=ROOT)
        _, status, usage = os.wait4(process.pid, 0)  # the launcher's times include its child's
        others = max(0.0, cpu_busy_seconds() - busy_before - usage.ru_utime - usage.ru_stime) / (
            time.perf_counter() - start)
        process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        peak_kib, seconds = report.read().split()
        out.seek(0)
        err.seek(0)
        return Finished(float(seconds), int(peak_kib) / 1024, process.returncode, out.read(), err.read(), others)


def log(message: str) -> None:
    """Progress, on stderr, with the time of day."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def cpu_busy_seconds() -> float:
    """Non-idle CPU time of the whole machine since boot, all cores together (Linux /proc/stat)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return 0.0
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # minus idle and iowait


DISTURBED_CORES = 0.25  # a run during which other processes kept more than this busy is run once more


def wait_for_quiet(max_seconds: float) -> None:
    """Wait (at most `max_seconds`) until other processes use less than DISTURBED_CORES over one second.

    Two cores shared with other work make every figure noisy; a measurement that starts in a quiet
    moment usually stays cleaner.
    """
    deadline = time.monotonic() + max_seconds
    while True:
        busy, start = cpu_busy_seconds(), time.monotonic()
        time.sleep(1.0)
        used = (cpu_busy_seconds() - busy) / (time.monotonic() - start)
        if used < DISTURBED_CORES or time.monotonic() >= deadline:
            return


def measure(command: Sequence[str], env: dict[str, str], stdin_text: str = "", quiet_wait: float = 0.0) -> Finished:
    """`run`, after waiting up to `quiet_wait` seconds for the machine to be quiet (see wait_for_quiet);
    with a wait, a run that other processes disturbed anyway is repeated once, keeping the quieter."""
    if quiet_wait <= 0:
        return run(command, env, stdin_text)
    wait_for_quiet(quiet_wait)
    first = run(command, env, stdin_text)
    if first.status != 0 or first.others_cores <= DISTURBED_CORES:
        return first
    wait_for_quiet(quiet_wait)
    second = run(command, env, stdin_text)
    return min(first, second, key=lambda finished: (finished.status != 0, finished.others_cores))


def interleaved(
    commands: dict[str, tuple[list[str], str]], env: dict[str, str], rounds: int, quiet_wait: float = 0.0
) -> dict[str, list[Finished]]:
    """Each of `commands` (name -> (argv, stdin)) once per round, in turn, after one untimed run each (which
    fills the OS file cache, as on any machine that has run the command before)."""
    for name, (argv, stdin_text) in commands.items():
        run(argv, env, stdin_text).check(name)
    runs: dict[str, list[Finished]] = {name: [] for name in commands}
    for _ in range(rounds):
        for name, (argv, stdin_text) in commands.items():
            runs[name].append(measure(argv, env, stdin_text, quiet_wait).check(name))
    return runs


def import_profile(argv: list[str], env: dict[str, str], stdin_text: str = "", top: int = 12) -> list[tuple[str, float]]:
    """The `top` slowest outermost imports of a command, as (module, cumulative ms), from python -X importtime.

    Outermost means not imported by another import: the command's own imports, including those done lazily
    inside functions (torch when a model loads), each with everything it pulled in.
    """
    finished = run([argv[0], "-X", "importtime", *argv[1:]], env, stdin_text).check("import profile")
    outermost = []
    for line in finished.stderr.splitlines():
        if not line.startswith("import time:") or "imported package" in line:
            continue
        _, cumulative, name = line.removeprefix("import time:").split("|")
        if not name.startswith("  "):  # nested imports are indented by two more spaces per level
            outermost.append((name.strip(), int(cumulative) / 1000))
    return sorted(outermost, key=lambda item: -item[1])[:top]
