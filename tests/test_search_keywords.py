"""Keyword and hybrid search in the index: BM25 against FTS5's documented formula computed here (and
rank_bm25), hybrid against reciprocal rank fusion computed here, and an index of format 1 (before the
full-text table) answering dense queries, refusing keyword ones, and upgraded only when asked."""

import json
import math
import random
import re
import shutil
import sqlite3

import pytest
from click.testing import CliRunner

from squeezecli.cli import squeeze
from squeezecli.errors import ExitStatus
from squeezecli.io import index as index_file

WORDS = ("invoice refund password account email payment subscription cancel download reset login error code "
         "printer driver update battery screen cable router network signal museum river bridge garden").split()
RARE = ["E-1042", "Lovelace", "zeppelin", "quasar"]


def corpus_lines(count=300, seed=0):
    """Lines of 2-14 words: "the" in most (an IDF at or below 0, which FTS5 floors to 1e-6), the others
    random, with case and punctuation that the tokenizer folds and drops, and a few rare terms."""
    generator = random.Random(seed)
    lines = []
    for n in range(count):
        words = [generator.choice(WORDS) for _ in range(generator.randint(1, 13))]
        if generator.random() < 0.7:
            words.insert(generator.randrange(len(words) + 1), "the")
        if n % 37 == 5:
            words.append(RARE[n % len(RARE)])
        if n % 5 == 0:
            words[0] = words[0].capitalize() + ","
        lines.append(" ".join(words))
    return lines


def tokens(text):
    return re.findall(r"[^\W_]+", text.lower())


def fts5_bm25(documents, query, k1=1.2, b=0.75):
    """FTS5's bm25() as its documentation states it (each query word a phrase, OR'ed), negated: higher is
    better; None for a document matching no word."""
    docs = [tokens(d) for d in documents]
    average = sum(map(len, docs)) / len(docs)
    scores = []
    for doc in docs:
        if not set(tokens(query)) & set(doc):
            scores.append(None)
            continue
        total = 0.0
        for term in tokens(query):
            having = sum(term in d for d in docs)
            idf = math.log((len(docs) - having + 0.5) / (having + 0.5))
            idf = idf if idf > 0 else 1e-6
            f = doc.count(term)
            total += idf * f * (k1 + 1) / (f + k1 * (1 - b + b * len(doc) / average))
        scores.append(total)
    return scores


def best(scores, k):
    """(1-based id, score) of the k best, equal scores in id order."""
    ranked = sorted((i for i, s in enumerate(scores) if s is not None), key=lambda i: (-scores[i], i))
    return [(i + 1, scores[i]) for i in ranked[:k]]


def run(args, input=None):
    return CliRunner().invoke(squeeze, args, input=input, catch_exceptions=False)


def results(result):
    assert result.exit_code == 0, result.stderr
    return [json.loads(line)["results"] for line in result.stdout.splitlines()]


QUERIES = ["the invoice refund", "Password RESET error", "E-1042", "router, network; signal!", "lovelace museum",
           "the", "nothing-here-at-all"]


@pytest.fixture
def built(served, tmp_path):
    lines = corpus_lines()
    path = tmp_path / "support.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    target = tmp_path / "support.sqidx"
    done = run(["index", "build", str(path), "-o", str(target), "--vectors", "float32", "--precision", "fp32",
                "--batch-size", "64"])
    assert done.exit_code == 0, done.stderr
    return lines, path, target


def test_keyword_search_ranks_by_fts5_bm25(built):
    lines, _, target = built
    found = results(run(["similar", "--index", str(target), "--mode", "keyword", "-k", "15", *QUERIES]))
    for query, hits in zip(QUERIES, found):
        expected = best(fts5_bm25(lines, query), 15)
        assert [hit["line"] for hit in hits] == [i for i, _ in expected], query
        assert [hit["score"] for hit in hits] == pytest.approx([s for _, s in expected], rel=1e-9)
        assert all(hit["text"] == lines[hit["line"] - 1] for hit in hits)
    assert found[-1] == [] and len(found[2]) == len([line for line in lines if "E-1042" in line])


def test_keyword_scores_equal_rank_bm25_where_every_word_is_rarer_than_half(built):
    from rank_bm25 import BM25Okapi

    lines, _, target = built
    reference = BM25Okapi([tokens(line) for line in lines], k1=1.2, b=0.75)
    for query in ["invoice refund", "router network signal", "zeppelin quasar"]:
        scores = reference.get_scores(tokens(query))
        (hits,) = results(run(["similar", "--index", str(target), "--mode", "keyword", "-k", "300", query]))
        assert {hit["line"]: hit["score"] for hit in hits} == pytest.approx(
            {i + 1: s for i, s in enumerate(scores) if s > 0}, rel=1e-9)


