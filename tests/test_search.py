"""The similarity index: its file format read back independently (sqlite3 + numpy), top-k over blocks
against a brute-force numpy reference, and `squeeze index build/add/info` + `similar --index` end to end
against `similar` over the same corpus."""

import json
import sqlite3

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from squeezecli.cli import squeeze
from squeezecli.errors import ExitStatus, InputError, UsageError
from squeezecli.io import index as index_file
from squeezecli.tasks import search

DIMENSION = 384


def run(args, input=None):
    return CliRunner().invoke(squeeze, args, input=input, catch_exceptions=False)


def lines(output):
    return [json.loads(line) for line in output.splitlines()]


def random_index(path, vectors: torch.Tensor, kind: str, **meta):
    """An index of `vectors` written through the library (no model), as `index build` writes one."""
    with index_file.creating(path, {"model": "test/random", "commit": None, "name": "random", "precision": "fp32",
                                    "dimension": vectors.shape[1], "vectors": kind, "pooling": ["mean"],
                                    "normalize": True, "max_length": 128, "chunk": None, "overlap": 0, **meta}) as index:
        for first in range(0, len(vectors), 10_000):
            block = vectors[first:first + 10_000]
            scales, raw = search.encode(block, kind)
            width = len(raw) // len(block)
            index.append([(f"item {first + i}", json.dumps({"n": first + i}), None, None, None, scale,
                           raw[i * width:(i + 1) * width]) for i, scale in enumerate(scales)])


def numpy_vectors(path, kind) -> np.ndarray:
    """The index's unit vectors as the documented format says to read them, without squeeze's code."""
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA application_id").fetchone()[0] == 0x53515A58
        assert db.execute("PRAGMA user_version").fetchone()[0] == 2
        assert json.loads(db.execute("SELECT value FROM meta WHERE key = 'vectors'").fetchone()[0]) == kind
        rows = db.execute("SELECT scale, vector FROM items ORDER BY id").fetchall()
    dtype = {"int8": np.int8, "float16": "<f2", "float32": "<f4"}[kind]
    stored = np.stack([np.frombuffer(vector, dtype=dtype) for _, vector in rows]).astype(np.float32)
    return stored * np.array([scale for scale, _ in rows], dtype=np.float32)[:, None]


@pytest.mark.parametrize("kind", ["int8", "float16", "float32"])
def test_top_k_over_100000_random_vectors_equals_numpy_brute_force(tmp_path, kind):
    generator = torch.Generator().manual_seed(0)
    vectors = torch.randn(100_000, DIMENSION, generator=generator)
    path = tmp_path / "random.sqidx"
    random_index(path, vectors, kind)
    reference = numpy_vectors(path, kind)
    unit = vectors / vectors.norm(dim=1, keepdim=True)
    # Each stored vector is the unit vector, within its type's rounding.
    tolerance = {"int8": 0.5 / 127 * unit.abs().amax(1, keepdim=True).numpy(), "float16": 1e-3, "float32": 1e-6}[kind]
    assert np.all(np.abs(reference - unit.numpy()) <= tolerance + 1e-7)
    queries = torch.randn(7, DIMENSION, generator=generator)
    queries[3] = vectors[1234] * 3  # a query that is an item (scaled): it must come first
    unit_queries = (queries / queries.norm(dim=1, keepdim=True)).numpy()
    expected_scores = unit_queries @ reference.T  # [Q, N]
    index = index_file.open_index(path)
    assert len(index) == 100_000
    for block_rows in (search.BLOCK_ROWS, 7_001):  # the default, and blocks that do not divide the index
        found = list(search.top_k(index, queries, 10, block_rows=block_rows))
        for q, ranked in enumerate(found):
            order = np.argsort(-expected_scores[q], kind="stable")[:10]
            assert [i - 1 for i, _ in ranked] == order.tolist()  # ids count from 1
            assert [s for _, s in ranked] == pytest.approx(expected_scores[q][order].tolist(), abs=1e-5)
    assert found[3][0][0] == 1235
    hits = search.hits(index, found[3][:2])
    assert hits[0] == {"n": 1234, "rank": 1, "score": found[3][0][1], "text": "item 1234"} and hits[1]["rank"] == 2


def test_equal_scores_rank_in_index_order_across_blocks(tmp_path):
    vectors = torch.randn(50, 8)
    vectors[[5, 17, 33, 49]] = vectors[40].clone()  # duplicates of item 41, in several blocks
    path = tmp_path / "dupes.sqidx"
    random_index(path, vectors, "float32")
    (ranked,) = search.top_k(index_file.open_index(path), vectors[40:41], 5, block_rows=10)
    assert [i for i, _ in ranked] == [6, 18, 34, 41, 50]
    assert len({round(s, 6) for _, s in ranked}) == 1


