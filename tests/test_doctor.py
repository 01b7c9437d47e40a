"""`squeeze doctor`: facts about this process and machine, the caches, whether the Hub answers (quickly
either way), offline mode, and never the token."""

import json
import os
import platform
import socket
import sys
import time
from pathlib import Path

import torch
from click.testing import CliRunner
from processes import on_a_terminal

from squeezecli import __version__
from squeezecli.cli import squeeze
from squeezecli.precision import cpu
from squeezecli.precision import int8 as quantize

ROOT = Path(__file__).resolve().parent.parent
SECRET = "hf_doctorSECRETtoken0123456789abcdef"


def doctor(*args: str) -> dict:
    result = CliRunner().invoke(squeeze, ["doctor", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    return json.loads(result.stdout)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_reports_this_process_and_a_reachable_hub(hub):
    report = doctor()  # not a terminal: JSON without asking
    assert report["squeezecli"] == __version__
    assert report["python"]["version"] == platform.python_version()
    assert report["torch"]["version"] == torch.__version__
    assert report["torch"]["threads"] == torch.get_num_threads()
    assert report["int8"]["backend"] == quantize.int8_backend()
    assert report["cpu"]["auto"]["precision"] == cpu.auto_precision().precision
    assert set(report["cpu"]["flags"]) == set(cpu.REPORTED) & cpu.cpu_flags()
    assert set(report["int8"]["kernels"]) == {"fp32", "bf16", "int8"}
    assert report["int8"]["problem"] is None
    assert report["packages"]["torch"] is not None and report["packages"]["click"] is not None
    assert report["hub"]["endpoint"] == hub.url
    assert report["hub"]["reachable"] is True and report["hub"]["status"] == 200
    [request] = hub.requests
    assert request.method == "HEAD" and "authorization" not in request.headers
    assert report["offline"] == {"enabled": False, "variables": {}}
    assert report["token"] is None


def test_the_int8_kernel_setting_is_reported(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("SQUEEZE_INT8_KERNEL", "none")
    report = doctor()
    assert report["int8"]["backend"] is None and report["int8"]["setting"] == "none"
    assert report["int8"]["kernels"]["int8"]["projections"] == "fp32"  # what an int8 run then gets


def test_a_bad_int8_kernel_setting_is_diagnosed_not_fatal(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("SQUEEZE_INT8_KERNEL", "avx9000")
    report = doctor()
    assert report["int8"]["backend"] is None
    assert "SQUEEZE_INT8_KERNEL=avx9000" in report["int8"]["problem"]
    assert report["torch"]["version"] == torch.__version__  # the rest of the report is still there


def test_cache_sizes_count_files_once(tmp_path, monkeypatch):
    cache = tmp_path / "squeeze-cache"
    (cache / "entries" / "x").mkdir(parents=True)
    (cache / "entries" / "x" / "weights").write_bytes(b"w" * 1234)
    hf_hub = tmp_path / "hf-home" / "hub"
    repo = hf_hub / "models--owner--name"
    (repo / "blobs").mkdir(parents=True)
    (repo / "snapshots" / "abc").mkdir(parents=True)
    (repo / "blobs" / "deadbeef").write_bytes(b"b" * 1000)
    # The HF cache links each snapshot file to its blob: the bytes are on disk once.
    (repo / "snapshots" / "abc" / "model.safetensors").symlink_to(repo / "blobs" / "deadbeef")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    report = doctor("--json")
    assert report["cache"]["path"] == str(cache)
    assert report["cache"]["exists"] and report["cache"]["size"] == 1234
    assert report["cache"]["models"] == 0  # a directory without a manifest is not a model
    assert report["hf_cache"]["path"] == str(hf_hub)
    assert report["hf_cache"]["size"] == 1000


def test_a_missing_cache_is_reported_as_not_created(tmp_path, monkeypatch):
    monkeypatch.setenv("SQUEEZE_CACHE_DIR", str(tmp_path / "not" / "yet"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    report = doctor()
    assert report["cache"]["exists"] is False and report["cache"]["size"] == 0
    assert report["cache"]["writable"] is True  # it would be created inside tmp_path
    assert not (tmp_path / "not").exists()  # doctor only looks


def test_a_closed_port_is_unreachable_at_once(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    started = time.monotonic()
    report = doctor()
    assert time.monotonic() - started < 3
    assert report["hub"]["reachable"] is False
    assert report["hub"]["status"] is None and report["hub"]["detail"]


def test_a_server_that_never_answers_is_given_up_on_after_the_timeout(monkeypatch):
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # the kernel completes the handshake; nothing ever reads or answers
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{silent.getsockname()[1]}")
        started = time.monotonic()
        report = doctor()
        elapsed = time.monotonic() - started
    assert report["hub"]["reachable"] is False
    assert "3 s" in report["hub"]["detail"]
    assert 2.5 < elapsed < 8


def test_offline_mode_makes_no_request(hub, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    report = doctor()
    assert report["offline"] == {"enabled": True, "variables": {"HF_HUB_OFFLINE": "1"}}
    assert report["hub"]["reachable"] is None
    assert hub.requests == []


def test_a_false_offline_value_is_online(hub, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    report = doctor()
    assert report["offline"] == {"enabled": False, "variables": {"HF_HUB_OFFLINE": "0"}}
    assert report["hub"]["reachable"] is True


def test_the_token_is_never_printed_or_sent(hub, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    result = CliRunner().invoke(squeeze, ["doctor", "--json"], catch_exceptions=False)
    assert SECRET not in result.stdout + result.stderr
    assert json.loads(result.stdout)["token"] == "HF_TOKEN"
    assert all("authorization" not in request.headers for request in hub.requests)


def test_credentials_in_the_endpoint_are_not_printed(hub, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", hub.url.replace("http://", "http://mirror-user:mirrorPASSWORD@"))
    result = CliRunner().invoke(squeeze, ["doctor"], catch_exceptions=False)
    assert "mirrorPASSWORD" not in result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["hub"]["endpoint"] == hub.url and report["hub"]["reachable"] is True


def test_a_terminal_gets_a_table_without_the_token(hub, tmp_path):
    """A real process on a pseudo-terminal: the table, the facts in it, and no token anywhere."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_TOKEN=SECRET, COLUMNS="160", TERM="xterm")
    status, screen = on_a_terminal([sys.executable, "-m", "squeezecli", "doctor"], env=env, cwd=tmp_path)
    assert status == 0, screen
    assert SECRET not in screen
    assert not screen.lstrip().startswith("{")  # a table, not JSON
    for row in ("torch", "int8 kernels", "squeeze cache", "HF cache", "Hub", "offline", "token"):
        assert row in screen
    assert torch.__version__ in screen
    assert f"{hub.url}: reachable" in screen
    assert "set (HF_TOKEN)" in screen


def test_openmp_waits_passively_only_where_other_work_keeps_the_cpus_busy():
    from squeezecli.environment import choose_openmp_wait, others_running

    def choose(environ, others, cores=2, torch_loaded=False):
        return choose_openmp_wait(environ, others=lambda: others, cores=cores, torch_loaded=torch_loaded)

    environ: dict[str, str] = {}
    assert choose(environ, 0) is None and environ == {}  # idle: OpenMP's own brief spin
    assert choose(environ, 1) == "PASSIVE" and environ == {"OMP_WAIT_POLICY": "PASSIVE"}
    assert choose({}, 1, cores=4) is None and choose({}, 2, cores=4) == "PASSIVE"  # half of the CPUs
    for own in ({"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "1000"}):
        assert choose(dict(own), 5) is None  # the user's setting is theirs
    assert choose({}, 5, torch_loaded=True) is None  # libgomp has read it already: too late

    readings = iter(["0.50 0.40 0.30 3/250 1234", "0.50 0.40 0.30 5/250 1234", "0.50 0.40 0.30 2/250 1234"])
    assert others_running(lambda: next(readings), pause=0) == 1  # the fewest, less this process
    assert others_running(lambda: "garbage", pause=0) == 0
    assert others_running(lambda: (_ for _ in ()).throw(OSError("no /proc")), pause=0) == 0


def test_onednn_keeps_a_small_primitive_cache_unless_the_user_sized_it():
    from squeezecli.environment import ONEDNN_PRIMITIVE_CACHE, choose_library_settings

    environ = {"OMP_WAIT_POLICY": "ACTIVE"}  # OpenMP's own setting stands beside it
    choose_library_settings(environ)
    assert environ == {"OMP_WAIT_POLICY": "ACTIVE", "ONEDNN_PRIMITIVE_CACHE_CAPACITY": str(ONEDNN_PRIMITIVE_CACHE)}
    for own in ({"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "2048"}, {"DNNL_PRIMITIVE_CACHE_CAPACITY": "0"}):
        environ = {**own, "OMP_WAIT_POLICY": "ACTIVE"}
        choose_library_settings(environ)
        assert environ == {**own, "OMP_WAIT_POLICY": "ACTIVE"}  # the user's size is theirs


def test_a_process_started_beside_a_busy_loop_waits_passively_and_a_user_setting_stands(tmp_path):
    """Whole processes: `squeeze doctor --json` started while a busy loop runs reports PASSIVE (chosen
    before torch loaded); with OMP_WAIT_POLICY=ACTIVE set by the user, ACTIVE."""
    import subprocess

    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        loaded = subprocess.run([sys.executable, "-m", "squeezecli", "doctor", "--json"], env=env, cwd=tmp_path,
                                capture_output=True, text=True, timeout=120, check=True)
    finally:
        busy.kill()
        busy.wait()
    assert json.loads(loaded.stdout)["torch"]["omp_wait_policy"] == "PASSIVE"
    mine = subprocess.run([sys.executable, "-m", "squeezecli", "doctor", "--json"], env={**env, "OMP_WAIT_POLICY": "ACTIVE"},
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(mine.stdout)["torch"]["omp_wait_policy"] == "ACTIVE"


def test_the_float_projection_kernel_is_reported(monkeypatch):
    """Weights packed at load where torch's packed oneDNN ops pass their probe; plain otherwise."""
    from squeezecli.model import kernels

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert kernels.packed_kernels()
    assert "packed at load" in doctor()["int8"]["kernels"]["fp32"]["projections"]
    monkeypatch.setattr(kernels, "packed_kernels", lambda: False)
    assert "re-laid out on every call" in doctor()["int8"]["kernels"]["fp32"]["projections"]
