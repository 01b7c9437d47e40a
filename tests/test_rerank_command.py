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


def test_rerank_ranks_best_first_as_the_task_scores_with_k_keep_order_and_carried_fields(served, tmp_path):
    tickets = tmp_path / "tickets.jsonl"
    tickets.write_text("".join(json.dumps({"id": 100 + n, "text": line, "team": n % 3}) + "\n"
                               for n, line in enumerate(LINES)), encoding="utf-8")
    common = ["-q", QUERY, "--jsonl", str(tickets), "--precision", "fp32", "--format", "jsonl"]
    texts, scores = by_hand(QUERY, LINES, len(LINES))
    ranked = rows(run(["rerank", *common, "-k", "1000"]))
    assert [row["text"] for row in ranked] == texts and [row["rank"] for row in ranked] == list(range(1, 31))
    assert [row["score"] for row in ranked] == pytest.approx(scores, abs=1e-6)
    assert all(row["id"] == 100 + row["line"] - 1 and row["team"] == (row["line"] - 1) % 3
               and row["file"] == str(tickets) for row in ranked)
    assert rows(run(["rerank", *common])) == ranked[:10]  # the best ten by default
    assert rows(run(["rerank", *common, "-k", "3"])) == ranked[:3]
    in_order = rows(run(["rerank", *common, "--keep-order"]))
    assert [row["line"] for row in in_order] == list(range(1, 31)) and all("rank" not in row for row in in_order)
    by_line = {row["line"]: row["score"] for row in ranked}
    assert [row["score"] for row in in_order] == pytest.approx([by_line[n] for n in range(1, 31)], abs=1e-6)
    table = run(["rerank", *common[:-2], "--format", "table", "-k", "2"])
    assert table.exit_code == 0 and table.stdout.splitlines()[2].startswith("1 ") and texts[0][:10] in table.stdout


def test_rerank_refuses_bad_options_before_a_model_loads(tmp_path):
    candidates = tmp_path / "c.txt"
    candidates.write_text("a\nb\n")
    for args, says in [([], "-q"), (["-q", " "], "query is empty"), (["-q", "x", "-k", "0"], "-k"),
                       (["-q", "x", "-k", "1001"], "-k"), (["-q", "x", "-k", "2", "--keep-order"], "give one")]:
        refused = run(["rerank", *args, str(candidates)])
        assert refused.exit_code == ExitStatus.USAGE, (args, refused.stderr)
        assert says in refused.stderr and "loading" not in refused.stderr


def test_eval_rerank_reports_mrr_and_ndcg_at_10_of_the_tasks_scores(served, tmp_path):
    from squeezecli.tasks import metrics

    queries = {QUERY: {0, 6, 19}, "invoice problems": {7, 8}, "nothing relevant here": set()}
    path = tmp_path / "judged.jsonl"
    path.write_text("".join(json.dumps({"query": query, "text": line, "relevant": n in relevant}) + "\n"
                            for query, relevant in queries.items() for n, line in enumerate(LINES)), encoding="utf-8")
    result = run(["eval", "rerank", "--labels-from", "relevant", "--precision", "fp32", str(path)])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)["precisions"]["fp32"]
    import squeezecli

    gold, predicted = [], []
    for query, relevant in queries.items():
        predicted.append([r["score"] for r in squeezecli.load("rerank", query=query, precision="fp32")(LINES)])
        gold.append([float(n in relevant) for n in range(len(LINES))])
    expected = metrics.ranking(gold, predicted)
    assert report["mrr@10"] == pytest.approx(expected["mrr@10"]) and report["ndcg@10"] == pytest.approx(expected["ndcg@10"])
    assert (report["queries"], report["unjudged"]) == (2, 1)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "q", "text": "a", "relevant": 1}\n{"query": "q", "text": "b", "relevant": "high"}\n')
    refused = run(["eval", "rerank", "--labels-from", "relevant", "--precision", "fp32", str(bad)])
    assert refused.exit_code == ExitStatus.INPUT and f"{bad}:2" in refused.stderr and "relevance" in refused.stderr


def test_similar_rerank_equals_rerank_run_on_the_candidates_similar_returned(served, corpus, tmp_path):
    common = ["--precision", "fp32", "--format", "jsonl"]
    candidates = rows(run(["similar", QUERY, str(corpus), "-k", "12", *common]))
    chosen = tmp_path / "candidates.txt"
    chosen.write_text("".join(row["text"] + "\n" for row in candidates), encoding="utf-8")
    by_command = rows(run(["rerank", "-q", QUERY, str(chosen), "-k", "4", *common]))
    reranked = rows(run(["similar", QUERY, str(corpus), "--rerank", "--candidates", "12", "-k", "4", *common]))
    assert [row["text"] for row in reranked] == [row["text"] for row in by_command]
    assert [row["score"] for row in reranked] == pytest.approx([row["score"] for row in by_command], abs=1e-6)
    assert [row["line"] for row in by_command] == [[r["text"] for r in candidates].index(row["text"]) + 1
                                                   for row in reranked]
    texts = [row["text"] for row in by_command]
    assert [row["rank"] for row in reranked] == [1, 2, 3, 4]
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
