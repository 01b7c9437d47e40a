"""`squeeze rerank` and `similar --rerank` end to end, on the catalogue's stand-ins (a random-weight
cross-encoder under cross-encoder/ms-marco-MiniLM-L-6-v2): the order and scores the task gives, and
`similar --rerank` equal to reranking by hand the candidates `similar` returned."""

import json

import pytest
from click.testing import CliRunner

from squeezecli.cli import squeeze
from squeezecli.errors import ExitStatus

QUERY = "how do I reset my password"
LINES = [f"{topic} question number {n}: {detail}" for n, (topic, detail) in enumerate(
    [(t, d) for t in ("password", "invoice", "refund", "login", "email") for d in ("help me", "it failed", "again please",
                                                                                    "urgent", "thanks", "why not")])]


def run(args, input=None):
    return CliRunner().invoke(squeeze, args, input=input, catch_exceptions=False)


def rows(result):
    assert result.exit_code == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "questions.txt"
    path.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    return path


def by_hand(query, texts, k):
    """The best k of texts by the rerank task run directly, ties in the given order."""
    import squeezecli

    scores = [result["score"] for result in squeezecli.load("rerank", query=query, precision="fp32")(texts)]
    order = sorted(range(len(texts)), key=lambda i: (-scores[i], i))[:k]
    return [texts[i] for i in order], [scores[i] for i in order]


def test_similar_rerank_equals_reranking_its_candidates_by_hand(served, corpus):
    common = ["--precision", "fp32", "--format", "jsonl"]
    candidates = rows(run(["similar", QUERY, str(corpus), "-k", "12", *common]))
    texts, scores = by_hand(QUERY, [row["text"] for row in candidates], 4)
    reranked = rows(run(["similar", QUERY, str(corpus), "--rerank", "--candidates", "12", "-k", "4", *common]))
    assert [row["text"] for row in reranked] == texts and [row["rank"] for row in reranked] == [1, 2, 3, 4]
    assert [row["score"] for row in reranked] == pytest.approx(scores, abs=1e-6)
    retrieval = {row["text"]: row["score"] for row in candidates}
    assert [row["retrieval_score"] for row in reranked] == pytest.approx([retrieval[t] for t in texts], abs=1e-6)
    assert all(LINES[row["line"] - 1] == row["text"] for row in reranked)


def test_similar_rerank_over_an_index_in_every_mode(served, corpus, tmp_path):
    target = tmp_path / "q.sqidx"
    assert run(["index", "build", str(corpus), "-o", str(target), "--precision", "fp32"]).exit_code == 0
    for mode in ("dense", "keyword", "hybrid"):
        common = ["--index", str(target), "--mode", mode, "--precision", "fp32", "--format", "jsonl"]
        (plain,) = rows(run(["similar", *common, "-k", "9", QUERY]))
        texts, scores = by_hand(QUERY, [hit["text"] for hit in plain["results"]], 3)
        (reranked,) = rows(run(["similar", *common, "--candidates", "9", "-k", "3", "--rerank", "minilm-rerank", QUERY]))
        assert [hit["text"] for hit in reranked["results"]] == texts, mode
        assert [hit["score"] for hit in reranked["results"]] == pytest.approx(scores, abs=1e-6)


def test_rerank_option_values_are_refused_before_a_model_loads(corpus):
    for args, says in [(["--rerank", "refund policy"], "not a model"), (["--rerank", str(corpus)], "not a model"),
                       (["--candidates", "0", "--rerank"], "--candidates")]:
        refused = run(["similar", "q", str(corpus), *args])
        assert refused.exit_code == ExitStatus.USAGE and says in refused.stderr and "loading" not in refused.stderr