def test_the_index_scan_and_the_corpus_search_break_ties_on_the_same_integers():
    """tie_keys (the index scan, in torch) and tie_key (the corpus search, in Python) agree on every
    score: exact halves (float32 odd multiples of 1/128, whose x 10^6 ends in .5), rounded half to even;
    random scores; and what is not a number (NaN and -inf lowest, +inf highest)."""
    from squeezecli.tasks.embed import tie_key, tie_keys

    halves = torch.arange(-127, 128, 2, dtype=torch.float32) / 128
    assert all((float(h) * 1e6) % 1 == 0.5 for h in halves)
    scores = torch.cat([halves, torch.rand(20_000, generator=torch.Generator().manual_seed(3)) * 2 - 1,
                        torch.tensor([-1.0, 0.0, 1.0, float("nan"), float("inf"), float("-inf")])])
    assert tie_keys(scores).tolist() == [tie_key(score) for score in scores.tolist()]
    assert tie_key(1 / 128) == 7812 and tie_key(3 / 128) == 23438  # 7812.5 and 23437.5: to the even one
    assert tie_key(float("nan")) < tie_key(-1.0) and tie_key(float("inf")) > tie_key(1.0)


def test_top_k_with_many_ties_equals_a_stable_sort_of_the_rounded_scores(tmp_path):
    """Many exact ties (300 items over 24 unit directions whose products are exact in float32: the axes
    and the (+-1/2)^4 corners), k larger than a block and than the index: the scan's picks and order are
    a stable descending sort of the scores over the whole index."""
    import itertools

    axes = torch.cat([torch.eye(4), -torch.eye(4)])
    corners = torch.tensor(list(itertools.product([0.5, -0.5], repeat=4)))
    directions = torch.cat([axes, corners])  # [24, 4], each of unit length exactly
    generator = torch.Generator().manual_seed(5)
    vectors = directions[torch.randint(0, 24, (300,), generator=generator)]
    path = tmp_path / "ties.sqidx"
    random_index(path, vectors, "float32")
    index = index_file.open_index(path)
    queries = directions[torch.randint(0, 24, (5,), generator=generator)]
    for k, block_rows in ((12, 7), (40, 25), (400, 64)):
        found = list(search.top_k(index, queries, k, block_rows=block_rows))
        for q, ranked in enumerate(found):
            scores = vectors @ queries[q]  # [N], exact: 0, +-1/4, +-1/2, +-1
            order = torch.sort(scores, descending=True, stable=True).indices[:k]
            assert [i - 1 for i, _ in ranked] == order.tolist(), (k, block_rows, q)
            assert [s for _, s in ranked] == scores[order].tolist()


def test_what_is_not_an_index_is_refused_in_one_line(tmp_path):
    not_sqlite = tmp_path / "notes.sqidx"
    not_sqlite.write_text("just text\n")
    other_db = tmp_path / "other.sqidx"
    sqlite3.connect(other_db).execute("CREATE TABLE t (x)").connection.close()
    for path, says in [(tmp_path / "missing.sqidx", "no such index"), (not_sqlite, "not a squeeze index"),
                       (other_db, "not a squeeze index")]:
        with pytest.raises(InputError, match=says) as caught:
            index_file.open_index(path)
        assert caught.value.status == ExitStatus.INPUT


def test_a_failed_build_leaves_nothing_and_an_existing_index_needs_force(tmp_path):
    path = tmp_path / "new.sqidx"
    with pytest.raises(RuntimeError):
        with index_file.creating(path, {"vectors": "float32"}) as index:
            index.append([("a", "{}", None, None, None, 1.0, b"\0" * 4)])
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    random_index(path, torch.randn(3, 4), "float32")
    with pytest.raises(UsageError, match="already exists") as caught:
        random_index(path, torch.randn(3, 4), "float32")
    assert "--force" in caught.value.hint
    with index_file.creating(path, {"vectors": "float32"}, force=True):
        pass
    assert len(index_file.open_index(path)) == 0 and sorted(p.name for p in tmp_path.iterdir()) == ["new.sqidx"]


