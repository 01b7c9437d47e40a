"""Classification and zero-shot tasks against transformers' pipelines on the same random weights (fp32)."""

import json
import subprocess
import sys

import factory
import pytest
import sentences
import torch
import transformers
from transformers import AutoTokenizer

from squeezecli.errors import InputError, ModelError, SqueezeError, UsageError
from squeezecli.model.runtime import Runtime
from squeezecli.tasks import TASKS, task_class
from squeezecli.tasks.classify import Classify, labels_in_id_order
from squeezecli.tasks.zeroshot import ZeroShot

ARCHS = ["bert", "squeezebert", "distilbert", "roberta"]
# Real text of every kind the CLI meets: accents, CJK, emoji, code, a question, numbers.
TEXTS = sentences.varied(24)
LONG_TEXT = " ".join(sentences.HANDWRITTEN)  # several hundred tokens: more than the tiny models' 128
SENTIMENT = ["NEGATIVE", "POSITIVE"]
# squeezebert/squeezebert-mnli's classes (transformers' GLUE MnliProcessor order), named as the store names them.
MNLI = ["contradiction", "entailment", "neutral"]
LABELS = ["politics", "sports", "cooking", "technology", "naïve café culture"]
# A hypothesis of more than half the tiny models' window (67 WordPiece, 82 test-BPE tokens): with the long
# premise, only cutting the premise alone (the pipeline's only_first) keeps it whole.
LONG_TEMPLATE = (
    "The Quick Brown Fox jumps over the lazy dog while Alice and Bob read the News. SqueezeBERT runs on a CPU "
    "in Paris, Berlin, London, New York and São Paulo. Marie Curie studied radioactivity; Ångström measured "
    "light; Gödel proved incompleteness. All in all, this text is about {}."
)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models gain nothing from intra-op threads, and on a busy 2-core machine OpenMP's barriers make
    two threads tens of times slower than one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def reference_pipeline(task, model_dir, runtime):
    # The runtime's window, so that the pipeline truncates where we do (the tiny models have 128 positions,
    # the vocabulary files say 512).
    options = {"model_max_length": runtime.max_length}
    if runtime.config.arch == "distilbert":
        # The test vocabulary is BERT's, whose tokenizer also returns token_type_ids; DistilBERT's (as
        # real DistilBERT checkpoints declare) does not, and the model would refuse them.
        options["model_input_names"] = ["input_ids", "attention_mask"]
    tokenizer = AutoTokenizer.from_pretrained(model_dir, **options)
    return transformers.pipeline(task, model=str(model_dir), tokenizer=tokenizer, device="cpu")


@pytest.fixture(scope="module", params=ARCHS)
def sentiment_model(request, tmp_path_factory):
    model_dir = tmp_path_factory.mktemp(request.param)
    factory.build(model_dir, request.param, "sequence", labels=SENTIMENT, seed=ARCHS.index(request.param))
    runtime = Runtime.from_dir(model_dir, Classify.head)
    return runtime, reference_pipeline("text-classification", model_dir, runtime)


def assert_ranked_equal(ours, theirs):
    """Two rankings of {"label", "score"}: same labels in the same order, scores within 1e-4."""
    assert [entry["label"] for entry in ours] == [entry["label"] for entry in theirs]
    assert [entry["score"] for entry in ours] == pytest.approx([entry["score"] for entry in theirs], abs=1e-4)


