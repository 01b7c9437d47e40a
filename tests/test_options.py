"""Options: no value can exhaust the machine (each size-like option has an upper bound, or a memory
bound that holds whatever it is), bad values are refused with status 2 and one line before any model
loads, and bare `squeeze` prints its help.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from pathlib import Path

import factory
import pytest
from click.testing import CliRunner
from processes import SQUEEZE, run_measured, squeeze_env

from squeezecli import cli
from squeezecli.cli.options import MAX_REMOTE_THREADS
from squeezecli.environment import usable_cpus
from squeezecli.errors import ExitStatus
from squeezecli.io.batches import MAX_BATCH_SIZE
from squeezecli.tasks.base import MAX_TOP_K


def run(args: list[str], input: str = "a\n"):
    return CliRunner().invoke(cli.squeeze, args, input=input, prog_name="squeeze", catch_exceptions=False)


def refused(result, *says: str) -> str:
    """Status 2, one line (and a hint) naming the option, no traceback."""
    assert result.exit_code == ExitStatus.USAGE, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert lines[0].startswith("squeeze: error: ") and len(lines) <= 2, result.stderr
    assert all(text in result.stderr for text in says), result.stderr
    return result.stderr


@pytest.fixture(scope="module")
def embedder(tmp_path_factory) -> Path:
    """A random BERT with the usual 512-token window (one small layer: the test is about memory)."""
    directory = tmp_path_factory.mktemp("options") / "embed"
    factory.build(directory, "bert", "base", hidden_size=128, num_hidden_layers=1, intermediate_size=128,
                  max_position_embeddings=512)
    return directory


def test_bare_squeeze_prints_its_help_and_exits_0():
    result = run([])
    assert result.exit_code == 0 and result.stderr == ""
    assert result.stdout.startswith("Usage: squeeze [OPTIONS] COMMAND") and "Commands:" in result.stdout
    models = run(["models"])
    assert models.exit_code == 0 and models.stdout.startswith("Usage: squeeze models")


# -- each size-like option: refused past its bound before the model loads (a model that does not exist
# -- would be exit 4 if it got that far) ------------------------------------------------------------------


@pytest.mark.parametrize("args, says", [
    (["embed", "--batch-size", "1000000000"], f"'--batch-size': 1000000000 is not in the range 1<=x<={MAX_BATCH_SIZE}"),
    (["similar", "-k", str(MAX_TOP_K + 1), "q", "-"], f"'-k' / '--top-k': {MAX_TOP_K + 1} is not in the range"),
    (["embed", "--threads", "999"], f"--threads 999 is more than the {usable_cpus()} CPU"),
    (["serve", "--threads", "999"], f"--threads 999 is more than the {usable_cpus()} CPU"),
    (["serve", "--batch-size", "100000"], f"'--batch-size': 100000 is not in the range 1<=x<={MAX_BATCH_SIZE}"),
    (["serve", "--max-models", "1000"], "'--max-models': 1000 is not in the range 1<=x<=64"),
    (["serve", "--queue", "1000000000"], "'--queue': 1000000000 is not in the range"),
    (["serve", "--max-texts", "1000000000"], "'--max-texts': 1000000000 is not in the range"),
    (["serve", "--max-bytes", "100000000000"], "'--max-bytes': 100000000000 is not in the range"),
])
def test_a_size_past_its_bound_is_refused_before_the_model_loads(tmp_path, args, says):
    refused(run([*args, "-m", str(tmp_path / "no-model")]), says)


def test_threads_of_a_remote_clusters_workers_have_a_fixed_ceiling_not_this_machines_cpus(tmp_path):
    """run-distributed --address: the workers' machines are not this one; a local cluster's are."""
    out = str(tmp_path / "out")
    refused(run(["run-distributed", "embed", "--threads", str(MAX_REMOTE_THREADS + 1), "--address", "auto", "-o", out,
                 "-m", str(tmp_path / "no-model")]),
            f"squeeze: error: --threads {MAX_REMOTE_THREADS + 1} is more than {MAX_REMOTE_THREADS}, the most a worker "
            "of a cluster may be given", f"hint: give 1 to {MAX_REMOTE_THREADS}")
    refused(run(["run-distributed", "embed", "--threads", str(usable_cpus() + 1), "-o", out, "-m", str(tmp_path / "none")]),
            f"--threads {usable_cpus() + 1} is more than the {usable_cpus()} CPU")
    # Within the ceiling, past this machine's CPUs: accepted, so the run goes on to find no model (4).
    accepted = run(["run-distributed", "embed", "--threads", str(MAX_REMOTE_THREADS), "--address", "127.0.0.1:9",
                    "-o", out, "-m", str(tmp_path / "no-model")])
    assert accepted.exit_code == ExitStatus.MODEL, accepted.stderr


def test_threads_are_bounded_by_the_cpus_this_process_may_use_not_the_machines(tmp_path):
    """Under `taskset -c 0` (a container's CPU limit works the same way) --threads 2 is one too many."""
    result = subprocess.run(["taskset", "-c", "0", *SQUEEZE, "embed", "--threads", "2", "-m", str(tmp_path / "none")],
                            input=b"a\n", capture_output=True, env=squeeze_env(tmp_path), timeout=120)
    assert result.returncode == ExitStatus.USAGE, result.stderr
    assert result.stderr.decode() == ("squeeze: error: --threads 2 is more than the 1 CPU this process may use\n"
                                      "  hint: give 1 to 1, or leave --threads out for torch's choice\n")


def test_the_largest_batch_runs_in_bounded_memory(embedder, tmp_path):
    """At --batch-size 256 over more than a window (8 batches) of long texts, what a run holds stays
    small; a billion was accepted before and grew past 12 GB over 200,000 lines."""
    words = ["the", "cat", "sat", "on", "a", "mat", "quick", "brown", "fox", "lazy", "dog"]
    rng = random.Random(0)
    source = tmp_path / "in.txt"
    source.write_text("".join(" ".join(rng.choices(words, k=100)) + "\n" for _ in range(8 * MAX_BATCH_SIZE + 50)))
    status, stdout, stderr, peak, _ = run_measured(
        ["embed", "-m", str(embedder), "--precision", "fp32", "--batch-size", str(MAX_BATCH_SIZE), "--quiet"],
        source, timeout=600)
    assert status == 0, stderr
    assert stdout.count(b"\n") == 8 * MAX_BATCH_SIZE + 50
    # The interpreter and torch take about 250 MiB.
    assert peak < 600 * 2**20, f"peak RSS {peak / 2**20:.0f} MiB"


# -- task option values and combinations: refused with 2 before the model loads (a model that does not
# -- exist would be exit 4), one line naming the option, a hint with what it takes ------------------------


@pytest.mark.parametrize("args, says", [
    (["qa", "-q", ""], "squeeze: error: -q/--question: the question is empty"),
    (["qa", "-q", "who?", "-q", " "], "squeeze: error: -q/--question: question 2 of 2 is empty"),
    (["qa", "-q", "who?", "--stride", "100000"], "squeeze: error: --stride 100000 must be less than qa's window"),
    (["qa", "-q", "who?", "--max-length", "64", "--stride", "64"], "squeeze: error: --stride 64 must be less than --max-length 64"),
    (["qa", "-q", "who?", "--lines", "--doc"], "squeeze: error: --lines reads each line as a context, --doc each file"),
    (["qa", "-q", "who?", "--top-k", str(MAX_TOP_K + 1)], "'--top-k': 1001 is not in the range 1<=x<=1000"),
    (["classify", "--labels", ""], "squeeze: error: --labels names no label"),
    (["classify", "--labels", ",,"], "squeeze: error: --labels names no label"),
    (["classify", "--labels", "a,,b"], "squeeze: error: --labels has an empty label"),
    (["classify", "--labels", "a,a"], "squeeze: error: --labels names 'a' twice"),
    (["classify", "--labels", "a,b", "--template", "{} {} {0} {x}"],
     "squeeze: error: --template '{} {} {0} {x}' has 4 replacement fields; it needs exactly one {}"),
    (["classify", "--labels", "a,b", "--template", "no placeholder"], "squeeze: error: --template 'no placeholder' has no {}"),
    (["classify", "--labels", "a,b", "--template", "{"], "squeeze: error: --template '{' is not a template"),
    (["classify", "--labels", "a,b", "--template", "about {x}"], "has a field other than {}"),
    (["classify", "--template", "It is {}."], "squeeze: error: --template applies to zero-shot classification"),
    (["classify", "--multi-label"], "squeeze: error: --multi-label applies to zero-shot classification"),
    (["sentiment", "--field", ""], "squeeze: error: --field is empty"),
    (["sentiment", "--top-k", "1000000"], "'--top-k': 1000000 is not in the range 1<=x<=1000"),
    # Not an address of this machine (TEST-NET-1 is never one), not an address at all: nothing is bound.
    (["serve", "--host", "192.0.2.1", "--api-key", "k", "--port", "0"],
     "squeeze: error: --host '192.0.2.1' is not an address of this machine"),
    (["serve", "--host", "a b", "--api-key", "k", "--port", "0"], "squeeze: error: --host 'a b' is not an address"),
])
def test_option_values_that_cannot_work_are_refused_before_the_model_loads(tmp_path, args, says):
    stderr = refused(run([*args, "-m", str(tmp_path / "no-model")]), says)
    assert "hint: " in stderr


# -- what needs the model's window (config.json and the tokenizer): refused before any weight is read: the
# -- weights here are garbage (reading them would be exit 4), or never served by the Hub ---------------------

LONG_QUESTION = " ".join(["who"] * 100) + "?"  # past the 64 tokens a question is cut to
WINDOW_REFUSALS = [
    (["qa", "-q", "who?", "--stride", "200"], "qa",
     ["squeeze: error: --stride 200 does not fit: a 128-token window leaves 123 tokens of context after the longest "
      "question", "  hint: give --stride 0 to 122"]),
    (["qa", "-q", "who wrote the program", "--max-length", "20", "--stride", "15"], "qa",
     ["squeeze: error: --stride 15 does not fit: a 20-token window leaves 13 tokens of context after the longest "
      "question", "  hint: give --stride 0 to 12, or raise --max-length (up to 128)"]),
    (["qa", "-q", LONG_QUESTION, "--max-length", "60"], "qa",
     ["squeeze: error: a 60-token window leaves no room for the context after a question of 64 tokens",
      "  hint: ask a shorter question, or raise --max-length (up to 128)"]),
    (["embed", "--chunk", "1000"], "embed",
     ["squeeze: error: --chunk 1000 does not fit the 128-token window", "  hint: give --chunk 1 to 126"]),
    (["sentiment", "--chunk", "100", "--max-length", "64"], "sentiment",
     ["squeeze: error: --chunk 100 does not fit the 64-token window",
      "  hint: give --chunk 1 to 62, or raise --max-length (up to 128)"]),
    (["sentiment", "--max-length", "2"], "sentiment",
     ["squeeze: error: --max-length 2 leaves no room for text beside the model's 2 special tokens",
      "  hint: give --max-length 3 to 128"]),
    (["rerank", "-q", " ".join(["refund"] * 70), "--max-length", "100"], "rerank",
     ["squeeze: error: -q/--query is 140 tokens long, more than half the 100-token window it shares with each "
      "candidate", "  hint: use a shorter query, or raise --max-length (up to 128)"]),
    (["rerank", "-q", "refund", "--max-length", "3"], "rerank",
     ["squeeze: error: --max-length 3 leaves no room for text beside the model's 3 special tokens",
      "  hint: give --max-length 4 to 128"]),
]


@pytest.fixture(scope="module")
def garbage_weights(default_models, tmp_path_factory) -> dict[str, Path]:
    """The default models' stand-ins with their model.safetensors replaced by garbage of the same size."""
    root = tmp_path_factory.mktemp("garbage")
    copies = {}
    for task in ("qa", "embed", "sentiment", "rerank"):
        copies[task] = shutil.copytree(default_models[task], root / task)
        weights = copies[task] / "model.safetensors"
        weights.write_bytes(b"\xff" * weights.stat().st_size)
    return copies


@pytest.mark.parametrize("precision", ["fp32", "int8"])  # int8: refused before the first use quantizes it
@pytest.mark.parametrize("args, model, says", WINDOW_REFUSALS)
def test_what_does_not_fit_the_models_window_is_refused_before_its_weights_are_read(garbage_weights, precision,
                                                                                       args, model, says):
    result = run([*args, "-m", str(garbage_weights[model]), "--precision", precision])
    refused(result)
    assert result.stderr.splitlines() == says


def test_the_window_is_checked_before_the_hub_sends_the_weights(served):
    """A model not cached yet: config.json and the tokenizer come first, the check, then the weights (at
    int8 the second time: the HF cache has the first files already)."""
    for precision in ("fp32", "int8"):
        refused(run(["qa", "-q", "who?", "--stride", "200", "--precision", precision]), "--stride 200 does not fit")
        assert "model.safetensors" not in served.downloaded_files(), served.downloaded_files()
    assert {"config.json", "vocab.txt"} <= set(served.downloaded_files())
    result = run(["qa", "-q", "who?", "--precision", "fp32"], input="Ada wrote the first program.\n")
    assert result.exit_code == 0, result.stderr
    assert "model.safetensors" in served.downloaded_files()


def test_a_cached_int8_entry_is_checked_before_its_weights_are_read(default_models, monkeypatch):
    """The entry's config.json and tokenizer, after its files' check, before its int8 weights load."""
    import safetensors.torch

    assert run(["models", "pull", str(default_models["qa"])]).exit_code == 0
    monkeypatch.setattr(safetensors.torch, "load_file", lambda *args, **kwargs: pytest.fail("weights read"))
    refused(run(["qa", "-m", str(default_models["qa"]), "--precision", "int8", "-q", "who?", "--stride", "200"]),
            "--stride 200 does not fit")


def test_what_the_window_changes_is_said_once_before_the_weights_load(garbage_weights):
    """A legal value the model changes (a --max-length past its window, a question cut to 64 tokens) is
    said once on stderr, before the weights are read (here: before garbage weights fail with 4)."""
    result = run(["sentiment", "-m", str(garbage_weights["sentiment"]), "--precision", "fp32", "--max-length", "100000"])
    assert result.exit_code == ExitStatus.MODEL, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == ("squeeze: --max-length 100000 is more than the model's 128-token window: texts are cut to "
                        "128 tokens") and lines[1].startswith("squeeze: error: "), lines
    result = run(["qa", "-m", str(garbage_weights["qa"]), "--precision", "fp32", "-q", "who?", "-q", LONG_QUESTION,
                  "--max-length", "100000"])
    assert result.exit_code == ExitStatus.MODEL, result.stderr
    assert result.stderr.splitlines()[:2] == [
        "squeeze: --max-length 100000 is more than the model's 128-token window: longer texts are read in windows of "
        "128 tokens",
        "squeeze: -q/--question: question 2 of 2 is longer than 64 tokens; only its first 64 are read, as the SQuAD "
        "reference scripts do"]


def test_a_max_length_beyond_the_models_window_is_said_once(default_models):
    result = run(["sentiment", "-m", str(default_models["sentiment"]), "--precision", "fp32", "--max-length", "100000"],
                 input="good\nbad\n")
    assert result.exit_code == 0, result.stderr
    assert result.stderr.splitlines() == [
        "squeeze: --max-length 100000 is more than the model's 128-token window: texts are cut to 128 tokens"]


def test_ner_keeps_words_whole_by_default_and_eval_ner_takes_an_aggregation(default_models, tmp_path):
    help_text = run(["ner", "--help"]).stdout
    assert "[default: first]" in " ".join(help_text.split())
    gold = tmp_path / "gold.jsonl"
    gold.write_text('{"text": "Ada Lovelace lived in London", "entities": [{"start": 0, "end": 12, "label": "PER"}]}\n')
    for aggregation in ("simple", "first"):
        result = run(["eval", "ner", "-m", str(default_models["ner"]), "--precision", "fp32", "--labels-from", "entities",
                      "--aggregation", aggregation, str(gold), "--json"])
        assert result.exit_code == 0, result.stderr
    refused(run(["eval", "ner", "-m", str(default_models["ner"]), "--labels-from", "entities", "--aggregation", "mean",
                 str(gold)]), "'--aggregation': 'mean' is not one of")


def test_the_loading_line_names_the_precision_auto_chose(default_models, tmp_path):
    import sys

    from processes import on_a_terminal

    status, shown = on_a_terminal([sys.executable, "-m", "squeezecli", "sentiment", "-m", str(default_models["sentiment"]),
                                   "-"], stdout=subprocess.DEVNULL, env=squeeze_env(tmp_path, COLUMNS="200", TERM="xterm"))
    assert status == 0, shown
    from squeezecli.precision.cpu import auto_precision

    assert f"(auto: {auto_precision().precision})…" in shown, shown
