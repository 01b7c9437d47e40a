"""Every task command end to end: input files -> model from the (loopback) Hub -> JSON lines.

The task's numbers are checked against transformers in tests/test_tasks_*.py; here the CLI must give the
same results as the Python API on the same inputs, name each record's source, pull default models on
first use, and fail with one line and the right exit status.
"""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import squeezecli
from squeezecli.cli import squeeze
from squeezecli.errors import ExitStatus

ROOT = Path(__file__).resolve().parent.parent
TEXTS = ["I loved this film, truly wonderful.", "", "Dreadful service and cold food.", "Berlin is in Germany."]
CONTEXT = "Ada Lovelace wrote the first program in 1843. She worked with Charles Babbage in London."


@pytest.fixture
def lines_file(tmp_path):
    path = tmp_path / "input.txt"
    path.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    return path


def run(args, input=None):
    return CliRunner().invoke(squeeze, args, input=input, catch_exceptions=False)


def records(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines()]


def test_sentiment_pulls_the_default_model_once_and_matches_the_api(served, lines_file):
    first = run(["sentiment", str(lines_file), "--precision", "fp32"])
    assert first.exit_code == 0, first.stderr
    assert "first time" in first.stderr or "download" in first.stderr.lower()
    rows = records(first.stdout)
    assert [(r["file"], r["line"]) for r in rows] == [(str(lines_file), 1), (str(lines_file), 3), (str(lines_file), 4)]
    expected = squeezecli.load("sentiment", precision="fp32")([t for t in TEXTS if t])
    assert [(r["label"], round(r["score"], 5)) for r in rows] == [(e["label"], round(e["score"], 5)) for e in expected]

    served.clear_requests()
    again = run(["sentiment", str(lines_file), "--precision", "fp32", "--offline"])
    assert again.exit_code == 0 and records(again.stdout) == rows
    assert served.requests == []


def test_sentiment_int8_agrees_with_fp32_labels(served, lines_file):
    int8 = records(run(["sentiment", str(lines_file)]).stdout)
    fp32 = records(run(["sentiment", str(lines_file), "--precision", "fp32"]).stdout)
    assert [r["label"] for r in int8] == [r["label"] for r in fp32]
    assert all(abs(a["score"] - b["score"]) < 0.05 for a, b in zip(int8, fp32))


@pytest.mark.parametrize("command", [["sentiment"], ["classify", "--labels", "sports,politics"], ["embed"]])
def test_texts_cut_to_the_window_say_so_and_the_run_counts_them(served, tmp_path, command):
    """No silent truncation: each cut text's result says so with its whole length in tokens, and one line
    on stderr counts them; texts that fit (one of them exactly) carry no mark."""
    window = 24
    options = {"labels": ["sports", "politics"]} if command[0] == "classify" else {}
    loaded = squeezecli.load(command[0] if command[0] != "classify" else "zero-shot", precision="fp32", **options)
    tokenizer, limit = loaded.runtime.tokenizer, loaded.runtime.max_length
    room = window - tokenizer.backend.num_special_tokens_to_add(is_pair=command[0] == "classify")
    exact = " ".join(["a"] * room) if command[0] != "classify" else "a"  # a pair's room depends on the label
    texts = ["short line", " ".join(["word"] * 30), exact, " ".join(["word"] * 500)]
    whole = [len(tokenizer.backend.encode(text, add_special_tokens=False).ids) for text in texts]
    assert whole[2] == (room if command[0] != "classify" else 1) and whole[1] > window and whole[3] > window
    path = tmp_path / "texts.txt"
    path.write_text("\n".join(texts) + "\n", encoding="utf-8")
    result = run([*command, str(path), "--precision", "fp32", "--max-length", str(window), "--format", "jsonl"])
    assert result.exit_code == 0, result.stderr
    rows = records(result.stdout)
    assert [(row.get("truncated"), row.get("tokens")) for row in rows] == [
        (None, None), (True, whole[1]), (None, None), (True, whole[3])]
    notices = [line for line in result.stderr.splitlines() if "window" in line]
    chunk = " or --chunk TOKENS reads all of each"
    assert notices == [f"squeeze: 2 of 4 texts were longer than the {window}-token window and cut to it (their "
                       f'JSON results say "truncated": true); --max-length {limit} keeps more of each{chunk}']
    short = run([*command, "--precision", "fp32", "--format", "jsonl"], input="short line\n")
    assert short.exit_code == 0 and "window" not in short.stderr and "truncated" not in short.stdout


