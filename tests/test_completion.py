"""Shell completion: the committed scripts are what the CLI generates, the protocol behind them offers the
right candidates, works from a real bash, and never imports torch (every Tab press runs it)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.shell_completion import ShellComplete
from click.testing import CliRunner

from squeezecli.cli import squeeze
from squeezecli.errors import ExitStatus

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = {"bash": "squeeze.bash", "zsh": "_squeeze", "fish": "squeeze.fish"}
# Modules that cost seconds to import, or pull in torch: none of them may load for a Tab press.
HEAVY_MODULES = ("torch", "numpy", "transformers", "tokenizers", "safetensors", "huggingface_hub")


def squeeze_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("_SQUEEZE_COMPLETE", None)
    env.update(extra)
    return env


def protocol(shell: str, words: str, cword: int, *python_flags: str) -> subprocess.CompletedProcess:
    """What the installed script runs on Tab: squeeze itself, with the completion variables set.

    bash and zsh pass the index of the word under the cursor, fish passes the word itself."""
    current = (words.split(" ") + [""])[cword] if shell == "fish" else str(cword)
    return subprocess.run(
        [sys.executable, *python_flags, "-m", "squeezecli"],
        env=squeeze_env(_SQUEEZE_COMPLETE=f"{shell}_complete", COMP_WORDS=words, COMP_CWORD=current),
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )


def candidates(args: list[str], incomplete: str) -> list[tuple[str, str]]:
    """(type, value) of each completion Click's machinery offers, in process."""
    completer = ShellComplete(squeeze, {}, "squeeze", "_SQUEEZE_COMPLETE")
    return [(item.type, item.value) for item in completer.get_completions(args, incomplete)]


@pytest.mark.parametrize("shell", SCRIPTS)
def test_committed_scripts_are_what_the_cli_generates(shell):
    committed = (ROOT / "completions" / SCRIPTS[shell]).read_bytes()
    generated = CliRunner().invoke(squeeze, ["completion", shell], catch_exceptions=False)
    assert generated.exit_code == 0
    assert generated.stdout_bytes == committed, (
        f"completions/{SCRIPTS[shell]} is stale: regenerate it with "
        f"`squeeze completion {shell} > completions/{SCRIPTS[shell]}`"
    )


@pytest.mark.parametrize("shell", SCRIPTS)
def test_clicks_own_source_protocol_agrees_and_names_squeeze_whatever_the_invocation(shell):
    # Started as `python -m squeezecli`: the script must still complete the command users type.
    source = subprocess.run([sys.executable, "-m", "squeezecli"], env=squeeze_env(_SQUEEZE_COMPLETE=f"{shell}_source"),
                            capture_output=True, timeout=60, cwd=ROOT)
    assert source.returncode == 0
    assert source.stdout == (ROOT / "completions" / SCRIPTS[shell]).read_bytes()
    script = source.stdout.decode()
    assert "_SQUEEZE_COMPLETE" in script and "_squeeze_completion" in script
    assert "squeezecli" not in script and "python" not in script and "__main__" not in script


def test_the_scripts_register_for_the_squeeze_command():
    scripts = {shell: (ROOT / "completions" / name).read_text() for shell, name in SCRIPTS.items()}
    assert "complete -o nosort -F _squeeze_completion squeeze" in scripts["bash"]
    assert scripts["zsh"].startswith("#compdef squeeze\n")  # so the file works from $fpath as _squeeze
    assert "complete --no-files --command squeeze" in scripts["fish"]


@pytest.mark.parametrize("args, incomplete, expected", [
    ([], "sen", [("plain", "sentiment")]),
    ([], "mo", [("plain", "models")]),
    ([], "co", [("plain", "completion")]),
    (["sentiment"], "--prec", [("plain", "--precision")]),
    (["sentiment", "--precision"], "", [("plain", "auto"), ("plain", "bf16"), ("plain", "int8"), ("plain", "fp32")]),
    (["ner", "--aggregation"], "a", [("plain", "average")]),
    (["completion"], "", [("plain", "bash"), ("plain", "zsh"), ("plain", "fish")]),
    # Input files are completed by the shell's own file-name completion.
    (["sentiment"], "revi", [("file", "revi")]),
    (["embed", "--jsonl"], "", [("file", "")]),
    (["similar", "query", "--corpus"], "do", [("file", "do")]),
])
def test_completion_candidates(args, incomplete, expected):
    assert candidates(args, incomplete) == expected


def test_top_level_offers_every_public_command_and_hides_the_hidden_one():
    offered = {value for _, value in candidates([], "")}
    assert {"sentiment", "classify", "qa", "ner", "embed", "similar", "models", "completion", "doctor"} <= offered
    assert "echo-lines" not in offered


def test_models_subcommands_are_offered():
    assert {value for _, value in candidates(["models"], "")} == {"pull", "list", "info", "rm", "aliases"}


@pytest.mark.parametrize("words, cword", [
    ("squeeze sen", 1),
    ("squeeze sentiment --model ", 3),
    ("squeeze models rm ", 3),
    ("squeeze doctor --", 2),
])
def test_completion_never_imports_torch(words, cword):
    done = protocol("bash", words, cword, "-X", "importtime")
    assert done.returncode == 0, done.stderr
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert imported, "-X importtime printed nothing: the check would pass vacuously"
    heavy = sorted(name for name in imported if name.split(".")[0] in HEAVY_MODULES)
    assert heavy == [], f"a Tab press imported {heavy}"


