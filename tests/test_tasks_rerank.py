"""The rerank task against transformers (AutoModelForSequenceClassification, the sigmoid of the pair's
logit) and sentence-transformers' CrossEncoder on the same random weights (fp32)."""

import json
import shutil

import factory
import pytest
import sentences
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from squeezecli.errors import ModelError, UsageError
from squeezecli.model.runtime import Runtime
from squeezecli.tasks import task_class
from squeezecli.io.pipeline import best_first
from squeezecli.tasks.rerank import Rerank

QUERY = "How do I reset my password?"
TEXTS = sentences.varied(20)
LONG_TEXT = " ".join(sentences.HANDWRITTEN)  # several hundred tokens: more than the tiny models' 128
# Cross-encoders as they are published: BERT (ms-marco-TinyBERT), MiniLM (ms-marco-MiniLM-L-6-v2: 384 wide,
# 12 heads of 32; two layers here, not six) and DistilBERT, each with one logit.
SHAPES = {
    "bert": ("bert", {}),
    "minilm": ("bert", dict(hidden_size=384, num_attention_heads=12, intermediate_size=1536, num_hidden_layers=2)),
    "distilbert": ("distilbert", {}),
}


@pytest.fixture(scope="module", params=list(SHAPES))
def cross_encoder(request, tmp_path_factory):
    arch, shape = SHAPES[request.param]
    model_dir = tmp_path_factory.mktemp(request.param)
    factory.build(model_dir, arch, "sequence", labels=["LABEL_0"], seed=3, **shape)
    return model_dir, Runtime.from_dir(model_dir, Rerank.head)


def reference_scores(model_dir, runtime, query, texts, max_length=None):
    """sigmoid(logit) of each (query, text) pair, tokenized as CrossEncoder tokenizes (longest first)."""
    options = {"model_input_names": ["input_ids", "attention_mask"]} if runtime.config.arch == "distilbert" else {}
    tokenizer = AutoTokenizer.from_pretrained(model_dir, **options)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    inputs = tokenizer([query] * len(texts), texts, padding=True, truncation=True, return_tensors="pt",
                       max_length=max_length or runtime.max_length)
    with torch.no_grad():
        return torch.sigmoid(model(**inputs).logits[:, 0]).tolist()


def test_rerank_matches_transformers(cross_encoder):
    model_dir, runtime = cross_encoder
    ours = Rerank(runtime, query=QUERY)(TEXTS)
    assert [set(result) for result in ours] == [{"score"}] * len(TEXTS)
    assert [r["score"] for r in ours] == pytest.approx(reference_scores(model_dir, runtime, QUERY, TEXTS), abs=1e-4)


def test_long_candidates_are_cut_as_transformers_cuts_them_and_marked(cross_encoder):
    model_dir, runtime = cross_encoder
    task = Rerank(runtime, query=QUERY)
    ours = task([LONG_TEXT, TEXTS[0]])
    assert [r["score"] for r in ours] == pytest.approx(
        reference_scores(model_dir, runtime, QUERY, [LONG_TEXT, TEXTS[0]]), abs=1e-4)
    assert ours[0]["truncated"] is True and ours[0]["tokens"] == runtime.tokenizer.total_tokens(LONG_TEXT)
    assert "truncated" not in ours[1]
    short = Rerank(runtime, query=QUERY, max_length=24)([LONG_TEXT])
    assert short[0]["score"] == pytest.approx(reference_scores(model_dir, runtime, QUERY, [LONG_TEXT], 24)[0], abs=1e-4)


def test_results_do_not_depend_on_batching(cross_encoder):
    _, runtime = cross_encoder
    together = Rerank(runtime, query=QUERY, batch_size=64)(TEXTS)
    alone = Rerank(runtime, query=QUERY, batch_size=1)(TEXTS)
    assert [r["score"] for r in together] == pytest.approx([r["score"] for r in alone], abs=1e-5)


