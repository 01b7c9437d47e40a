"""What squeeze must never do, whatever it is given: turn a model name into a path outside its caches, run
code from a checkpoint, show or leak the Hub token, write outside its caches and the requested output,
or let escape sequences from input drive the user's terminal."""

import json
import os
import pickle
import stat
import subprocess
import sys
from pathlib import Path

import factory
import pytest
import torch
from click.testing import CliRunner

from squeezecli.cli import squeeze
from squeezecli.errors import ExitStatus

ROOT = Path(__file__).resolve().parent.parent
SECRET = "hf_SECRETsecurityTEST0123456789abcdefXYZ"
RIGHT_TOKEN = "hf_theRightTokenForTheGatedRepo000000"


def run(args, input="some text\n"):
    return CliRunner().invoke(squeeze, args, input=input, catch_exceptions=False)


def file_tree(root: Path) -> dict[str, tuple]:
    """Every path under `root` with its type, and for files their size and modification time."""
    tree = {}
    for directory, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(directory, name)
            info = path.lstat()
            kind = stat.S_IFMT(info.st_mode)
            tree[path.relative_to(root).as_posix()] = (kind,) if stat.S_ISDIR(info.st_mode) else (
                kind, info.st_size, info.st_mtime_ns)
    return tree


def changed_paths(before: dict[str, tuple], after: dict[str, tuple]) -> set[str]:
    return {path for path in before.keys() | after.keys() if before.get(path) != after.get(path)}


def outside(paths: set[str], allowed: tuple[str, ...]) -> list[str]:
    return sorted(p for p in paths if not any(p == a or p.startswith(a + "/") for a in allowed))


def assert_one_line_error(result, status):
    """The run failed with `status` and one error line (and perhaps a hint), after any one-line notices."""
    assert result.exit_code == status, result.output
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    errors = [i for i, line in enumerate(lines) if line.startswith("squeeze: error: ")]
    assert len(errors) == 1, result.stderr
    notices, error = lines[:errors[0]], lines[errors[0]:]
    assert all(line.startswith("squeeze: ") for line in notices), result.stderr
    assert len(error) == 1 or (len(error) == 2 and error[1].startswith("  hint: ")), result.stderr


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """An empty current directory, one level below tmp_path so that "../x" would land inside tmp_path."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


# -- model names and revisions are checked before they become paths or requests ------------------------


@pytest.mark.parametrize("name", [
    "../x", "../../x", "a/../../b", "owner/../name", "..", ".", "./", "owner/name/extra", "/etc/passwd", "/etc", "/",
    "/nonexistent/model", "~no-such-user-here/x", "name\x00", "https://evil.example/owner/name", "C:\\models\\x",
    "%2e%2e/x", "owner/name..", ".hidden", "a--b/c", "x" * 300, "owner/na me", "owner/\u202ename",
])
@pytest.mark.parametrize("precision", ["int8", "fp32"])
def test_names_that_are_not_models_are_refused_before_any_path_or_request(hub, tmp_path, workdir, name, precision):
    before = file_tree(tmp_path)
    result = run(["sentiment", "--model", name, "--precision", precision])
    assert_one_line_error(result, ExitStatus.MODEL)
    assert hub.requests == []
    assert outside(changed_paths(before, file_tree(tmp_path)), ("squeeze-cache", "hf-home")) == []


@pytest.mark.parametrize("revision", ["../../x", "refs/../../x", "/etc", "main/..", "..", "a" * 300, "main\x00",
                                      "main:evil"])
def test_revisions_that_could_escape_the_cache_are_refused(hub, tmp_path, workdir, revision):
    before = file_tree(tmp_path)
    result = run(["sentiment", "--model", "owner/name", f"--revision={revision}"])
    assert_one_line_error(result, ExitStatus.MODEL)
    assert hub.requests == []
    assert outside(changed_paths(before, file_tree(tmp_path)), ("squeeze-cache", "hf-home")) == []


# -- checkpoints are data, never code ---------------------------------------------------------------------


class RunsCode:
    """Unpickled, this would create `marker`: what a malicious pytorch_model.bin does, harmlessly."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


def malicious_model(directory: Path, marker: Path, fmt: str, architectures: bool = True) -> Path:
    """A complete model directory whose weights file runs code when unpickled."""
    factory.build(directory, "distilbert", "sequence")
    (directory / "model.safetensors").unlink()
    weights = directory / "pytorch_model.bin"
    payload = {"distilbert.embeddings.word_embeddings.weight": torch.zeros(2, 2), "extra": RunsCode(marker)}
    if fmt == "torch-zip":
        torch.save(payload, weights)
    else:  # a bare pickle, which torch.load reads as its legacy format
        weights.write_bytes(pickle.dumps(payload, protocol=2))
    if not architectures:  # then the head is found from the tensor names, a second place that reads weights
        config = (directory / "config.json").read_text()
        (directory / "config.json").write_text(config.replace('"architectures"', '"not_architectures"'))
    return directory


