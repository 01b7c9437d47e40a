"""Output files the user names (`index build -o`, `run-distributed --output`) are written one way
(squeezecli/io/outfile.py): never over a device, FIFO, directory or socket, even with --force; a symlink
followed, never replaced; messages name the user's path, not a temporary one; a killed run's temporary
files removed by the next; read-only and full file systems are exit 7 with the path and a hint. The
faults are real: a tmpfs in a private mount namespace (tests/processes.py).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from processes import SQUEEZE, in_small_filesystem, squeeze_env

from squeezecli import cli
from squeezecli.errors import ExitStatus, OutputError, UsageError
from squeezecli.integrations import raydata
from squeezecli.io import index as index_file
from squeezecli.io import outfile


def build(args: list[str], tmp_path: Path, monkeypatch) -> Any:
    """`squeeze index build` (in this process) with a model that does not exist: what is refused is
    refused before it loads."""
    monkeypatch.chdir(tmp_path)
    return CliRunner().invoke(cli.squeeze, ["index", "build", "-m", str(tmp_path / "no-model"), *args], input="a\n",
                              prog_name="squeeze", catch_exceptions=False)


def one_line(result: Any, status: int) -> str:
    stderr = result.stderr
    assert result.exit_code == status, stderr
    lines = stderr.splitlines()
    assert lines[0].startswith("squeeze: error: ") and len(lines) <= 2, stderr
    assert "Traceback" not in stderr and ".tmp" not in stderr
    return stderr


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.parametrize("kind", ["device", "fifo", "directory", "socket", "symlink to a device"])
def test_what_is_not_a_regular_file_is_refused_even_with_force(tmp_path, monkeypatch, kind):
    target = tmp_path / "out.sqidx"
    if kind == "device":
        target = Path("/dev/full")
    elif kind == "fifo":
        os.mkfifo(target)
    elif kind == "directory":
        target.mkdir()
    elif kind == "socket":
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(target))
    else:
        target.symlink_to("/dev/null")
    before = os.lstat(target)
    stderr = one_line(build(["-o", str(target), "--force"], tmp_path, monkeypatch), ExitStatus.USAGE)
    assert stderr.startswith(f"squeeze: error: {target} is a"), stderr
    assert "not a file; squeeze writes only regular files" in stderr
    after = os.lstat(target)
    assert (after.st_mode, after.st_ino, after.st_rdev) == (before.st_mode, before.st_ino, before.st_rdev)


def test_an_existing_file_needs_force_before_the_model_loads(tmp_path, monkeypatch):
    (tmp_path / "old.sqidx").write_text("")
    stderr = one_line(build(["-o", "old.sqidx"], tmp_path, monkeypatch), ExitStatus.USAGE)
    assert stderr.startswith("squeeze: error: old.sqidx already exists\n  hint: --force replaces it"), stderr


def test_a_missing_directory_names_the_path_not_a_temporary_file(tmp_path, monkeypatch):
    stderr = one_line(build(["-o", "gone/x.sqidx"], tmp_path, monkeypatch), ExitStatus.OUTPUT)
    assert stderr.startswith(f"squeeze: error: gone/x.sqidx: cannot write: no directory {tmp_path / 'gone'}"), stderr


def test_a_symlink_is_followed_and_stays_a_link(tmp_path):
    real = tmp_path / "data" / "real.sqidx"
    real.parent.mkdir()
    real.write_text("old")
    link = tmp_path / "link.sqidx"
    link.symlink_to(real)
    with index_file.creating(link, {"vectors": "float32"}, force=True) as index:
        index.append([("a", "{}", None, None, None, 1.0, b"\0" * 4)])
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert len(index_file.open_index(real)) == 1
    assert sorted(p.name for p in real.parent.iterdir()) == ["real.sqidx"]


def test_a_killed_runs_temporary_files_are_removed_by_the_next(tmp_path):
    pid = dead_pid()
    stale = [tmp_path / f".x.sqidx.{pid}.tmp", tmp_path / f".x.sqidx.{pid}.tmp-journal"]
    running = tmp_path / f".x.sqidx.{os.getppid()}.tmp"  # a live process's: left alone
    other = tmp_path / f".y.sqidx.{pid}.tmp"  # another file's: left alone
    for path in (*stale, running, other):
        path.write_text("half")
    with index_file.creating(tmp_path / "x.sqidx", {"vectors": "float32"}):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([running.name, other.name, "x.sqidx"])


def test_a_failed_write_leaves_no_temporary_file_and_the_old_file(tmp_path):
    target = tmp_path / "x.sqidx"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with index_file.creating(target, {"vectors": "float32"}, force=True):
            raise KeyboardInterrupt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.sqidx"] and target.read_text() == "old"


def test_the_results_file_of_run_distributed_follows_the_same_rule(tmp_path):
    (tmp_path / "results.jsonl").mkdir()
    with pytest.raises(UsageError, match="results.jsonl is a directory"):
        raydata.check_output(tmp_path, "jsonl")
    out = tmp_path / "new" / "deeper"
    assert raydata.check_output(out, "parquet") == out / "results.parquet" and out.is_dir()
    with raydata.JsonLinesFile(out / "results.jsonl") as writer:
        writer.write([{"line": 1, "label": "x"}])
    assert json.loads((out / "results.jsonl").read_text()) == {"line": 1, "label": "x"}
    assert sorted(p.name for p in out.iterdir()) == ["results.jsonl"]


WRITE_INDEX = """
import sys
from squeezecli.cli.main import exit_status_for
from squeezecli.environment import Environment
from squeezecli.io import index
try:
    if sys.argv[2] == "index":
        with index.creating(sys.argv[1], {"vectors": "float32"}, force=True) as built:
            built.append([("x" * 1000, "{}", None, None, None, 1.0, bytes(4096))] * 400)
    else:
        from squeezecli.integrations.raydata import JsonLinesFile
        with JsonLinesFile(__import__("pathlib").Path(sys.argv[1])) as out:
            out.write([{"text": "x" * 1000}] * 2000)