def test_a_failed_add_adds_nothing(tmp_path):
    path = tmp_path / "idx.sqidx"
    random_index(path, torch.randn(3, 4), "float32")
    with pytest.raises(RuntimeError):
        with index_file.adding(path) as index:
            index.append([("new", "{}", None, None, None, 1.0, b"\0" * 16)])
            raise RuntimeError("interrupted")
    assert len(index_file.open_index(path)) == 3
    with index_file.adding(path) as index:
        index.append([("new", "{}", None, None, None, 1.0, b"\0" * 16)])
    assert len(index_file.open_index(path)) == 4


# --- the commands ---------------------------------------------------------------------------------------

CORPUS = ["the cat sat on the mat", "stock prices fell sharply", "a kitten sleeps on a rug", "rain is expected",
          "the bank raised rates", "cats chase mice", "markets rallied at noon", "snow fell overnight"]
QUERIES = ["a cat on a mat", "finance news", "weather tomorrow"]


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(CORPUS[:4]) + "\n\n" + "\n".join(CORPUS[4:]) + "\n", encoding="utf-8")
    return path


def test_similar_with_an_index_equals_similar_over_the_corpus(served, corpus, tmp_path):
    target = tmp_path / "corpus.sqidx"
    built = run(["index", "build", str(corpus), "-o", str(target), "--vectors", "float32", "--precision", "fp32"])
    assert built.exit_code == 0, built.stderr
    assert f"indexed 8 texts as 8 float32 vectors into {target}" in built.stderr
    answered = run(["similar", "--index", str(target), *QUERIES, "-k", "3", "--precision", "fp32"])
    assert answered.exit_code == 0, answered.stderr
    per_query = lines(answered.stdout)
    assert [row["query"] for row in per_query] == QUERIES
    for row in per_query:
        direct = run(["similar", row["query"], str(corpus), "-k", "3", "--precision", "fp32"])
        expected = lines(direct.stdout)
        assert [(r["file"], r["line"], r["rank"], r["text"]) for r in row["results"]] == [
            (r["file"], r["line"], r["rank"], r["text"]) for r in expected]
        assert [r["score"] for r in row["results"]] == pytest.approx([r["score"] for r in expected], abs=1e-5)
    from_stdin = run(["similar", "--index", str(target), "-k", "3", "--precision", "fp32"], input="\n".join(QUERIES) + "\n")
    assert lines(from_stdin.stdout) == per_query


@pytest.mark.parametrize("kind, tolerance", [("float16", 1e-3), ("int8", 2e-2)])
def test_compact_vectors_score_close_to_the_exact_ones(served, corpus, tmp_path, kind, tolerance):
    exact, compact = tmp_path / "exact.sqidx", tmp_path / f"{kind}.sqidx"
    for path, vectors in ((exact, "float32"), (compact, kind)):
        assert run(["index", "build", str(corpus), "-o", str(path), "--vectors", vectors, "--precision", "fp32"]).exit_code == 0
    def stored_bytes(path):
        with sqlite3.connect(path) as db:
            return db.execute("SELECT sum(length(vector)) FROM items").fetchone()[0]

    assert stored_bytes(compact) * {"float16": 2, "int8": 4}[kind] == stored_bytes(exact)
    args = ["-k", "8", "--precision", "fp32", "--format", "jsonl"]
    want = {r["line"]: r["score"] for r in lines(run(["similar", "--index", str(exact), QUERIES[0], *args]).stdout)[0]["results"]}
    got = {r["line"]: r["score"] for r in lines(run(["similar", "--index", str(compact), QUERIES[0], *args]).stdout)[0]["results"]}
    assert got.keys() == want.keys() and all(abs(got[line] - want[line]) <= tolerance for line in want)


def test_index_add_appends_with_the_index_model_and_info_describes_it(served, corpus, tmp_path):
    target = tmp_path / "corpus.sqidx"
    assert run(["index", "build", str(corpus), "-o", str(target), "--precision", "fp32"]).exit_code == 0
    more = tmp_path / "more.jsonl"
    more.write_text('{"id": "x1", "text": "the cat sat on the mat again"}\n', encoding="utf-8")
    added = run(["index", "add", str(target), "--jsonl", str(more), "--precision", "fp32"])
    assert added.exit_code == 0, added.stderr
    assert f"added 1 text as 1 float16 vector to {target}" in added.stderr
    info = json.loads(run(["index", "info", str(target), "--json"]).stdout)
    assert (info["items"], info["vectors"], info["chunk"], info["precision"]) == (9, "float16", None, "fp32")
    assert info["model"] == "sentence-transformers/all-MiniLM-L6-v2" and len(info["commit"]) == 40
    (row,) = lines(run(["similar", "--index", str(target), "the cat sat on the mat again", "-k", "1",
                        "--precision", "fp32"]).stdout)
    assert row["results"][0]["id"] == "x1" and row["results"][0]["file"] == str(more)  # carried fields come back
    again = run(["index", "build", str(corpus), "-o", str(target)])
    assert again.exit_code == ExitStatus.USAGE and "already exists" in again.stderr


