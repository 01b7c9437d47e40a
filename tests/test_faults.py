"""Faults of the machine and of what the user hands squeeze: each is one line on stderr with its documented
exit status, nothing half-written stays in the cache, and the next run after the fault is mended works.

The faults are real where they can be: a read-only or full file system (a tmpfs in a private mount
namespace), a file `nobody` may not read, a closed or full stdout, a config.json that asks for a model of
absurd size, input without a single newline. See tests/processes.py.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import factory
import pytest
import torch
from processes import (
    ROOT,
    SQUEEZE,
    in_small_filesystem,
    run_measured,
    squeeze_env,
    unprivileged,
)
from safetensors.torch import load_file, save_file

from squeezecli.errors import ExitStatus, ModelError


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """A tiny DistilBERT sentiment checkpoint (about 8 MB of fp32 weights, 2.4 MB as int8)."""
    directory = tmp_path_factory.mktemp("faults") / "sst"
    factory.build(directory, "distilbert", "sequence")
    return directory


def run(args: list[str], tmp_path: Path, *, input: bytes | None = b"hi\n", env: dict | None = None,
        privileged: bool = True, **popen) -> subprocess.CompletedProcess:
    command = SQUEEZE + args if privileged else unprivileged(SQUEEZE + args)
    return subprocess.run(command, input=input, capture_output=True, cwd=tmp_path,
                          env=env or squeeze_env(tmp_path), timeout=300, **popen)


def assert_one_line(result: subprocess.CompletedProcess, status: int, starts: str) -> str:
    stderr = result.stderr.decode()
    assert result.returncode == status, stderr
    lines = [line for line in stderr.splitlines() if not line.startswith("squeeze: ") or "error" in line]
    assert lines and lines[0].startswith(starts), stderr
    assert len(lines) == 1 or (len(lines) == 2 and lines[1].startswith("  hint: ")), stderr
    assert "Traceback" not in stderr and "internal error" not in stderr
    return stderr


def copy_model(model: Path, to: Path) -> Path:
    shutil.copytree(model, to)
    return to


def edit_config(directory: Path, **changes) -> None:
    config = json.loads((directory / "config.json").read_text())
    config.update(changes)
    (directory / "config.json").write_text(json.dumps(config))


# -- the dependencies a user's install gets -------------------------------------------------------------


def _third_party_imports() -> dict[str, set[str]]:
    """Top-level modules imported by each squeezecli module (any indentation: lazy imports count)."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / "squeezecli").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "squeezecli":
                    found.setdefault(top, set()).add(path.relative_to(ROOT).as_posix())
    return found


# The modules of the optional features, and the extra that brings what they import.
OPTIONAL_HOMES = {"squeezecli/integrations/raydata.py": "ray", "squeezecli/cli/distributed.py": "ray",
                  "squeezecli/io/parquet.py": "parquet"}


def test_every_module_squeezecli_imports_is_declared_in_pyproject():
    import tomllib

    def normalized(name: str) -> str:  # PEP 503: "huggingface_hub" and "HuggingFace-Hub" are one project
        return re.sub(r"[-_.]+", "-", name).lower()

    def names(requirements: list[str]) -> set[str]:
        return {normalized(re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0]) for requirement in requirements}

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = names(project["dependencies"])
    optional = {extra: names(requirements) for extra, requirements in project["optional-dependencies"].items()}
    providers = metadata.packages_distributions()
    undeclared = {}
    for module, files in _third_party_imports().items():
        distributions = {normalized(name) for name in providers.get(module, [module])}
        # A module imported only where an optional feature lives may come from that feature's extra.
        extras = {OPTIONAL_HOMES.get(file) for file in files}
        needed = declared | (set().union(*(optional[extra] for extra in extras)) if None not in extras else set())
        if not distributions & needed:
            undeclared[module] = sorted(files)
    assert undeclared == {}, f"imported but not declared in pyproject.toml: {undeclared}"


# -- a config.json or checkpoint that would exhaust memory, or is malformed ------------------------------