except BaseException as exc:
    sys.exit(exit_status_for(exc, Environment.from_os()))
"""


@pytest.mark.parametrize("writer", ["index", "jsonl"])
def test_a_full_file_system_is_exit_7_naming_the_file_and_leaves_nothing(tmp_path, writer):
    disk = tmp_path / "disk"
    target = disk / "out"
    script = f"""
        echo old > {target}
        {sys.executable} -c '{WRITE_INDEX}' {target} {writer} 2> {tmp_path}/err; echo $? > {tmp_path}/status
        ls -A {disk} > {tmp_path}/left; cat {target} > {tmp_path}/kept
    """
    result = in_small_filesystem(disk, script, size_kb=256, env=squeeze_env(tmp_path))
    assert result.returncode == 0, result.stderr
    stderr = (tmp_path / "err").read_text()
    assert (tmp_path / "status").read_text().strip() == str(ExitStatus.OUTPUT.value), stderr
    assert stderr.startswith(f"squeeze: error: {target}: cannot write"), stderr
    assert "full" in stderr or "no space" in stderr, stderr
    assert "hint: free some space" in stderr and ".tmp" not in stderr
    assert (tmp_path / "left").read_text().split() == ["out"] and (tmp_path / "kept").read_text() == "old\n"


def test_a_read_only_file_system_is_exit_7_before_the_model_loads(tmp_path):
    disk = tmp_path / "disk"
    command = " ".join([*SQUEEZE, "index", "build", "-m", str(tmp_path / "no-model"), "-o", str(disk / "x.sqidx")])
    script = f"remount-ro\necho a | {command} 2> {tmp_path}/err; echo $? > {tmp_path}/status"
    result = in_small_filesystem(disk, script, size_kb=64, env=squeeze_env(tmp_path))
    assert result.returncode == 0, result.stderr
    stderr = (tmp_path / "err").read_text()
    assert (tmp_path / "status").read_text().strip() == str(ExitStatus.OUTPUT.value), stderr
    assert stderr == (f"squeeze: error: {disk / 'x.sqidx'}: cannot write: read-only file system\n"
                      "  hint: write it to a writable directory\n"), stderr


def test_failure_names_the_users_path_for_each_kind_of_fault():
    import errno

    for number, says in [(errno.ENOSPC, "no space left"), (errno.EROFS, "read-only"), (errno.EACCES, "permission")]:
        error = outfile.failure("out.sqidx", OSError(number, os.strerror(number), ".out.sqidx.1.tmp"))
        assert isinstance(error, OutputError) and error.message.startswith("out.sqidx: cannot write: " + says)