@pytest.mark.parametrize("shell, expected", [
    ("bash", "plain,sentiment"),
    ("zsh", "plain\nsentiment\nSentiment of each line"),  # zsh gets each command's help as its description
    ("fish", "plain,sentiment\tSentiment of each line"),
])
def test_each_shells_protocol_answers(shell, expected):
    done = protocol(shell, "squeeze sen", 1)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(expected), done.stdout


def test_a_real_bash_completes_through_the_committed_script(tmp_path):
    """Source completions/squeeze.bash in bash, with `squeeze` on PATH, and press Tab by hand."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    launcher = bin_dir / "squeeze"
    launcher.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m squeezecli "$@"\n')
    launcher.chmod(0o755)
    script = ROOT / "completions" / "squeeze.bash"
    tab = (
        f"source {script}\n"
        "complete -p squeeze\n"
        "tab() { COMP_WORDS=(\"$@\"); COMP_CWORD=$(( $# - 1 )); COMPREPLY=(); _squeeze_completion squeeze;"
        " echo \"${COMPREPLY[*]}\"; }\n"
        "tab squeeze sen\n"
        "tab squeeze sentiment --precision ''\n"
        "tab squeeze models ''\n"
    )
    done = subprocess.run(["bash", "--norc", "--noprofile", "-c", tab], capture_output=True, text=True, timeout=60,
                          env=squeeze_env(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    registered, sen, precision, models = done.stdout.splitlines()
    assert registered == "complete -o nosort -F _squeeze_completion squeeze"
    assert sen == "sentiment"
    assert precision == "auto bf16 int8 fp32"
    assert models.split() == ["aliases", "info", "list", "pull", "rm"]


def test_completion_shell_defaults_to_the_login_shell(monkeypatch):
    monkeypatch.setenv("SHELL", "/usr/local/bin/fish")
    result = CliRunner().invoke(squeeze, ["completion"], catch_exceptions=False)
    assert result.exit_code == 0
    assert result.stdout_bytes == (ROOT / "completions" / "squeeze.fish").read_bytes()


@pytest.mark.parametrize("args, shell_env", [(["completion"], "/bin/tcsh"), (["completion", "powershell"], "/bin/bash")])
def test_an_unknown_shell_is_a_usage_error(monkeypatch, args, shell_env):
    monkeypatch.setenv("SHELL", shell_env)
    result = CliRunner().invoke(squeeze, args, catch_exceptions=False)
    assert result.exit_code == ExitStatus.USAGE
    assert "bash" in result.stderr and "zsh" in result.stderr and "fish" in result.stderr
    assert result.stdout == ""


def test_models_complete_from_the_catalogue_and_the_caches(tmp_path, monkeypatch):
    """-m offers the aliases and every Hub id cached here (squeeze's entries, Hugging Face downloads);
    `models rm` only what squeeze has cached; a path is left to the shell."""
    import json

    hf_cache = tmp_path / "hf"
    (hf_cache / "models--acme--tiny-bert" / "snapshots").mkdir(parents=True)
    monkeypatch.setenv("HF_HUB_CACHE", str(hf_cache))
    monkeypatch.setenv("SQUEEZE_CACHE_DIR", str(tmp_path / "squeeze"))
    entry = tmp_path / "squeeze" / "entries" / "hub--acme--cached-one--" f"{'a' * 40}"
    entry.mkdir(parents=True)
    from squeezecli.store import cache

    manifest = {"format": cache.MANIFEST_FORMAT, "source": {"kind": "hub", "id": "acme/cached-one", "alias": None, "commit": "a" * 40,
                           "revision": "main"}, "heads": ["base"], "files": {}, "quantization": {"meta": {}},
                "created": 0, "parameters": 0, "architecture": "bert"}
    (entry / cache.MANIFEST).write_text(json.dumps(manifest))
    offered = dict(candidates(["sentiment", "-m"], ""))
    values = [value for _, value in candidates(["sentiment", "-m"], "")]
    assert {"distilbert-sst2", "minilm-embed", "acme/tiny-bert", "acme/cached-one"} <= set(values)
    assert [value for _, value in candidates(["sentiment", "-m"], "acme/t")] == ["acme/tiny-bert"]
    assert candidates(["embed", "--model"], "./my") == [("dir", "./my")]
    assert offered  # (type, value) pairs
    assert [value for _, value in candidates(["models", "rm"], "")] == ["acme/cached-one"]


def test_the_committed_man_page_is_what_the_cli_generates():
    from squeezecli.cli.help import man_page

    committed = (Path(__file__).resolve().parents[1] / "docs" / "squeeze.1").read_text(encoding="utf-8")
    assert committed == man_page(squeeze), "regenerate it: squeeze help --man > docs/squeeze.1"
    assert ".SS squeeze index build" in committed and ".SH EXIT STATUS" in committed


def test_help_topics_come_from_the_facts_own_homes():
    from click.testing import CliRunner

    from squeezecli.environment import VARIABLES
    from squeezecli.errors import EXIT_MEANINGS, ExitStatus

    run = CliRunner().invoke
    statuses = run(squeeze, ["help", "exit-status"]).output
    assert [int(line.split()[0]) for line in statuses.splitlines()] == [int(s) for s in ExitStatus]
    assert EXIT_MEANINGS[ExitStatus.CACHE] in statuses
    assert all(name in run(squeeze, ["help", "environment"]).output for name in VARIABLES)
    assert "--parquet" in run(squeeze, ["help", "formats"]).output
    assert run(squeeze, ["help", "qa"]).output.startswith("Usage: squeeze qa")
    unknown = run(squeeze, ["help", "nope"])
    assert unknown.exit_code == 2 and "no topic or command 'nope'" in unknown.stderr