def test_classify_needs_a_model_or_labels(served):
    result = run(["classify"], input="text\n")
    assert result.exit_code == ExitStatus.USAGE
    assert "--model" in result.stderr and "--labels" in result.stderr


def test_classify_with_a_model_and_top_k(served, default_models, lines_file):
    result = run(["classify", "--model", str(default_models["sentiment"]), "--top-k", "2", "--precision", "fp32",
                  str(lines_file)])
    rows = records(result.stdout)
    assert len(rows) == 3 and all(len(r["labels"]) == 2 for r in rows)
    assert all(r["labels"][0]["score"] >= r["labels"][1]["score"] for r in rows)


def test_zero_shot_uses_the_nli_label_map(served, lines_file):
    result = run(["classify", "--labels", "sports,politics,tech", "--precision", "fp32", str(lines_file)])
    assert result.exit_code == 0, result.stderr
    rows = records(result.stdout)
    assert all(sorted(r["labels"]) == ["politics", "sports", "tech"] for r in rows)
    assert all(abs(sum(r["scores"]) - 1) < 1e-4 for r in rows)
    multi = records(run(["classify", "--labels", "sports,politics", "--multi-label", "--precision", "fp32",
                         str(lines_file)]).stdout)
    assert any(abs(sum(r["scores"]) - 1) > 1e-3 for r in multi)  # independent scores


def test_qa_reads_each_file_as_one_context_and_lines_with_lines(served, tmp_path):
    doc = tmp_path / "doc.txt"
    doc.write_text(CONTEXT + "\n" + CONTEXT + "\n", encoding="utf-8")
    result = run(["qa", "-q", "Who wrote the first program?", "-q", "When?", "--precision", "fp32", str(doc)])
    assert result.exit_code == 0, result.stderr
    [row] = records(result.stdout)
    assert row["file"] == str(doc)
    assert [a["question"] for a in row["answers"]] == ["Who wrote the first program?", "When?"]
    text = doc.read_text(encoding="utf-8")
    for answer in row["answers"]:
        if answer["answer"] is not None:
            assert text[answer["start"]:answer["end"]] == answer["answer"]
    per_line = records(run(["qa", "-q", "Who?", "--lines", "--precision", "fp32", str(doc)]).stdout)
    assert [r["line"] for r in per_line] == [1, 2]


def test_ner_offsets_point_into_the_line(served, lines_file):
    result = run(["ner", "--aggregation", "first", "--precision", "fp32", str(lines_file)])
    assert result.exit_code == 0, result.stderr
    rows = records(result.stdout)
    by_line = {i + 1: t for i, t in enumerate(TEXTS)}
    assert sum(len(r["entities"]) for r in rows) > 0  # random weights tag plenty
    for row in rows:
        for entity in row["entities"]:
            assert by_line[row["line"]][entity["start"]:entity["end"]] == entity["text"]


def test_embed_jsonl_and_npy(served, lines_file):
    rows = records(run(["embed", str(lines_file), "--precision", "fp32"]).stdout)
    assert len(rows) == 3 and len({len(r["embedding"]) for r in rows}) == 1
    result = CliRunner().invoke(squeeze, ["embed", str(lines_file), "--precision", "fp32", "--format", "npy"])
    array = np.load(io.BytesIO(result.stdout_bytes))
    assert array.shape == (3, len(rows[0]["embedding"]))
    assert np.allclose(array, np.array([r["embedding"] for r in rows], dtype=np.float32), atol=1e-6)