@pytest.mark.parametrize("changes, says", [
    ({"n_layers": 1_000_000_000_000}, "config.json's 'n_layers' is 1000000000000, not an integer from 1 to"),
    ({"n_layers": 5000}, "config.json does not describe a model squeeze can build: 5000 layers"),
    ({"dim": 65536, "hidden_dim": 262144}, "config.json describes a model of 105,089,859,584 parameters"),
    ({"dim": 4096, "hidden_dim": 16384, "n_heads": 32}, "config.json describes 528,318,464 parameters, which take at least 1,056,636,928 bytes (2 a parameter in "
                                                 "fp16 or bf16, 4 in fp32), but the weight files hold only"),  # more than the files hold
])
def test_a_config_of_absurd_size_fails_before_anything_is_allocated(model, tmp_path, changes, says):
    directory = copy_model(model, tmp_path / "huge")
    edit_config(directory, **changes)
    for precision in ("int8", "fp32"):
        status, _, stderr, peak, _ = run_measured(["sentiment", "-m", str(directory), "--precision", precision],
                                                  stdin="echo hi", timeout=120, env=squeeze_env(tmp_path))
        assert status == ExitStatus.MODEL, stderr
        assert stderr.startswith(f"squeeze: error: {says}"), stderr
        assert peak < 1024 * 2**20, f"peak RSS {peak / 2**20:.0f} MiB for a refused model"
    assert not (tmp_path / "squeeze" / "entries").exists() or not any((tmp_path / "squeeze" / "entries").iterdir())


@pytest.mark.parametrize("changes, says", [
    ({"dim": "64"}, "config.json's 'dim' is \"64\", not an integer"),
    ({"n_heads": 3.5}, "config.json's 'n_heads' is 3.5, not an integer"),
    ({"n_layers": True}, "config.json's 'n_layers' is true, not an integer"),
    ({"vocab_size": [1]}, "config.json's 'vocab_size' is [1], not an integer"),
    ({"max_position_embeddings": -5}, "config.json's 'max_position_embeddings' is -5, not an integer from 1"),
    ({"activation": 7}, "config.json's 'activation' is 7, not a string"),
    ({"n_heads": 5}, "config.json does not describe a model squeeze can build: hidden size 64 is not a multiple"),
    ({"id2label": ["a", "b"]}, "config.json's id2label is not a map"),
])
def test_config_values_of_the_wrong_type_are_model_errors(model, tmp_path, changes, says):
    directory = copy_model(model, tmp_path / "odd")
    edit_config(directory, **changes)
    assert_one_line(run(["sentiment", "-m", str(directory)], tmp_path), ExitStatus.MODEL, f"squeeze: error: {says}")


def test_an_empty_vocabulary_is_a_model_error(model, tmp_path):
    directory = copy_model(model, tmp_path / "novocab")
    (directory / "vocab.txt").write_text("")
    for precision in ("int8", "fp32"):
        assert_one_line(run(["sentiment", "-m", str(directory), "--precision", precision], tmp_path),
                        ExitStatus.MODEL, "squeeze: error: the tokenizer in")


def test_nan_weights_are_refused_at_every_precision(model, tmp_path):
    directory = copy_model(model, tmp_path / "nan")
    tensors = load_file(directory / "model.safetensors")
    tensors["distilbert.transformer.layer.0.ffn.lin1.weight"][3, 3] = float("nan")
    save_file(tensors, directory / "model.safetensors")
    for precision in ("int8", "fp32"):
        assert_one_line(run(["sentiment", "-m", str(directory), "--precision", precision], tmp_path), ExitStatus.MODEL,
                        "squeeze: error: the checkpoint's tensor distilbert.transformer.layer.0.ffn.lin1.weight "
                        "holds NaN or infinite values")
    assert not any((tmp_path / "squeeze" / "entries").glob("*"))


def test_the_finite_check_refuses_exactly_nan_and_infinity_whatever_the_sum():
    """The fast check (a sum) sends a tensor whose sum overflows to the exact one, which accepts it."""
    from squeezecli.model.weights import check_finite

    for dtype in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
        big = torch.full((64, 64), torch.finfo(dtype).max / 2, dtype=dtype)  # finite; its sum is not
        check_finite("big", big)
        check_finite("ints", torch.arange(10))
        for bad in (float("nan"), float("inf"), float("-inf")):
            for tensor in (big.clone(), torch.zeros(64, 64, dtype=dtype)):
                tensor[5, 7] = bad
                with pytest.raises(ModelError, match="holds NaN or infinite values"):
                    check_finite("bad", tensor)