@pytest.mark.parametrize("fmt, architectures, args", [
    ("torch-zip", True, ["sentiment"]),
    ("torch-zip", True, ["sentiment", "--precision", "int8"]),
    ("torch-zip", True, ["sentiment", "--precision", "fp32"]),
    ("bare-pickle", True, ["sentiment"]),
    ("bare-pickle", True, ["models", "pull"]),
    ("torch-zip", False, ["sentiment", "--precision", "fp32"]),
    ("torch-zip", False, ["models", "pull"]),
])
def test_a_pickle_that_runs_code_is_refused(tmp_path, workdir, fmt, architectures, args):
    marker = tmp_path / "code-ran"
    model = malicious_model(tmp_path / "evil-model", marker, fmt, architectures)
    command = [*args, str(model)] if args[0] == "models" else [*args, "--model", str(model)]
    result = run(command)
    assert_one_line_error(result, ExitStatus.MODEL)
    assert "refusing" in result.stderr
    assert "quantizing" not in result.stderr  # the first-use notice comes only once a checkpoint has loaded
    assert not marker.exists()
    # The file really is malicious: loaded the unsafe way, it runs its code.
    torch.load(model / "pytorch_model.bin", weights_only=False) if fmt == "torch-zip" else pickle.loads(
        (model / "pytorch_model.bin").read_bytes())
    assert marker.exists()


def test_a_malicious_pickle_from_the_hub_is_refused(hub, tmp_path, workdir):
    marker = tmp_path / "code-ran"
    hub.add_repo("evil/model", malicious_model(tmp_path / "evil-model", marker, "torch-zip"))
    result = run(["sentiment", "--model", "evil/model"])
    assert_one_line_error(result, ExitStatus.MODEL)
    assert not marker.exists()
    assert not list((tmp_path / "squeeze-cache").glob("entries/*"))  # nothing was cached from it


# -- the token --------------------------------------------------------------------------------------------


@pytest.fixture
def gated(hub, tmp_path):
    hub.add_repo("owner/gated", factory_model(tmp_path / "gated-model"), gated=True, token=RIGHT_TOKEN)
    return hub


def factory_model(directory: Path) -> Path:
    factory.build(directory, "distilbert", "sequence")
    return directory


@pytest.mark.parametrize("debug", ["0", "1"])
def test_the_token_never_appears_in_any_message(gated, tmp_path, workdir, monkeypatch, debug):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    monkeypatch.setenv("SQUEEZE_DEBUG", debug)
    runs = {
        "pull of a gated model with the wrong token": (["models", "pull", "owner/gated"], ExitStatus.NETWORK),
        "first use of a gated model": (["sentiment", "--model", "owner/gated"], ExitStatus.NETWORK),
        "fp32 run of a gated model": (["sentiment", "--model", "owner/gated", "--precision", "fp32"],
                                      ExitStatus.NETWORK),
        "an unknown model": (["sentiment", "--model", "nobody/no-such-model"], ExitStatus.MODEL),
        "info on a model never pulled": (["models", "info", "owner/gated"], ExitStatus.MODEL),
        "doctor": (["doctor"], ExitStatus.OK),
        "models list": (["models", "list"], ExitStatus.OK),
    }
    for what, (args, status) in runs.items():
        result = run(args)
        assert result.exit_code == status, (what, result.output)
        assert SECRET not in result.stdout and SECRET not in result.stderr, what
        if debug == "1" and status != ExitStatus.OK:
            assert "Traceback" in result.stderr, what  # the debug path really ran
    assert SECRET.encode() not in b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())