def test_embed_chunks_a_long_text_instead_of_cutting_it(served, tmp_path):
    path = tmp_path / "doc.txt"
    path.write_text(" ".join(["word"] * 300) + "\nshort line\n", encoding="utf-8")
    chunked = run(["embed", str(path), "--chunk", "100", "--overlap", "10", "--precision", "fp32", "--format", "jsonl"])
    assert chunked.exit_code == 0, chunked.stderr
    long, short = records(chunked.stdout)
    assert [(c["start"], c["end"]) for c in short["chunks"]] == [(0, 10)]
    spans = [(c["start"], c["end"]) for c in long["chunks"]]
    assert spans[0][0] == 0 and spans[-1][1] == 300 * 5 - 1 and all(b[0] < a[1] for a, b in zip(spans, spans[1:]))
    assert "window" not in chunked.stderr and "truncated" not in chunked.stdout  # nothing was cut
    pooled = records(run(["embed", str(path), "--chunk", "100", "--overlap", "10", "--pool", "max",
                          "--precision", "fp32", "--format", "jsonl"]).stdout)
    assert [row["chunks"] for row in pooled] == [len(spans), 1]
    assert np.allclose(pooled[0]["embedding"], np.max([c["embedding"] for c in long["chunks"]], axis=0), atol=1e-6)
    refused = run(["embed", str(path), "--chunk", "100", "--format", "npy"])
    assert refused.exit_code == ExitStatus.USAGE and "--format npy holds one vector per text" in refused.stderr


def test_sentiment_and_zero_shot_chunk_a_long_text(served, tmp_path):
    path = tmp_path / "review.txt"
    path.write_text(" ".join(["good film"] * 150) + "\nshort\n", encoding="utf-8")
    result = run(["sentiment", str(path), "--chunk", "60", "--aggregate", "max", "--precision", "fp32",
                  "--format", "jsonl"])
    assert result.exit_code == 0, result.stderr
    assert [row["chunks"] for row in records(result.stdout)] == [5, 1] and "truncated" not in result.stdout
    zero_shot = run(["classify", str(path), "--labels", "cinema,weather", "--chunk", "60", "--precision", "fp32",
                     "--format", "jsonl"])
    assert zero_shot.exit_code == 0, zero_shot.stderr
    rows = records(zero_shot.stdout)
    assert [row["chunks"] for row in rows] == [5, 1] and "truncated" not in zero_shot.stdout
    assert all(sum(row["scores"]) == pytest.approx(1, abs=1e-5) for row in rows)  # the mean of distributions
    refused = run(["classify", "--labels", "a,b", "--aggregate", "max"], input="text\n")
    assert refused.exit_code == ExitStatus.USAGE and "--aggregate applies to chunks" in refused.stderr