@pytest.mark.parametrize("removed, named", [
    ("distilbert.transformer.layer.1.sa_layer_norm.bias", "distilbert.transformer.layer.1.sa_layer_norm.bias"),
    ("pre_classifier.weight", "pre_classifier.weight"),
])
def test_missing_tensors_are_named_as_the_checkpoint_names_them(model, tmp_path, removed, named):
    directory = copy_model(model, tmp_path / "missing")
    tensors = load_file(directory / "model.safetensors")
    del tensors[removed]
    save_file(tensors, directory / "model.safetensors")
    stderr = assert_one_line(run(["sentiment", "-m", str(directory), "--precision", "fp32"], tmp_path), ExitStatus.MODEL,
                             f"squeeze: error: checkpoint lacks tensors for a distilbert sequence model: {named}")
    assert stderr.splitlines()[0].endswith(named), stderr


def test_a_shard_index_may_not_name_files_outside_the_model(model, tmp_path):
    directory = copy_model(model, tmp_path / "sharded")
    (tmp_path / "outside.safetensors").write_bytes((directory / "model.safetensors").read_bytes())
    (directory / "model.safetensors").unlink()
    index = {"weight_map": {"distilbert.embeddings.word_embeddings.weight": "../outside.safetensors"}}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index))
    for precision in ("int8", "fp32"):
        assert_one_line(run(["sentiment", "-m", str(directory), "--precision", precision], tmp_path), ExitStatus.MODEL,
                        "squeeze: error: the weight index model.safetensors.index.json of model")


def test_scores_that_overflow_print_as_null_json(model, tmp_path):
    directory = copy_model(model, tmp_path / "overflow")
    tensors = load_file(directory / "model.safetensors")
    tensors["classifier.weight"] = torch.full_like(tensors["classifier.weight"], 3e38)
    tensors["classifier.weight"][1] = -3e38  # logits +inf and -inf: the softmax is NaN
    save_file(tensors, directory / "model.safetensors")
    result = run(["sentiment", "-m", str(directory), "--precision", "fp32", "--all-scores"], tmp_path)
    assert result.returncode == 0, result.stderr
    row = json.loads(result.stdout)  # Python's json would accept NaN; RFC 8259 does not
    assert b"NaN" not in result.stdout and b"Infinity" not in result.stdout
    assert row["score"] is None and [entry["score"] for entry in row["labels"]] == [None, None]


# -- input: no newline, numbers JSON cannot hold, formulas for spreadsheets, closed descriptors -----------


@pytest.mark.parametrize("source, tokens", [
    ("head -c 300000000 /dev/zero", None),  # one 300 MB "line" of NUL characters: no tokens to cut
    ("yes a | tr '\\n' ' ' | head -c 300000000", 8 * 2**20),  # 300 MB of words without a newline: 16 MiB read
])
def test_input_without_a_newline_is_read_in_bounded_memory(model, tmp_path, source, tokens):
    env = squeeze_env(tmp_path)
    run(["models", "pull", str(model)], tmp_path, env=env)  # quantize first: measure the run alone
    status, stdout, stderr, peak, _ = run_measured(["sentiment", "-m", str(model), "--precision", "int8"], stdin=source, timeout=300, env=env)
    assert status == 0, stderr
    (row,) = [json.loads(line) for line in stdout.splitlines()]
    assert row["line"] == 1 and row["label"] in ("NEGATIVE", "POSITIVE")
    assert row.get("tokens") == tokens  # the whole length of what was read, counted in bounded memory
    notices = ["squeeze: <stdin>:1: the line is longer than 16 MiB; only its first 16 MiB are read"]
    if tokens:
        notices.append("squeeze: 1 of 1 text was longer than the 128-token window and cut to it (their JSON "
                       'results say "truncated": true); --chunk TOKENS reads all of each')
    assert stderr.splitlines() == notices
    # The interpreter, torch and the model take about 300 MiB; the line is held up to 16 MiB, decoded once.
    assert peak < 500 * 2**20, f"peak RSS {peak / 2**20:.0f} MiB for a 300 MB line"