def test_the_query_is_never_cut_and_must_be_given(cross_encoder):
    _, runtime = cross_encoder
    with pytest.raises(UsageError, match="half the"):
        Rerank(runtime, query=LONG_TEXT)
    for empty in ("", "   "):
        with pytest.raises(UsageError, match="empty"):
            Rerank(runtime, query=empty)
    assert task_class("rerank") is Rerank


def _variant(source, target, config_update):
    shutil.copytree(source, target)
    config = json.loads((target / "config.json").read_text())
    config.update(config_update)
    (target / "config.json").write_text(json.dumps(config))
    return target


def test_scores_follow_the_activation_config_json_names_as_cross_encoder_does(tmp_path):
    from sentence_transformers import CrossEncoder

    factory.build(tmp_path / "one", "bert", "sequence", labels=["LABEL_0"], seed=5)
    identity = _variant(tmp_path / "one", tmp_path / "identity",
                        {"sentence_transformers": {"activation_fn": "torch.nn.modules.linear.Identity"}})
    legacy = _variant(tmp_path / "one", tmp_path / "legacy",
                      {"sbert_ce_default_activation_function": "torch.nn.modules.activation.Tanh"})
    for directory in (tmp_path / "one", identity, legacy):
        runtime = Runtime.from_dir(directory, Rerank.head)
        reference = CrossEncoder(str(directory), device="cpu", max_length=runtime.max_length)
        theirs = reference.predict([(QUERY, text) for text in TEXTS[:6]], convert_to_numpy=True).tolist()
        assert [r["score"] for r in Rerank(runtime, query=QUERY)(TEXTS[:6])] == pytest.approx(theirs, abs=1e-4)
    unknown = _variant(tmp_path / "one", tmp_path / "unknown",
                       {"sentence_transformers": {"activation_fn": "torch.nn.modules.activation.GELU"}})
    with pytest.raises(ModelError, match="GELU"):
        Rerank(Runtime.from_dir(unknown, Rerank.head), query=QUERY)


def test_several_labels_rank_by_one_of_them(tmp_path):
    from sentence_transformers import CrossEncoder

    factory.build(tmp_path / "two", "bert", "sequence", labels=["irrelevant", "relevant"], seed=6)
    runtime = Runtime.from_dir(tmp_path / "two", Rerank.head)
    theirs = CrossEncoder(str(tmp_path / "two"), device="cpu").predict([(QUERY, t) for t in TEXTS[:5]]).tolist()
    ours = Rerank(runtime, query=QUERY)(TEXTS[:5])  # the raw logits (CrossEncoder's identity); the second ranks
    assert [r["score"] for r in ours] == pytest.approx([row[1] for row in theirs], abs=1e-4)
    assert [v for r in ours for v in r["labels"].values()] == pytest.approx([v for row in theirs for v in row], abs=1e-4)
    assert all(list(r["labels"]) == ["irrelevant", "relevant"] for r in ours)
    chosen = Rerank(runtime, query=QUERY, label="irrelevant")(TEXTS[:5])
    assert [r["score"] for r in chosen] == pytest.approx([row[0] for row in theirs], abs=1e-4)
    with pytest.raises(UsageError, match="no label"):
        Rerank(runtime, query=QUERY, label="maybe")
    factory.build(tmp_path / "three", "bert", "sequence", labels=["a", "b", "c"], seed=7)
    with pytest.raises(ModelError, match="3 labels"):
        Rerank(Runtime.from_dir(tmp_path / "three", Rerank.head), query=QUERY)


def test_best_first_keeps_the_k_best_in_order_ties_in_input_order():
    scored = [(0.5, "a"), (0.9, "b"), (float("nan"), "n"), (0.5, "c"), (0.7, "d"), (0.9, "e")]
    everything = best_first(iter(scored), None)
    assert [item for _, _, item in everything] == ["b", "e", "d", "a", "c", "n"]
    assert [rank for rank, _, _ in everything] == [1, 2, 3, 4, 5, 6]
    assert best_first(iter(scored), 3) == everything[:3]
    reference = sorted(range(len(scored)), key=lambda i: (-(scored[i][0] if scored[i][0] == scored[i][0] else -1e9), i))
    assert [item for _, _, item in everything] == [scored[i][1] for i in reference]