def test_registry_names_every_task_and_does_not_import_torch():
    code = (
        "import sys, squeezecli.tasks as t; "
        "assert 'torch' not in sys.modules, 'torch imported'; "
        "print(sorted(t.TASKS))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert task_class("sentiment") is task_class("classify") is Classify
    assert task_class("zero-shot") is ZeroShot
    assert {"sentiment", "classify", "zero-shot", "qa", "ner", "embed"} <= set(TASKS)
    with pytest.raises(ValueError, match="unknown task"):
        task_class("translate")


def test_classify_matches_pipeline(sentiment_model):
    runtime, pipe = sentiment_model
    ours = Classify(runtime, all_scores=True)(TEXTS)
    theirs = pipe(TEXTS, top_k=None)
    assert len(ours) == len(TEXTS)
    for got, expected in zip(ours, theirs, strict=True):
        assert_ranked_equal(got["labels"], expected)
        assert (got["label"], got["score"]) == (got["labels"][0]["label"], got["labels"][0]["score"])


def test_classify_result_fields(sentiment_model):
    runtime, _ = sentiment_model
    plain = Classify(runtime)(TEXTS[:3])
    assert all(set(result) == {"label", "score"} for result in plain)
    top1 = Classify(runtime, top_k=1)(TEXTS[:3])
    for result, short in zip(top1, plain, strict=True):
        assert result["labels"] == [{"label": short["label"], "score": short["score"]}]
    everything = Classify(runtime, all_scores=True)(TEXTS[:3])
    for result in everything:
        assert sorted(entry["label"] for entry in result["labels"]) == sorted(SENTIMENT)
        assert sum(entry["score"] for entry in result["labels"]) == pytest.approx(1.0, abs=1e-6)
        json.dumps(result)


def test_classify_results_do_not_depend_on_batching(sentiment_model):
    runtime, _ = sentiment_model
    task = Classify(runtime, all_scores=True)
    together = task(TEXTS)
    alone = [task([text])[0] for text in TEXTS]
    for got, expected in zip(together, alone, strict=True):
        assert_ranked_equal(got["labels"], expected["labels"])


def test_classify_truncates_long_input_like_the_pipeline(sentiment_model):
    runtime, pipe = sentiment_model
    task = Classify(runtime, all_scores=True)
    assert len(pipe.tokenizer(LONG_TEXT)["input_ids"]) > runtime.max_length
    ours = task([LONG_TEXT, TEXTS[0]])
    theirs = pipe([LONG_TEXT, TEXTS[0]], top_k=None, truncation=True)
    for got, expected in zip(ours, theirs, strict=True):
        assert_ranked_equal(got["labels"], expected)
    # A shorter window is a different input: the option is honoured.
    cut = Classify(runtime, all_scores=True, max_length=8)([LONG_TEXT])[0]
    assert_ranked_equal(cut["labels"], pipe([LONG_TEXT], top_k=None, truncation=True, max_length=8)[0])


def test_classify_empty_batch_and_bad_top_k(sentiment_model):
    runtime, _ = sentiment_model
    assert Classify(runtime)([]) == []
    with pytest.raises(SqueezeError, match="top_k"):
        Classify(runtime, top_k=0)


@pytest.mark.parametrize(
    "problem_type, labels",
    [("multi_label_classification", ["toxic", "insult", "threat"]), ("regression", ["stars"]), (None, ["relevant"])],
)
def test_classify_score_function_follows_the_config(tmp_path, problem_type, labels):
    """Sigmoid for multi-label and single-logit models, raw logits for regression, as the pipeline does."""
    factory.build(tmp_path, "bert", "sequence", labels=labels, problem_type=problem_type)
    runtime = Runtime.from_dir(tmp_path, "sequence")
    ours = Classify(runtime, all_scores=True)(TEXTS)
    theirs = reference_pipeline("text-classification", tmp_path, runtime)(TEXTS, top_k=None)
    for got, expected in zip(ours, theirs, strict=True):
        assert_ranked_equal(got["labels"], expected)
    if problem_type == "multi_label_classification":
        # Independent probabilities: they need not sum to one.
        sums = [sum(entry["score"] for entry in result["labels"]) for result in ours]
        assert any(abs(total - 1.0) > 1e-3 for total in sums)


def test_label_ids_must_cover_every_logit():
    assert labels_in_id_order({1: "b", 0: "a"}) == ["a", "b"]
    with pytest.raises(ModelError, match="id2label"):
        labels_in_id_order({0: "a", 2: "c"})


# ---- zero-shot ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module", params=[
    ("squeezebert", MNLI),  # squeezebert-mnli: entailment is class 1, contradiction 0
    ("roberta", ["CONTRADICTION", "NEUTRAL", "ENTAILMENT"]),  # roberta-large-mnli's names and order
    ("distilbert", ["entailment", "neutral", "contradiction"]),  # entailment first, contradiction last
], ids=["squeezebert-mnli-order", "roberta-uppercase", "entailment-first"])
def nli_model(request, tmp_path_factory):
    arch, labels = request.param
    model_dir = tmp_path_factory.mktemp(f"nli-{arch}")
    factory.build(model_dir, arch, "sequence", labels=labels, seed=7)
    runtime = Runtime.from_dir(model_dir, ZeroShot.head)
    return runtime, reference_pipeline("zero-shot-classification", model_dir, runtime)


