"""`squeeze models pull|list|info|rm|aliases` through Click, against the loopback Hub.

Through squeeze's own command group, so errors come out as the CLI's one-line messages and exit statuses,
exactly as `squeeze models ...` reports them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import factory
import pytest
from click.testing import CliRunner, Result
from hubserver import HubServer

from squeezecli import environment
from squeezecli.cli import squeeze as root
from squeezecli.errors import ExitStatus

TOKEN = "hf_SecretTokenThatMustNeverBeShown42"


@pytest.fixture(scope="module")
def sst(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("checkpoints") / "sst"
    factory.build(directory, "distilbert", "sequence", tokenizer="wordpiece_cased")
    return directory


def squeeze(*args: str) -> Result:
    """`squeeze models ARGS...` through the real command group (its context settings, -h included)."""
    return CliRunner().invoke(root, ["models", *args])


def json_lines(result: Result) -> list[dict]:
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_pull_list_info_rm(hub: HubServer, sst: Path) -> None:
    commit = hub.add_repo("acme/sst", sst)

    [pulled] = json_lines(squeeze("pull", "acme/sst"))
    assert (pulled["id"], pulled["commit"], pulled["architecture"]) == ("acme/sst", commit, "distilbert")
    assert pulled["heads"] == ["sequence", "base"]

    [listed] = json_lines(squeeze("list"))
    assert listed["id"] == "acme/sst" and listed["commit"] == commit
    assert {"parameters", "size_int8", "size_source", "last_used"} <= set(listed)
    assert 0 < listed["size_int8"] < listed["size_source"]

    [described] = json_lines(squeeze("info", "acme/sst", "--verify"))
    assert described["labels"] == ["NEGATIVE", "POSITIVE"]
    assert described["verified"] == "sha256"
    assert "model.safetensors" in described["files"]

    removed = squeeze("rm", "acme/sst")
    assert removed.exit_code == 0 and "acme/sst" in removed.stdout
    assert json_lines(squeeze("list")) == []


def test_list_is_a_table_on_a_terminal(hub: HubServer, sst: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    commit = hub.add_repo("acme/sst", sst)
    squeeze("pull", "acme/sst")
    monkeypatch.setattr(environment, "is_terminal", lambda stream: True)

    table = squeeze("list")
    assert table.exit_code == 0
    assert "acme/sst" in table.stdout and commit[:8] in table.stdout and "{" not in table.stdout
    [forced] = json_lines(squeeze("list", "--json"))
    assert forced["commit"] == commit


def test_list_marks_entries_whose_files_no_longer_match_their_manifest(hub: HubServer, sst: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """From sizes and times, as a run checks first: a touched file is "modified" (a run checks its sha256),
    a file cut short or missing "damaged" (a run refuses it)."""
    hub.add_repo("acme/sst", sst)
    [pulled] = json_lines(squeeze("pull", "acme/sst"))
    assert json_lines(squeeze("list"))[0]["state"] == "ok"
    weights = next(Path(pulled["path"]).glob("*.safetensors"))
    os.utime(weights, ns=(1, 1))
    assert json_lines(squeeze("list"))[0]["state"] == "modified"
    monkeypatch.setattr(environment, "is_terminal", lambda stream: True)
    table = squeeze("list")
    assert "acme/sst (modified)" in table.stdout and "a run checks their checksums" in table.stderr
    with open(weights, "r+b") as f:
        f.truncate(weights.stat().st_size - 1)
    table = squeeze("list")
    assert table.exit_code == 0 and "acme/sst (damaged)" in table.stdout
    assert "models pull --force MODEL` rebuilds it" in table.stderr


@pytest.mark.parametrize("columns", [80, 100, 200])
def test_list_keeps_a_long_model_id_whole_by_leaving_out_columns(hub: HubServer, sst: Path,
                                                                monkeypatch: pytest.MonkeyPatch, columns: int) -> None:
    """A Hub id as long as real ones (55 characters) stays on one line: at 100 columns the source size,
    parameter count and architecture are left out (models info has them), at 80 the commit and last use
    too, at 200 nothing."""
    long_id = "acme-research/distilbert-base-uncased-finetuned-sst2-en"
    hub.add_repo(long_id, sst)
    squeeze("pull", long_id)
    monkeypatch.setattr(environment, "is_terminal", lambda stream: True)
    monkeypatch.setenv("COLUMNS", str(columns))
    table = squeeze("list")
    assert table.exit_code == 0, table.output
    header, row = table.stdout.splitlines()
    assert long_id in row and max(len(header), len(row)) <= columns
    expected = {80: ["model", "head", "int8"], 100: ["model", "commit", "head", "int8", "last", "used"],
                200: ["model", "commit", "arch", "head", "params", "int8", "source", "last", "used"]}[columns]
    assert header.split() == expected


def test_unknown_model_exits_with_the_model_status(hub: HubServer) -> None:
    result = squeeze("pull", "acme/nothing-here")
    assert result.exit_code == ExitStatus.MODEL
    assert result.stderr.startswith("squeeze: error: model 'acme/nothing-here' was not found")
    assert "Traceback" not in result.output


def test_gated_model_exits_with_the_network_status_and_hides_the_token(
    hub: HubServer, sst: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.add_repo("acme/gated", sst, gated=True, token=TOKEN)
    anonymous = squeeze("pull", "acme/gated")
    assert anonymous.exit_code == ExitStatus.NETWORK and "HF_TOKEN" in anonymous.stderr

    monkeypatch.setenv("HF_TOKEN", "hf_WrongButStillSecret")
    wrong = squeeze("pull", "acme/gated")
    assert wrong.exit_code == ExitStatus.NETWORK and "hf_WrongButStillSecret" not in wrong.output


def test_damaged_entry_fails_verify_with_the_cache_status(hub: HubServer, sst: Path) -> None:
    hub.add_repo("acme/sst", sst)
    [pulled] = json_lines(squeeze("pull", "acme/sst"))
    weights = Path(pulled["path"]) / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))

    result = squeeze("info", "acme/sst", "--verify")
    assert result.exit_code == ExitStatus.CACHE
    assert "squeeze models pull --force acme/sst" in result.stderr

    assert squeeze("pull", "--force", "acme/sst").exit_code == 0
    assert squeeze("info", "acme/sst", "--verify").exit_code == 0


def test_rm_needs_models_or_all_and_refuses_unknown_ones(hub: HubServer, sst: Path) -> None:
    hub.add_repo("acme/sst", sst)
    squeeze("pull", "acme/sst")

    assert squeeze("rm").exit_code == ExitStatus.USAGE
    assert squeeze("rm", "acme/sst", "--all").exit_code == ExitStatus.USAGE
    unknown = squeeze("rm", "acme/sst", "acme/typo")
    assert unknown.exit_code == ExitStatus.MODEL and "acme/typo" in unknown.stderr
    assert len(json_lines(squeeze("list"))) == 1

    assert squeeze("rm", "--all").exit_code == 0
    assert json_lines(squeeze("list")) == []


def test_info_of_a_model_not_cached(hub: HubServer) -> None:
    result = squeeze("info", "distilbert-sst2")
    assert result.exit_code == ExitStatus.MODEL and "not in squeeze's model cache" in result.stderr
    assert hub.requests == []


def test_aliases_name_one_default_per_task() -> None:
    rows = json_lines(squeeze("aliases"))
    defaults = {row["task"]: row["alias"] for row in rows if row["default"]}
    assert defaults == {"sentiment": "distilbert-sst2", "zero-shot": "squeezebert-mnli", "qa": "minilm-squad2",
                        "ner": "bert-ner", "embed": "minilm-embed", "rerank": "minilm-rerank"}
    assert {row["alias"]: row["id"] for row in rows}["squeezebert-qa"] == "mrm8488/squeezebert-finetuned-squadv1"


def test_list_info_rm_do_not_import_torch(hub: HubServer, sst: Path) -> None:
    hub.add_repo("acme/sst", sst)
    assert squeeze("pull", "acme/sst").exit_code == 0
    script = textwrap.dedent("""
        import sys
        from click.testing import CliRunner
        from squeezecli.cli.main import SqueezeGroup
        from squeezecli.cli.models import models
        group = SqueezeGroup(name="squeeze")
        group.add_command(models)
        for args in (["list"], ["info", "acme/sst", "--verify"], ["aliases"], ["rm", "acme/sst"], ["list"]):
            result = CliRunner().invoke(group, ["models", *args])
            assert result.exit_code == 0, (args, result.output)
            print(result.stdout.strip() or "-")
        print("torch imported" if "torch" in sys.modules else "no torch")
    """)
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False,
                           env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert child.returncode == 0, child.stderr
    lines = child.stdout.splitlines()
    assert lines[-1] == "no torch"
    assert json.loads(lines[0])["id"] == "acme/sst"
    assert lines[-2] == "-"  # the second list: removed


def test_a_local_model_path_is_shown_short_in_the_list(monkeypatch):
    from squeezecli.cli.models import _short_path

    monkeypatch.setenv("HOME", "/home/ada")
    assert _short_path("/home/ada/models/tiny") == "~/models/tiny"
    long = "/srv/" + "/".join(f"level{i}" for i in range(12)) + "/my-model"
    shown = _short_path(long)
    assert len(shown) == 40 and shown.startswith("…") and shown.endswith("/level11/my-model")
    assert _short_path("/home/adam/x") == "/home/adam/x"  # another user's home is not ~
