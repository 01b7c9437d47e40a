"""`squeeze run-distributed` on a local two-CPU Ray cluster, against the plain task commands.

Every input line must get exactly one result, the one the task command prints for it; JSON lines input
keeps its other fields; Parquet holds the same rows. Without Ray the command names the extra to install,
and the CLI never imports Ray (nor torch) to start. The cluster is started once for the module.
"""

import json
import logging
import subprocess
import sys
from pathlib import Path

import factory
import pytest
import sentences
from click.testing import CliRunner

from squeezecli.cli import squeeze
from squeezecli.errors import ExitStatus

ROOT = Path(__file__).resolve().parent.parent
SCORE_TOLERANCE = 1e-5
# Blocks of 8 batches of 8: a few hundred lines make several blocks for the two workers to share.
BATCH = ["--batch-size", "8"]

# Ray Data warns about its own deprecated settings whenever it copies its context; nothing here sets them.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")


@pytest.fixture(scope="module")
def cluster():
    from squeezecli.cli.distributed import loopback_only_ray

    loopback_only_ray()  # before the module's first `import ray`
    import ray

    from squeezecli.integrations import raydata

    raydata.start_local_cluster(2, logging_level=logging.WARNING, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    factory.build(root / "sentiment", "distilbert", "sequence")
    factory.build(root / "embed", "bert", "base")
    factory.build(root / "rerank", "bert", "sequence", labels=["LABEL_0"])
    return {"sentiment": root / "sentiment", "embed": root / "embed", "rerank": root / "rerank"}


@pytest.fixture(scope="module")
def text_files(tmp_path_factory):
    """Three files, 300 lines in all, with blank lines (skipped, but counted in line numbers) and text
    beyond ASCII."""
    root = tmp_path_factory.mktemp("texts")
    paths = []
    for number, size in enumerate([130, 100, 70]):
        lines = sentences.varied(size, seed=number)
        for blank in range(5, size, 37):
            lines[blank] = ""
        lines[3] = "Café au lait, naïve résumé — 東京は日本の首都です。"
        path = root / f"part{number}.txt"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        paths.append(path)
    return paths


def cli(*args: str) -> list[dict]:
    result = CliRunner().invoke(squeeze, [*args, "--format", "jsonl"])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def distributed(*args: str) -> str:
    result = CliRunner().invoke(squeeze, ["run-distributed", *args])
    assert result.exit_code == 0, result.output
    return result.stderr


def assert_same_rows(got: list[dict], expected: list[dict]) -> None:
    """The same rows in the same order, floats (scores, vectors) within SCORE_TOLERANCE."""
    assert [(row["file"], row["line"]) for row in got] == [(row["file"], row["line"]) for row in expected]
    for mine, theirs in zip(got, expected):
        assert_close(mine, theirs)


def assert_close(got, expected) -> None:
    if isinstance(expected, float):
        assert got == pytest.approx(expected, abs=SCORE_TOLERANCE)
    elif isinstance(expected, dict):
        assert isinstance(got, dict) and list(got) == list(expected)
        for name in expected:
            assert_close(got[name], expected[name])
    elif isinstance(expected, list):
        assert isinstance(got, list) and len(got) == len(expected)
        for mine, theirs in zip(got, expected):
            assert_close(mine, theirs)
    else:
        assert got == expected and type(got) is type(expected)


def test_sentiment_gives_each_line_the_result_the_cli_gives(cluster, models, text_files, tmp_path):
    files = [str(path) for path in text_files]
    options = ["--model", str(models["sentiment"]), *BATCH, "--top-k", "2"]
    summary = distributed("sentiment", *options, *files, "--output", str(tmp_path / "out"))

    written = (tmp_path / "out" / "results.jsonl").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in written]
    expected = cli("sentiment", *options, *files)
    non_blank = sum(1 for path in text_files for line in path.read_text().splitlines() if line.strip())
    assert len(rows) == len({(row["file"], row["line"]) for row in rows}) == non_blank
    assert all(len(row["labels"]) == 2 for row in rows)
    assert_same_rows(rows, expected)
    assert f"{non_blank:,} results in" in summary
    assert not list((tmp_path / "out").glob(".*")), "temporary files left behind"