def test_a_jsonl_line_over_the_limit_is_an_input_error(tmp_path):
    source = 'printf \'{"text": "\'; head -c 20000000 /dev/zero | tr "\\0" a; printf \'"}\\n\''
    status, stdout, stderr, _, _ = run_measured(["echo-lines", "--jsonl"], stdin=source, timeout=120,
                                                env=squeeze_env(tmp_path))
    assert status == ExitStatus.INPUT
    assert stderr.startswith("squeeze: error: <stdin>:1: a JSON line longer than 16 MiB\n"), stderr


@pytest.mark.parametrize("line, says", [
    ('{"text": "hi", "x": NaN}', "<stdin>:1: not valid JSON (NaN is not a JSON value)"),
    ('{"text": "hi", "x": -Infinity}', "<stdin>:1: not valid JSON (-Infinity is not a JSON value)"),
    ('{"text": "hi", "x": 1e999999}', "<stdin>:1: not valid JSON (the number 1e999999 is too large)"),
])
def test_numbers_json_cannot_write_back_are_input_errors(tmp_path, line, says):
    result = run(["echo-lines", "--jsonl"], tmp_path, input=f'{{"text": "fine"}}\n{line}\n'.encode())
    assert_one_line(result, ExitStatus.INPUT, f"squeeze: error: {says.replace(':1:', ':2:')}")
    assert json.loads(result.stdout.splitlines()[0])["text"] == "fine"  # the good line before it


def test_csv_output_defuses_spreadsheet_formulas(tmp_path):
    lines = [{"text": "=HYPERLINK(\"http://x\")", "note": "+1+1", "id": "-2+3"}, {"text": "-", "note": "@SUM(A1)"}]
    result = run(["echo-lines", "--jsonl", "--format", "csv"], tmp_path,
                 input="".join(json.dumps(line) + "\n" for line in lines).encode())
    assert result.stdout.decode().splitlines() == [
        "file,line,text,length,note,id",
        "-,1,\"'=HYPERLINK(\"\"http://x\"\")\",22,'+1+1,'-2+3",
        "-,2,-,1,'@SUM(A1),",
    ]


def test_a_closed_stdin_is_an_input_error(tmp_path):
    assert_one_line(run(["echo-lines"], tmp_path, input=None, stdin=subprocess.DEVNULL, preexec_fn=lambda: os.close(0)),
                    ExitStatus.INPUT, "squeeze: error: stdin is closed")


def test_a_closed_stdout_is_an_output_error(tmp_path):
    result = subprocess.run([*SQUEEZE, "echo-lines"], input=b"hi\n", stdout=None, stderr=subprocess.PIPE,
                            env=squeeze_env(tmp_path), preexec_fn=lambda: os.close(1), timeout=60)
    assert_one_line(result, ExitStatus.OUTPUT, "squeeze: error: stdout is closed")


@pytest.mark.parametrize("args", [["echo-lines"], ["echo-lines", "--format", "csv"], ["models", "list", "--json"],
                                  ["models", "aliases"], ["doctor", "--json"], ["completion", "bash"]])
def test_a_full_stdout_is_an_output_error(model, tmp_path, args):
    env = squeeze_env(tmp_path, HF_HUB_OFFLINE="1")
    run(["models", "pull", str(model)], tmp_path, env=env)
    with open("/dev/full", "wb") as full:
        result = subprocess.run([*SQUEEZE, *args], input=b"hi\n", stdout=full, stderr=subprocess.PIPE, env=env,
                                timeout=60)
    assert_one_line(result, ExitStatus.OUTPUT, "squeeze: error: cannot write ")
    assert b"No space left on device" in result.stderr


def test_npy_into_a_pipe_closed_early_exits_141(model, tmp_path):
    # 5,000 vectors: far more than a pipe holds (64 KiB), so the writer must meet the closed pipe; with
    # 500 small ones the whole array could fit in the pipe before `head` exits, and exit 0 rightly.
    pipeline = f"set -o pipefail; seq 1 5000 | {' '.join(SQUEEZE)} embed -m {model} --format npy | head -c 20 >/dev/null"
    result = subprocess.run(["bash", "-c", pipeline], capture_output=True, env=squeeze_env(tmp_path), timeout=300)
    assert result.returncode == ExitStatus.BROKEN_PIPE, result.stderr
    assert b"Traceback" not in result.stderr and b"error" not in result.stderr