def test_the_token_never_appears_on_a_real_processs_stderr(gated, tmp_path, workdir):
    """Library warnings and logging go to the process's own stderr, which CliRunner does not capture."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_TOKEN=SECRET, SQUEEZE_DEBUG="1")
    done = subprocess.run([sys.executable, "-m", "squeezecli", "models", "pull", "owner/gated"], env=env,
                          capture_output=True, text=True, timeout=120, cwd=workdir)
    assert done.returncode == ExitStatus.NETWORK, done.stderr
    assert "HF_TOKEN" in done.stderr  # the message says which token was refused...
    assert SECRET not in done.stdout + done.stderr  # ...but not what it is


def test_the_token_goes_to_the_hub_only(gated, workdir, monkeypatch):
    """With the right token the pull works, and the LFS downloads redirected to another host (the CDN)
    do not carry it."""
    monkeypatch.setenv("HF_TOKEN", RIGHT_TOKEN)
    result = run(["models", "pull", "owner/gated"])
    assert result.exit_code == 0, result.stderr
    cdn = [request for request in gated.requests if request.kind == "cdn"]
    assert cdn, "no download went through the CDN: the check below would pass vacuously"
    assert all("authorization" not in request.headers for request in cdn)
    hub_requests = [request for request in gated.requests if request.kind != "cdn"]
    assert all(request.headers.get("authorization") == f"Bearer {RIGHT_TOKEN}" for request in hub_requests)


# -- nothing written outside the caches and the requested output ---------------------------------------------


def isolated_home(tmp_path: Path, env: dict[str, str]) -> dict[str, str]:
    """HOME, the XDG directories and TMPDIR all inside tmp_path, so any stray write shows up there."""
    for name, relative in [("HOME", "home"), ("XDG_CACHE_HOME", "xdg-cache"), ("XDG_CONFIG_HOME", "home/.config"),
                           ("XDG_DATA_HOME", "home/.local/share"), ("XDG_STATE_HOME", "home/.local/state"),
                           ("TMPDIR", "tmpdir")]:
        (tmp_path / relative).mkdir(parents=True, exist_ok=True)
        env[name] = str(tmp_path / relative)
    env["PYTHONPATH"] = str(ROOT)
    return env


def run_shell(commands: list[list[str]], env: dict[str, str], cwd: Path, output: Path) -> None:
    for args in commands:
        with open(output, "ab") as out:
            done = subprocess.run([sys.executable, "-m", "squeezecli", *args], stdout=out, stderr=subprocess.PIPE,
                                  text=True, env=env, cwd=cwd, timeout=180, input="a fine day\nawful\n")
        assert done.returncode == 0, (args, done.stderr)


def test_pull_and_run_write_only_to_the_caches_and_the_output(hub, tmp_path, workdir):
    hub.add_repo("owner/model", factory_model(tmp_path / "published"))
    env = isolated_home(tmp_path, dict(os.environ))
    env.update(SQUEEZE_CACHE_DIR=str(tmp_path / "squeeze-cache"), HF_HOME=str(tmp_path / "hf-home"))
    env.pop("HF_HUB_CACHE")  # from HF_HOME, as users set it
    output = workdir / "out.jsonl"
    output.touch()
    before = file_tree(tmp_path)
    run_shell([["models", "pull", "owner/model"], ["sentiment", "--model", "owner/model", "-"]], env, workdir, output)
    changed = changed_paths(before, file_tree(tmp_path))
    assert outside(changed, ("squeeze-cache", "hf-home", "work/out.jsonl")) == []
    assert any(p.startswith("squeeze-cache/entries/") for p in changed)  # the run really used the caches
    assert any(p.startswith("hf-home/hub/") for p in changed)
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert rows[0]["id"] == "owner/model"  # `models pull` prints the entry it made
    assert [row["line"] for row in rows[1:]] == [1, 2]


def test_the_default_caches_are_under_xdg_cache_home(hub, tmp_path, workdir):
    """Without SQUEEZE_CACHE_DIR and HF_HOME, both caches go to $XDG_CACHE_HOME, and nowhere else."""
    hub.add_repo("owner/model", factory_model(tmp_path / "published"))
    env = isolated_home(tmp_path, dict(os.environ))
    for name in ("SQUEEZE_CACHE_DIR", "HF_HOME", "HF_HUB_CACHE"):
        env.pop(name, None)
    output = workdir / "out.jsonl"
    output.touch()
    before = file_tree(tmp_path)
    run_shell([["sentiment", "--model", "owner/model", "--precision", "int8"]], env, workdir, output)  # pulls on first use
    changed = changed_paths(before, file_tree(tmp_path))
    assert outside(changed, ("xdg-cache/squeeze", "xdg-cache/huggingface", "work/out.jsonl")) == []
    assert any(p.startswith("xdg-cache/squeeze/") for p in changed)
    assert any(p.startswith("xdg-cache/huggingface/hub/") for p in changed)


# -- input text must not drive the terminal -------------------------------------------------------------------


ESCAPES = "\x1b[2J\x1b]0;pwned\x07\x1b]52;c;ZXZpbA==\x1b\\\x9b31m\x7f"


def test_escape_sequences_in_input_are_shown_not_obeyed_in_a_table(tmp_path, monkeypatch):
    path = tmp_path / "hostile.txt"
    path.write_text(f"before {ESCAPES} after\n", encoding="utf-8")
    result = CliRunner().invoke(squeeze, ["echo-lines", "--format", "table", str(path)], catch_exceptions=False)
    assert result.exit_code == 0
    assert not any(char in result.stdout for char in "\x1b\x07\x9b\x7f")
    assert "\u241b[2J" in result.stdout  # ESC shown as its control picture
    json_run = CliRunner().invoke(squeeze, ["echo-lines", str(path)], catch_exceptions=False)
    assert ESCAPES in json_run.stdout or "\\u001b" in json_run.stdout  # JSON keeps the exact text, escaped


def test_escape_sequences_in_a_file_name_are_shown_not_obeyed_in_errors(tmp_path):
    name = str(tmp_path / f"no{ESCAPES}such")
    result = CliRunner().invoke(squeeze, ["echo-lines", name], catch_exceptions=False)
    assert result.exit_code == ExitStatus.INPUT
    assert not any(char in result.stderr for char in "\x1b\x07\x9b\x7f")
    assert "\u241b]0;pwned" in result.stderr