@pytest.mark.parametrize("multi_label", [False, True], ids=["single-label", "multi-label"])
@pytest.mark.parametrize("labels, template", [
    (LABELS, "This example is {}."),
    (["science"], "The topic of this text is {}."),  # one candidate: judged on its own, as in the pipeline
    (["weather", "finance"], LONG_TEMPLATE),
])
def test_zero_shot_matches_pipeline(nli_model, multi_label, labels, template):
    runtime, pipe = nli_model
    texts = TEXTS[:10] + [LONG_TEXT]  # the long premise is truncated, the hypothesis never
    ours = ZeroShot(runtime, labels=labels, template=template, multi_label=multi_label)(texts)
    theirs = pipe(texts, candidate_labels=labels, hypothesis_template=template, multi_label=multi_label)
    assert len(ours) == len(texts)
    for text, got, expected in zip(texts, ours, theirs, strict=True):
        assert set(got) == {"labels", "scores"} | ({"truncated", "tokens"} if text is LONG_TEXT else set())
        assert got["labels"] == expected["labels"]
        assert got["scores"] == pytest.approx(expected["scores"], abs=1e-4)
        assert got["scores"] == sorted(got["scores"], reverse=True)
        if not multi_label and len(labels) > 1:
            assert sum(got["scores"]) == pytest.approx(1.0, abs=1e-6)


def test_zero_shot_batches_are_bounded_without_changing_results(nli_model, monkeypatch):
    runtime, _ = nli_model
    calls = []
    forward = Runtime.forward  # frozen: the class is patched

    def counting_forward(self, encodings):
        calls.append(len(encodings))
        return forward(self, encodings)

    monkeypatch.setattr(Runtime, "forward", counting_forward)
    small = ZeroShot(runtime, labels=LABELS, batch_size=3)(TEXTS[:4])
    monkeypatch.undo()
    assert max(calls) <= 3 and sum(calls) == 4 * len(LABELS)
    large = ZeroShot(runtime, labels=LABELS, batch_size=64)(TEXTS[:4])
    for got, expected in zip(small, large, strict=True):
        assert got["labels"] == expected["labels"]
        assert got["scores"] == pytest.approx(expected["scores"], abs=1e-5)


def test_zero_shot_labels_and_template_are_checked(nli_model):
    runtime, _ = nli_model
    assert ZeroShot(runtime, labels=" sports, politics ,,cooking").labels == ["sports", "politics", "cooking"]
    assert ZeroShot(runtime, labels=["sports"])([]) == []
    with pytest.raises(InputError, match="no candidate labels"):
        ZeroShot(runtime, labels=[" ", ""])
    with pytest.raises(InputError, match="more than once"):
        ZeroShot(runtime, labels=["sports", "politics", "sports"])
    with pytest.raises(InputError, match="no {}"):
        ZeroShot(runtime, labels=["sports"], template="This is about sport.")
    with pytest.raises(InputError, match="cannot be filled in"):
        ZeroShot(runtime, labels=["sports"], template="This is about {topic}.")
    # The text is truncated, never the hypothesis: one that fills the window is refused before any input.
    with pytest.raises(UsageError, match="leaves no room for the text"):
        ZeroShot(runtime, labels=["sports", "weather " * runtime.max_length])
    long_but_fits = ZeroShot(runtime, labels=["sports"], template=LONG_TEMPLATE)
    assert len(long_but_fits([LONG_TEXT, "Hi"])) == 2


def test_zero_shot_needs_an_entailment_label(sentiment_model):
    runtime, _ = sentiment_model
    with pytest.raises(ModelError, match="no entailment label"):
        ZeroShot(runtime, labels=["sports"])