# -- the cache: read-only, full, not a directory, unreadable ---------------------------------------------


def cache_state(cache: Path) -> list[str]:
    return sorted(path.relative_to(cache).as_posix() for path in cache.rglob("*")
                  if path.is_file() and path.parts[len(cache.parts)] in ("entries", "tmp"))


def test_a_read_only_cache(model, tmp_path):
    """A new model cannot be cached (6, with the fix); a cached one runs; pull --force and rm cannot change
    it (6); nothing changes in it."""
    cache = tmp_path / "cache"
    env = squeeze_env(tmp_path, SQUEEZE_CACHE_DIR=str(cache))
    other = copy_model(model, tmp_path / "other")
    edit_config(other, id2label={"0": "NO", "1": "YES"}, label2id={"NO": 0, "YES": 1})
    cmd = " ".join(SQUEEZE)
    script = f"""
        echo hi | {cmd} sentiment --precision int8 -m {model} > /dev/null || exit 10
        find {cache} -type f | sort > {tmp_path}/before
        remount-ro
        echo hi | {cmd} sentiment --precision int8 -m {model} || exit 11
        echo hi | {cmd} sentiment --precision int8 -m {other} 2> {tmp_path}/new.err; echo $? > {tmp_path}/new.status
        {cmd} models pull --force {model} 2> {tmp_path}/force.err; echo $? > {tmp_path}/force.status
        {cmd} models rm --all 2> {tmp_path}/rm.err; echo $? > {tmp_path}/rm.status
        find {cache} -type f | sort > {tmp_path}/after
    """
    result = in_small_filesystem(cache, script, size_kb=32 * 1024, env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["label"] in ("NEGATIVE", "POSITIVE")  # the cached model still runs
    for name in ("new", "force", "rm"):
        stderr = (tmp_path / f"{name}.err").read_text()
        assert (tmp_path / f"{name}.status").read_text().strip() == str(ExitStatus.CACHE.value), stderr
        assert stderr.startswith(f"squeeze: error: cannot write to squeeze's cache at {cache}: Read-only file system\n"), stderr
        assert "hint: make it writable, or point SQUEEZE_CACHE_DIR at a writable directory" in stderr
    assert (tmp_path / "before").read_text() == (tmp_path / "after").read_text()


def test_a_full_cache_leaves_nothing_half_written_and_the_next_run_works(model, tmp_path):
    cache = tmp_path / "cache"
    env = squeeze_env(tmp_path, SQUEEZE_CACHE_DIR=str(cache))
    cmd = " ".join(SQUEEZE)
    script = f"""
        head -c 600000 /dev/zero > {cache}/filler  # leave about 400 kB: less than the 2.4 MB entry
        echo hi | {cmd} sentiment --precision int8 -m {model} 2> {tmp_path}/full.err; echo $? > {tmp_path}/full.status
        find {cache}/tmp {cache}/entries -type f 2>/dev/null | sort > {tmp_path}/left
        rm {cache}/filler
        mount -o remount,size=8m {cache}
        echo hi | {cmd} sentiment --precision int8 -m {model}
    """
    result = in_small_filesystem(cache, script, size_kb=1000, env=env)
    stderr = (tmp_path / "full.err").read_text()
    assert (tmp_path / "full.status").read_text().strip() == str(ExitStatus.CACHE.value), stderr
    assert f"squeeze: error: cannot write to squeeze's cache at {cache}: No space left on device\n" in stderr
    assert "hint: free some space there, or point SQUEEZE_CACHE_DIR at a directory with room" in stderr
    assert (tmp_path / "left").read_text() == ""  # no half-written entry, no temporary directory
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["line"] == 1


def test_a_cache_directory_that_is_a_file(tmp_path):
    (tmp_path / "not-a-dir").write_text("")
    env = squeeze_env(tmp_path, SQUEEZE_CACHE_DIR=str(tmp_path / "not-a-dir"))
    assert_one_line(run(["models", "list"], tmp_path, env=env), ExitStatus.CACHE,
                    f"squeeze: error: SQUEEZE_CACHE_DIR={tmp_path / 'not-a-dir'} is a file, not a directory")


def test_a_cache_without_write_permission(model, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o555)
    env = squeeze_env(tmp_path, SQUEEZE_CACHE_DIR=str(cache))
    result = run(["sentiment", "-m", str(model), "--precision", "int8"], tmp_path, env=env, privileged=False)
    assert_one_line(result, ExitStatus.CACHE, f"squeeze: error: cannot write to squeeze's cache at {cache}: Permission denied")
    assert list(cache.iterdir()) == []


def test_an_unreadable_cached_file_says_so_and_how_to_mend_it(model, tmp_path):
    env = squeeze_env(tmp_path)
    assert run(["models", "pull", str(model)], tmp_path, env=env).returncode == 0
    (weights,) = (tmp_path / "squeeze").glob("entries/*/model.safetensors")
    weights.chmod(0o000)
    stderr = assert_one_line(run(["sentiment", "-m", str(model), "--precision", "int8"], tmp_path, env=env, privileged=False),
                             ExitStatus.CACHE, f"squeeze: error: cannot read {weights}: Permission denied")
    assert "hint: make squeeze's cache readable (e.g. chmod -R u+rwX" in stderr
    weights.chmod(0o644)
    assert run(["sentiment", "-m", str(model), "--precision", "int8"], tmp_path, env=env, privileged=False).returncode == 0


# -- damaged entries: one rule ---------------------------------------------------------------------------


@pytest.mark.parametrize("damage, says", [
    ("flip", "is damaged: model.safetensors does not match its checksum"),
    ("truncate", "is damaged: model.safetensors is"),
    ("no manifest", "has no manifest"),
    ("bad manifest", "manifest.json is not readable JSON"),
])
def test_every_damaged_entry_is_refused_by_a_run_and_rebuilt_by_pull(model, tmp_path, damage, says):
    env = squeeze_env(tmp_path)
    before = run(["sentiment", "-m", str(model), "--precision", "int8"], tmp_path, env=env)
    (entry,) = (tmp_path / "squeeze" / "entries").iterdir()
    weights = entry / "model.safetensors"
    if damage == "flip":
        with open(weights, "r+b") as f:  # 4 MB of bytes flipped in place would do the same
            f.seek(weights.stat().st_size // 2)
            f.write(bytes(b ^ 0xFF for b in f.read(4096)[:4096]))
    elif damage == "truncate":
        os.truncate(weights, weights.stat().st_size - 1)
    elif damage == "no manifest":
        (entry / "manifest.json").unlink()
    else:
        (entry / "manifest.json").write_text("{bad")
    stderr = assert_one_line(run(["sentiment", "-m", str(model), "--precision", "int8"], tmp_path, env=env), ExitStatus.CACHE, "squeeze: error:")
    assert says in stderr
    assert f"hint: run `squeeze models pull --force {model}` to rebuild it" in stderr
    assert run(["models", "pull", str(model)], tmp_path, env=env).returncode == 0
    after = run(["sentiment", "-m", str(model), "--precision", "int8"], tmp_path, env=env)
    assert after.returncode == 0 and after.stdout == before.stdout


def test_rm_removes_a_damaged_entry_by_the_models_name(model, tmp_path):
    env = squeeze_env(tmp_path)
    run(["models", "pull", str(model)], tmp_path, env=env)
    (entry,) = (tmp_path / "squeeze" / "entries").iterdir()
    (entry / "manifest.json").unlink()
    result = run(["models", "rm", str(model)], tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr.decode() == f"squeeze: removed the damaged cache entry {entry}\n"
    assert not entry.exists()


def test_an_unreadable_ref_does_not_break_rm(model, tmp_path):
    env = squeeze_env(tmp_path)
    run(["models", "pull", str(model)], tmp_path, env=env)
    ref = tmp_path / "squeeze" / "refs" / "hub" / "acme--gone" / "main"
    ref.parent.mkdir(parents=True)
    ref.write_text("0" * 40)
    ref.chmod(0o000)
    result = run(["models", "rm", "--all"], tmp_path, env=env, privileged=False)
    assert result.returncode == 0, result.stderr
    assert not any((tmp_path / "squeeze" / "entries").iterdir())
    assert not ref.exists()  # it pointed nowhere squeeze can use
