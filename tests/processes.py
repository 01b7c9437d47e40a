"""Running squeeze as a real process: its environment, its peak memory, and faults of the machine it
runs on (a read-only or full cache directory, a user who may not read a file).

Faults are made, not mocked: a small tmpfs in a private mount namespace (`unshare`) is a real full or
read-only file system, and a child without root's right to override file modes (`setpriv`, when the
tests run as root) really cannot read a chmod 000 file.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SQUEEZE = [sys.executable, "-m", "squeezecli"]


def on_a_terminal(command: list[str], *, stdout=None, timeout: float = 60, **popen) -> tuple[int, str]:
    """Run `command` with a pseudo-terminal as its stderr (and stdout, unless `stdout` is given): its exit
    status and everything it wrote to the terminal."""
    import pty
    import select
    import time

    leader, follower = pty.openpty()
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=stdout if stdout is not None else follower,
                               stderr=follower, **popen)
    os.close(follower)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not select.select([leader], [], [], 1)[0]:
                continue
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(leader)
        if process.poll() is None and time.monotonic() >= deadline:
            process.kill()
        status = process.wait(timeout=10)
    return status, b"".join(chunks).decode("utf-8", errors="replace")


def foreground_signals() -> None:
    """Popen's preexec_fn for a child that Ctrl-C must reach: SIGINT at its default, as in a terminal's
    foreground job. A shell without job control starts background commands (`.ci/run &`) with SIGINT
    ignored, every process under them inherits that, and Python then never installs its handler."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def squeeze_env(caches: Path | None = None, **extra: str) -> dict[str, str]:
    """The environment of a squeeze child: this tree's squeezecli, and the caches under `caches`."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    if caches is not None:
        env.update(SQUEEZE_CACHE_DIR=str(caches / "squeeze"), HF_HOME=str(caches / "hf-home"))
    env.update(extra)
    return env


# Runs argv[2:] as a grandchild and writes its peak RSS (kB) to argv[1]. Not measured on the test's own
# child: Linux carries ru_maxrss across fork and exec, so a child of this (torch-loaded) test process
# starts with this process's peak. This launcher is small, and so is what its child inherits.
_PEAK_RSS_LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.executable, [sys.executable, *sys.argv[2:]])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as report:
    report.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_measured(args: list[str], stdin: Path | str, timeout: float, env: dict[str, str] | None = None
                 ) -> tuple[int, bytes, str, int, float]:
    """Run squeeze on `stdin` (a file, or a shell command whose output is piped in); return (status,
    stdout, stderr, peak RSS in bytes, seconds). Caches go next to a stdin file unless `env` says.

    A run that outlives `timeout` is killed and fails the test as a hang.
    """
    import time

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "peak"
        producer = None
        if isinstance(stdin, Path):
            source = open(stdin, "rb")
            env = env or squeeze_env(stdin.parent)
        else:
            producer = subprocess.Popen(["bash", "-c", stdin], stdout=subprocess.PIPE, start_new_session=True)
            source = producer.stdout
            env = env or squeeze_env(Path(scratch))
        started = time.monotonic()
        with source:
            process = subprocess.Popen([sys.executable, "-c", _PEAK_RSS_LAUNCHER, str(report), "-m", "squeezecli",
                                        *args], stdin=source, stdout=out, stderr=err, env=env, start_new_session=True)
        try:
            status = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            err.seek(0)
            pytest.fail(f"killed after {timeout} s: squeeze hung; stderr: {err.read()[-2000:]!r}")
        finally:
            if producer is not None:
                os.killpg(producer.pid, signal.SIGKILL)
                producer.wait()
        seconds = time.monotonic() - started
        out.seek(0)
        err.seek(0)
        peak_kb = int(report.read_text())  # ru_maxrss is in kB on Linux
        return status, out.read(), err.read().decode("utf-8", errors="replace"), peak_kb * 1024, seconds


# Root reads and writes any file whatever its mode bits; without these two capabilities, it is bound by
# them like any user (for files it owns, by the owner's bits), so a chmod 000 file is unreadable to it.
_WITHOUT_OVERRIDES = ["setpriv", "--inh-caps=-dac_override,-dac_read_search",
                      "--bounding-set=-dac_override,-dac_read_search"]


def unprivileged(command: list[str]) -> list[str]:
    """`command`, run so that file permissions apply to it even when the tests run as root."""
    if os.geteuid() != 0:
        return command
    if shutil.which("setpriv") is None:
        pytest.fail("as root, these tests need util-linux's setpriv to drop the right to ignore file modes")
    return _WITHOUT_OVERRIDES + command


def in_small_filesystem(mount_point: Path, shell: str, *, size_kb: int, env: dict[str, str],
                        timeout: float = 180) -> subprocess.CompletedProcess:
    """Run `shell` (bash) in a private mount namespace where `mount_point` is an empty tmpfs of `size_kb`.
    `remount-ro` inside `shell` makes it read-only from then on. Nothing outside the namespace sees it."""
    if shutil.which("unshare") is None:
        pytest.fail("these tests need util-linux's unshare to make a real small file system")
    mount_point.mkdir(parents=True, exist_ok=True)
    script = (f"mount -t tmpfs -o size={size_kb}k tmpfs {shlex.quote(str(mount_point))} || exit 99\n"
              f"remount-ro() {{ mount -o remount,ro {shlex.quote(str(mount_point))}; }}\n{shell}")
    result = subprocess.run(["unshare", "--map-root-user", "--mount", "bash", "-c", script], capture_output=True,
                            env=env, timeout=timeout)
    if result.returncode == 99:
        pytest.fail(f"could not mount a tmpfs in a private namespace: {result.stderr.decode()}")
    return result