# --- long texts as chunks, their scores aggregated ------------------------------------------------------


@pytest.mark.parametrize("aggregate", [None, "mean", "max"])
def test_a_chunked_text_scores_as_its_chunks_aggregated(sentiment_model, aggregate):
    """Each label's score is the mean (the default) or max of the chunks' own scores, each chunk scored
    as the text it names; the result says how many chunks it read and is not cut."""
    runtime, _ = sentiment_model
    task = Classify(runtime, chunk=30, overlap=5, aggregate=aggregate, all_scores=True)
    (result,) = task([LONG_TEXT])
    spans = runtime.tokenizer.word_chunks(LONG_TEXT, 30, 5)
    assert result["chunks"] == len(spans) > 3 and "truncated" not in result
    alone = Classify(runtime, all_scores=True)([LONG_TEXT[start:end] for start, end in spans])
    assert not any("truncated" in chunk for chunk in alone)
    per_label = {label: [next(e["score"] for e in chunk["labels"] if e["label"] == label) for chunk in alone]
                 for label in SENTIMENT}
    reduce = max if aggregate == "max" else (lambda scores: sum(scores) / len(scores))
    expected = sorted(((label, reduce(scores)) for label, scores in per_label.items()), key=lambda p: -p[1])
    assert [(e["label"], e["score"]) for e in result["labels"]] == [
        (label, pytest.approx(score, abs=1e-6)) for label, score in expected]
    assert (result["label"], result["score"]) == (expected[0][0], pytest.approx(expected[0][1], abs=1e-6))


def test_aggregate_without_a_chunk_is_a_usage_error(sentiment_model):
    from squeezecli.errors import ExitStatus, UsageError

    with pytest.raises(UsageError, match="--aggregate applies to chunks") as caught:
        Classify(sentiment_model[0], aggregate="max")
    assert caught.value.status == ExitStatus.USAGE


@pytest.mark.parametrize("aggregate", [None, "max"])
@pytest.mark.parametrize("multi_label", [False, True])
def test_zero_shot_scores_a_chunked_text_as_its_chunks_aggregated(nli_model, aggregate, multi_label):
    """Zero-shot with --chunk: each chunk is a premise against every hypothesis, and a label's score is
    the mean (default) or max of its chunks' scores; the chunk room leaves space for the longest hypothesis."""
    runtime, _ = nli_model
    labels = ["sports", "a very long label about politics and government"]
    task = ZeroShot(runtime, labels=labels, multi_label=multi_label, chunk=30, overlap=5, aggregate=aggregate)
    (result,) = task([LONG_TEXT])
    spans = runtime.tokenizer.word_chunks(LONG_TEXT, 30, 5)
    assert result["chunks"] == len(spans) > 3 and "truncated" not in result
    alone = ZeroShot(runtime, labels=labels, multi_label=multi_label)([LONG_TEXT[start:end] for start, end in spans])
    assert not any("truncated" in chunk for chunk in alone)
    per_label = {label: [chunk["scores"][chunk["labels"].index(label)] for chunk in alone] for label in labels}
    reduce = max if aggregate == "max" else (lambda scores: sum(scores) / len(scores))
    expected = sorted(((label, reduce(scores)) for label, scores in per_label.items()), key=lambda p: -p[1])
    assert result["labels"] == [label for label, _ in expected]
    assert result["scores"] == [pytest.approx(score, abs=1e-6) for _, score in expected]
    hypothesis = len(runtime.tokenizer.backend.encode(task.hypotheses[1], add_special_tokens=False).ids)
    room = task.max_length - runtime.tokenizer.backend.num_special_tokens_to_add(is_pair=True) - hypothesis
    assert task.chunk_room() == room
    from squeezecli.errors import UsageError

    with pytest.raises(UsageError, match=f"--chunk {room + 1} does not fit") as caught:
        ZeroShot(runtime, labels=labels, chunk=room + 1)
    assert caught.value.hint == f"give --chunk 1 to {room}"
    assert len(ZeroShot(runtime, labels=labels, chunk=room)([LONG_TEXT])) == 1