def test_similar_ranks_the_corpus(served, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the cat sat\nstock prices fell\nthe cat sat on the mat\n\nrain tomorrow\n", encoding="utf-8")
    result = run(["similar", "the cat sat", "--corpus", str(corpus), "-k", "2", "--precision", "fp32"])
    assert result.exit_code == 0, result.stderr
    rows = records(result.stdout)
    assert [r["rank"] for r in rows] == [1, 2]
    assert rows[0]["text"] == "the cat sat" and rows[0]["line"] == 1
    assert rows[0]["score"] >= rows[1]["score"]


def test_similar_marks_the_corpus_lines_it_cut_and_counts_them(served, tmp_path):
    corpus = tmp_path / "corpus.txt"
    lines = ["the cat sat", " ".join(["cat"] * 40), " ".join(["rain"] * 50)]
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = run(["similar", "the cat", "--corpus", str(corpus), "-k", "3", "--max-length", "16", "--precision", "fp32",
                  "--format", "jsonl"])
    assert result.exit_code == 0, result.stderr
    marks = {row["line"]: (row.get("truncated"), row.get("tokens")) for row in records(result.stdout)}
    assert marks == {1: (None, None), 2: (True, 40), 3: (True, 50)}
    assert "squeeze: 2 of 3 texts were longer than the 16-token window and cut to it" in result.stderr


def test_jsonl_input_carries_fields_through(served, tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"id": 7, "body": "great"}\n{"id": 8, "body": "awful"}\n', encoding="utf-8")
    rows = records(run(["sentiment", "--field", "body", "--precision", "fp32", str(path)]).stdout)
    assert [(r["id"], r["line"]) for r in rows] == [(7, 1), (8, 2)]
    assert all("label" in r for r in rows)


@pytest.mark.parametrize("fmt, delimiter", [("--csv", ","), ("--tsv", "\t")])
def test_csv_and_tsv_input_carry_columns_through_and_match_the_same_texts_as_lines(served, tmp_path, fmt, delimiter):
    texts = ["great, really", 'awful\nand "slow"']
    quoted = [f'"{text}"' for text in ("great, really", 'awful\nand ""slow""')]  # a quote inside doubled
    path = tmp_path / "in.table"
    path.write_text(f"id{delimiter}body\n7{delimiter}{quoted[0]}\n8{delimiter}{quoted[1]}\n", encoding="utf-8")
    result = run(["sentiment", fmt, "--field", "body", "--precision", "fp32", "--format", "jsonl", str(path)])
    assert result.exit_code == 0, result.stderr
    rows = records(result.stdout)
    assert [(r["file"], r["line"], r["id"]) for r in rows] == [(str(path), 2, "7"), (str(path), 3, "8")]
    expected = squeezecli.load("sentiment", precision="fp32")(texts)
    assert [(r["label"], round(r["score"], 5)) for r in rows] == [(e["label"], round(e["score"], 5)) for e in expected]


def test_parquet_input_matches_the_same_texts_as_lines(served, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = ["great, really", "awful\nand slow"]
    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": [7, 8], "body": texts}), path)
    result = run(["sentiment", "--parquet", "--field", "body", "--precision", "fp32", "--format", "jsonl", str(path)])
    assert result.exit_code == 0, result.stderr
    rows = records(result.stdout)
    assert [(r["file"], r["row"], r["id"]) for r in rows] == [(str(path), 1, 7), (str(path), 2, 8)]
    expected = squeezecli.load("sentiment", precision="fp32")(texts)
    assert [(r["label"], round(r["score"], 5)) for r in rows] == [(e["label"], round(e["score"], 5)) for e in expected]


def test_one_input_format_at_a_time(served, tmp_path):
    result = run(["sentiment", "--csv", "--jsonl"], input="text\nhi\n")
    assert result.exit_code == ExitStatus.USAGE and "--jsonl and --csv are different input formats" in result.stderr


@pytest.mark.parametrize("args, status, words", [
    (["sentiment", "--model", "nobody/no-such-model"], ExitStatus.MODEL, "not found"),
    (["sentiment", "--model", "../no-such-dir"], ExitStatus.MODEL, ""),
    (["ner", "--offline"], ExitStatus.NETWORK, "not cached"),
    (["sentiment", "/no/such/file.txt"], ExitStatus.INPUT, "/no/such/file.txt"),
])
def test_errors_are_one_line_with_a_status(hub, args, status, words):
    result = run(args, input="hello\n")
    assert result.exit_code == status, result.stderr
    assert result.stderr.startswith("squeeze: error: ") and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2  # the message and its hint
    assert words in result.stderr


def test_empty_input_prints_nothing(served):
    result = run(["sentiment", "--precision", "fp32"], input="\n\n")
    assert result.exit_code == 0 and result.stdout == ""


def subprocess_env():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return env


def test_real_process_pipes_and_head(served, default_models, tmp_path):
    big = tmp_path / "big.txt"
    big.write_text("a fine day\n" * 3000, encoding="utf-8")
    cmd = f"{sys.executable} -m squeezecli sentiment --model {default_models['sentiment']} --precision fp32 {big} | head -2"
    done = subprocess.run(["bash", "-c", "set -o pipefail; " + cmd], capture_output=True, text=True,
                          env=subprocess_env(), timeout=300)
    assert len(done.stdout.splitlines()) == 2
    assert "Traceback" not in done.stderr and "Error" not in done.stderr
    piped = subprocess.run([sys.executable, "-m", "squeezecli", "embed", "--model", str(default_models["embed"]),
                            "--precision", "fp32"], input="one\ntwo\n", capture_output=True, text=True,
                           env=subprocess_env(), timeout=300)
    assert piped.returncode == 0, piped.stderr
    assert [r["line"] for r in records(piped.stdout)] == [1, 2]