def test_rerank_scores_every_line_as_rerank_keep_order_does(cluster, models, text_files, tmp_path):
    files = [str(path) for path in text_files]
    options = ["--model", str(models["rerank"]), *BATCH, "-q", "a question about Paris"]
    distributed("rerank", *options, *files, "--output", str(tmp_path / "out"))
    rows = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    expected = cli("rerank", *options, "--keep-order", *files)
    assert [(row["file"], row["line"]) for row in rows] == [(row["file"], row["line"]) for row in expected]
    assert [row["score"] for row in rows] == pytest.approx([row["score"] for row in expected], abs=SCORE_TOLERANCE)


def test_embed_over_json_lines_keeps_their_fields_in_jsonl_and_parquet(cluster, models, tmp_path):
    import pyarrow.parquet as pq

    path = tmp_path / "docs.jsonl"
    records = []
    for number, text in enumerate(sentences.varied(200, seed=7)):
        record = {"id": number, "text": text}
        if number >= 100:  # absent from the first blocks: Parquet needs a column of nulls there
            record["tag"] = {"source": "web", "rank": number % 3}
        if number == 150:
            record["embedding"] = "an input field under a result's name: the result wins, as in the CLI"
        records.append(record)
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    common = ["--model", str(models["embed"]), *BATCH, "--jsonl", str(path), "--quiet"]

    distributed("embed", *common, "--output", str(tmp_path / "jsonl"))
    distributed("embed", *common, "--output", str(tmp_path / "parquet"), "--format", "parquet")

    expected = cli("embed", *common)
    assert [row["id"] for row in expected] == list(range(200))
    lines = (tmp_path / "jsonl" / "results.jsonl").read_text(encoding="utf-8").splitlines()
    assert_same_rows([json.loads(line) for line in lines], expected)
    table = pq.read_table(tmp_path / "parquet" / "results.parquet")
    assert table.column_names == ["file", "line", "embedding", "id", "tag"]
    assert_same_rows(table.to_pylist(), [{"file": row["file"], "line": row["line"], "embedding": row["embedding"],
                                          "id": row["id"], "tag": row.get("tag")} for row in expected])