def test_hybrid_is_the_reciprocal_rank_fusion_of_the_dense_and_keyword_lists(built):
    _, _, target = built
    for query in QUERIES[:3]:
        for depth in (10, 50):
            common = ["--index", str(target), "--precision", "fp32"]
            (dense,) = results(run(["similar", *common, "-k", str(depth), query]))
            (keyword,) = results(run(["similar", "--mode", "keyword", *common, "-k", str(depth), query]))
            fused = {}
            for ranking in (dense, keyword):
                for hit in ranking:
                    fused[hit["line"]] = fused.get(hit["line"], 0) + 1 / (60 + hit["rank"])
            expected = sorted(fused, key=lambda line: (-fused[line], line))[:7]
            (hybrid,) = results(run(["similar", "--mode", "hybrid", "--candidates", str(depth), *common, "-k", "7",
                                     query]))
            assert [hit["line"] for hit in hybrid] == expected
            assert [hit["score"] for hit in hybrid] == pytest.approx([fused[line] for line in expected], abs=1e-12)


def test_index_add_keeps_the_keywords_in_step(built, tmp_path):
    lines, path, target = built
    more = tmp_path / "more.txt"
    more.write_text("the zeppelin printer driver\nquasar quasar login\n", encoding="utf-8")
    assert run(["index", "add", str(target), str(more), "--precision", "fp32"]).exit_code == 0
    everything = lines + more.read_text().splitlines()
    (hits,) = results(run(["similar", "--index", str(target), "--mode", "keyword", "-k", "20", "zeppelin quasar"]))
    assert [(hit["file"], hit["line"]) for hit in hits] == [
        (str(more), i - len(lines)) if i > len(lines) else (str(path), i)
        for i, _ in best(fts5_bm25(everything, "zeppelin quasar"), 20)]


def as_format_1(source, target):
    """`source` as squeeze wrote an index before keyword search: no `texts` table, version 1."""
    shutil.copy(source, target)
    with sqlite3.connect(target) as db:
        db.execute("DROP TABLE texts")
        db.execute("UPDATE meta SET value = '1' WHERE key = 'version'")
        db.execute("PRAGMA user_version = 1")
    db.close()
    return target


def test_an_index_of_format_1_answers_dense_queries_refuses_keyword_ones_and_upgrades_when_asked(built, tmp_path):
    lines, _, target = built
    old = as_format_1(target, tmp_path / "old.sqidx")
    before = old.read_bytes()
    dense = ["similar", "--index", str(old), "--precision", "fp32", "-k", "5", QUERIES[0]]
    assert results(run(dense)) == results(run([*dense[:2], str(target), *dense[3:]]))
    for mode in ("keyword", "hybrid"):
        refused = run(["similar", "--index", str(old), "--mode", mode, QUERIES[0]])
        assert refused.exit_code == ExitStatus.INPUT
        assert len(refused.stderr.strip().splitlines()) <= 2  # the message and its hint
        assert f"squeeze index upgrade {old}" in refused.stderr and "loading" not in refused.stderr
    assert old.read_bytes() == before  # never rewritten behind the user's back
    assert json.loads(run(["index", "info", str(old), "--json"]).stdout)["keywords"] is False
    more = tmp_path / "more.txt"
    more.write_text("the zeppelin quasar line\n", encoding="utf-8")
    assert run(["index", "add", str(old), str(more), "--precision", "fp32"]).exit_code == 0  # added as format 1
    with sqlite3.connect(old) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 1
    db.close()
    assert run(["index", "add", str(target), str(more), "--precision", "fp32"]).exit_code == 0

    upgraded = run(["index", "upgrade", str(old)])
    assert upgraded.exit_code == 0 and "upgraded" in upgraded.stderr
    with sqlite3.connect(old) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == index_file.VERSION == 2
    assert json.loads(run(["index", "info", str(old), "--json"]).stdout)["keywords"] is True
    keyword = ["--mode", "keyword", "-k", "10", "zeppelin password reset"]
    upgraded_hits = results(run(["similar", "--index", str(old), *keyword]))
    assert upgraded_hits == results(run(["similar", "--index", str(target), *keyword]))
    assert str(more) in [hit["file"] for hit in upgraded_hits[0]]  # the item added as format 1 is found too
    again = run(["index", "upgrade", str(old)])
    assert again.exit_code == 0 and "already" in again.stderr


def test_mode_and_candidates_values_are_refused_before_a_model_loads(tmp_path):
    for args in (["--mode", "fuzzy"], ["--candidates", "0"]):
        refused = run(["similar", "--index", str(tmp_path / "x.sqidx"), *args, "q"])
        assert refused.exit_code == ExitStatus.USAGE and "loading" not in refused.stderr
    corpus = tmp_path / "c.txt"
    corpus.write_text("a\n")
    no_index = run(["similar", "--mode", "keyword", "q", str(corpus)])
    assert no_index.exit_code == ExitStatus.USAGE and "--index" in no_index.stderr