def test_an_index_refuses_another_model(served, corpus, tmp_path, default_models):
    target = tmp_path / "corpus.sqidx"
    assert run(["index", "build", str(corpus), "-o", str(target), "--precision", "fp32"]).exit_code == 0
    other = run(["similar", "--index", str(target), "cats", "-m", str(default_models["sentiment"]), "--precision", "fp32"])
    assert other.exit_code == ExitStatus.USAGE
    assert f"{target} was built with sentence-transformers/all-MiniLM-L6-v2" in other.stderr
    assert "leave out -m" in other.stderr
    adding = run(["index", "add", str(target), str(corpus), "-m", str(default_models["sentiment"]), "--precision", "fp32"])
    assert adding.exit_code == ExitStatus.USAGE
    assert len(index_file.open_index(target)) == 8


def test_a_chunked_index_stores_each_chunk_with_its_offsets(served, tmp_path):
    words = [f"word{i % 97}" for i in range(3000)]
    document = tmp_path / "long.txt"
    document.write_text(" ".join(words) + "\n", encoding="utf-8")
    target = tmp_path / "chunks.sqidx"
    built = run(["index", "build", str(document), "-o", str(target), "--chunk", "100", "--overlap", "10",
                 "--precision", "fp32"])
    assert built.exit_code == 0, built.stderr
    text = " ".join(words)
    with sqlite3.connect(target) as db:
        rows = db.execute("SELECT text, start, end FROM items ORDER BY id").fetchall()
    assert len(rows) > 20 and all(text[start:end] == chunk for chunk, start, end in rows)
    assert rows[0][1] == 0 and rows[-1][2] == len(text)
    (row,) = lines(run(["similar", "--index", str(target), rows[5][0], "-k", "1", "--precision", "fp32"]).stdout)
    assert (row["results"][0]["start"], row["results"][0]["end"]) == rows[5][1:]


def test_a_build_stopped_by_bad_input_leaves_no_file(served, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": \n', encoding="utf-8")
    target = tmp_path / "never.sqidx"
    result = run(["index", "build", "--jsonl", str(bad), "-o", str(target), "--precision", "fp32"])
    assert result.exit_code == ExitStatus.INPUT and f"{bad}:2" in result.stderr
    assert [p.name for p in tmp_path.iterdir() if "sqidx" in p.name] == []  # neither the index nor a temporary


def test_similar_options_that_do_not_fit(served, corpus, tmp_path):
    both = run(["similar", "--index", "x.sqidx", "--corpus", str(corpus), "q"])
    assert both.exit_code == ExitStatus.USAGE and "give one" in both.stderr
    nothing = run(["similar"])
    assert nothing.exit_code == ExitStatus.USAGE
    missing = run(["similar", "--index", str(tmp_path / "none.sqidx"), "q"])
    assert missing.exit_code == ExitStatus.INPUT and "no such index" in missing.stderr


def test_similar_chunks_a_corpus_as_index_build_does(served, tmp_path):
    words = [f"word{i % 89}" for i in range(1500)]
    document = tmp_path / "long.txt"
    document.write_text(" ".join(words) + "\nshort line\n", encoding="utf-8")
    target = tmp_path / "chunks.sqidx"
    options = ["--chunk", "60", "--overlap", "8", "--precision", "fp32"]
    assert run(["index", "build", str(document), "-o", str(target), "--vectors", "float32", *options]).exit_code == 0
    query = " ".join(words[300:340])
    direct = run(["similar", query, str(document), "-k", "4", *options])
    assert direct.exit_code == 0, direct.stderr
    (indexed,) = lines(run(["similar", "--index", str(target), query, "-k", "4", "--precision", "fp32"]).stdout)
    expected = [(r["line"], r.get("start"), r.get("end"), r["text"]) for r in lines(direct.stdout)]
    assert [(r["line"], r.get("start"), r.get("end"), r["text"]) for r in indexed["results"]] == expected
    assert all(" ".join(words)[start:end] == text for line, start, end, text in expected if line == 1)
    refused = run(["similar", "--index", str(target), query, "--chunk", "60"])
    assert refused.exit_code == ExitStatus.USAGE and "when it is built" in refused.stderr