def test_chunk_options_give_what_the_task_commands_give_and_cuts_are_counted(cluster, models, tmp_path):
    """--chunk/--overlap/--aggregate (sentiment) and --chunk/--pool (embed) on the cluster give the rows
    the task commands give; without --chunk the long lines are cut, marked, and counted in one line."""
    path = tmp_path / "long.txt"
    lines = [" ".join(sentences.varied(12, seed=n)) for n in range(6)] + ["a short line"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    runs = [("sentiment", "--model", str(models["sentiment"]), "--chunk", "40", "--overlap", "8", "--aggregate", "max"),
            ("embed", "--model", str(models["embed"]), "--chunk", "40", "--pool", "mean"),
            ("embed", "--model", str(models["embed"]), "--chunk", "40")]
    for number, args in enumerate(runs):
        out = tmp_path / f"out{number}"
        distributed(*args, *BATCH, str(path), "--output", str(out), "--quiet")
        rows = [json.loads(line) for line in (out / "results.jsonl").read_text(encoding="utf-8").splitlines()]
        expected = cli(*args, *BATCH, str(path))
        assert len(rows) == 7 and not any(row.get("truncated") for row in expected)
        assert_same_rows(rows, expected)
    assert len(rows[0]["chunks"]) > 1  # the last run: one vector per chunk

    summary = distributed("sentiment", "--model", str(models["sentiment"]), *BATCH, "--max-length", "64", str(path),
                          "--output", str(tmp_path / "cut"))
    rows = [json.loads(line) for line in (tmp_path / "cut" / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sum(1 for row in rows if row.get("truncated")) == 6
    assert "6 of 7 texts were longer than the 64-token window" in summary and "--chunk TOKENS" in summary


def test_a_model_a_worker_cannot_load_arrives_as_squeezes_own_error(cluster, text_files, tmp_path):
    # The command checks the model on this machine first; a worker on a machine without it must still
    # fail with squeeze's own error, not a Ray traceback.
    from squeezecli.errors import ModelError
    from squeezecli.integrations import raydata
    from squeezecli.io.records import read_records

    with pytest.raises(ModelError, match="no such model directory"):
        raydata.run(read_records([str(text_files[0])]), "sentiment", str(tmp_path / "absent"), {},
                    tmp_path / "out", "jsonl", rows_per_block=64, quiet=True)
    assert not (tmp_path / "out" / "results.jsonl").exists()


def test_batch_inference_takes_numpy_or_arrow_batches_and_keeps_other_columns(models):
    import numpy as np
    import pyarrow as pa

    import squeezecli
    from squeezecli.integrations.raydata import BatchInference

    texts = sentences.varied(10, seed=3)
    step = BatchInference("sentiment", str(models["sentiment"]), text_column="review")
    from_numpy = step({"review": np.array(texts, dtype=object), "id": np.arange(10)})
    from_arrow = step(pa.table({"review": texts, "id": list(range(10))}))

    expected = squeezecli.load("sentiment", str(models["sentiment"]))(texts)
    for table in (from_numpy, from_arrow):
        assert table.column_names == ["id", "label", "score"]
        assert table.column("id").to_pylist() == list(range(10))
        assert table.column("label").to_pylist() == [row["label"] for row in expected]
        assert table.column("score").to_pylist() == pytest.approx([row["score"] for row in expected], abs=1e-6)


def test_without_ray_the_command_says_what_to_install(text_files, tmp_path):
    # A fresh interpreter in which `import ray` fails, as where the extra is not installed.
    code = ("import sys; sys.modules['ray'] = None; from squeezecli.cli import main; "
            f"sys.argv = ['squeeze', 'run-distributed', 'sentiment', {str(text_files[0])!r}, '-o', {str(tmp_path)!r}]; "
            "main()")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == ExitStatus.ERROR
    assert result.stderr.splitlines() == [
        "squeeze: error: run-distributed needs Ray Data, which is not installed: pip install 'squeezecli[ray]'"]
    assert result.stdout == ""
    assert not (tmp_path / "results.jsonl").exists()


def test_the_cli_starts_without_importing_ray_or_torch():
    code = (
        "import sys\n"
        "from squeezecli.cli import squeeze\n"
        "for args in (['--help'], ['run-distributed', '--help'], ['run-distributed', 'qa', '--help']):\n"
        "    assert squeeze.main(args, standalone_mode=False) == 0\n"
        "print(sorted(m for m in ('ray', 'torch', 'pyarrow') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]"


def test_a_plain_local_run_says_only_squeezes_own_line(models, text_files, tmp_path):
    """A whole `squeeze run-distributed` process on a local cluster it starts: Ray's own log lines (its
    token-authentication warning, its core worker's error about restartable actors) stay off stderr;
    --verbose lets Ray's warnings through."""
    from processes import squeeze_env

    command = [sys.executable, "-m", "squeezecli", "run-distributed", "sentiment", str(text_files[2]),
               "-m", str(models["sentiment"]), "--precision", "fp32", "-o", str(tmp_path / "out")]
    env = squeeze_env(tmp_path / "caches")
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    texts = sum(1 for line in text_files[2].read_text(encoding="utf-8").splitlines() if line.strip())
    assert result.stderr.splitlines() == [f"squeeze: {texts:,} results in {tmp_path / 'out' / 'results.jsonl'}"]
    verbose = subprocess.run([*command, "--verbose"], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert verbose.returncode == 0 and verbose.stderr.splitlines()[-1].startswith(f"squeeze: {texts:,} results")
