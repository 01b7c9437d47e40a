"""TokenClassification against transformers' token-classification pipeline on the same random-weight models."""

import itertools
import json
import warnings

import factory
import pytest
import transformers

from squeezecli.errors import SqueezeError
from squeezecli.model.runtime import Runtime
from squeezecli.tasks.ner import AGGREGATIONS, TokenClassification

pytestmark = pytest.mark.filterwarnings("ignore:Tokenizer does not support real words:UserWarning")

# (architecture, tokenizer): cased and uncased WordPiece, and byte-level BPE.
MODELS = [("bert", "wordpiece_uncased"), ("squeezebert", "wordpiece_cased"), ("distilbert", "wordpiece_uncased"),
          ("roberta", "bpe")]
TEXTS = [
    "Marie Curie studied radioactivity in Paris; Ångström measured light in Uppsala.",
    "A naïve café owner in Zürich served crème brûlée, jalapeño soup and a piña colada ☃!",
    "SqueezeBERT runs on a CPU in São Paulo, said Gödel's unbelievably incomprehensible friend.",
    "The U.S.A. and the U.K. signed the treaty; e-mail alice@example.com (today).",
    "Emoji like \U0001F600 and \U0001F44D appear  in tweets ,  so do #hashtags\t and  [brackets] .",
    "",
]
LONG_TEXT = " ".join(TEXTS)
WORD_AGGREGATIONS = ["first", "average", "max"]


class Checkpoint:
    """A random-weight token-classification checkpoint, loaded by us and by transformers."""

    def __init__(self, directory, arch, tokenizer_name):
        factory.build(directory, arch, "token", tokenizer=tokenizer_name)
        self.directory, self.arch = directory, arch
        self.runtime = Runtime.from_dir(directory, "token")
        self._pipeline = None

    def pipeline(self):
        """transformers' pipeline; the aggregation strategy and stride are given per call."""
        if self._pipeline is None:
            tokenizer = transformers.AutoTokenizer.from_pretrained(self.directory)
            if self.arch == "distilbert":  # the factory's tokenizer config says BertTokenizer: token types
                tokenizer.model_input_names = ["input_ids", "attention_mask"]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._pipeline = transformers.pipeline("token-classification", model=str(self.directory),
                                                       tokenizer=tokenizer)
        return self._pipeline


class Models:
    def __init__(self, root):
        self.root = root
        self.built = {}

    def get(self, arch, tokenizer_name):
        if arch not in self.built:
            self.built[arch] = Checkpoint(self.root / arch, arch, tokenizer_name)
        return self.built[arch]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return Models(tmp_path_factory.mktemp("ner-models"))


def reference(pipe, text, **options):
    """transformers' entities in our layout."""
    return [
        {"label": e.get("entity_group", e.get("entity")), "score": float(e["score"]), "text": text[e["start"]:e["end"]],
         "start": e["start"], "end": e["end"]}
        for e in pipe(text, **options)
    ]


def assert_same_entities(ours, theirs):
    assert [(e["label"], e["start"], e["end"], e["text"]) for e in ours] == [
        (e["label"], e["start"], e["end"], e["text"]) for e in theirs
    ]
    assert [e["score"] for e in ours] == pytest.approx([e["score"] for e in theirs], abs=1e-4, rel=1e-4)


def window_count(runtime, text, max_length, stride):
    (encoding,) = runtime.tokenizer.encode([text], max_length=max_length, stride=stride, overflow=True)
    return 1 + len(encoding.overflowing)


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
@pytest.mark.parametrize("arch,tokenizer_name", MODELS)
def test_entities_match_pipeline(models, arch, tokenizer_name, aggregation):
    checkpoint = models.get(arch, tokenizer_name)
    results = TokenClassification(checkpoint.runtime, aggregation=aggregation)(TEXTS)
    assert len(results) == len(TEXTS)
    for text, result in zip(TEXTS, results):
        assert_same_entities(result["entities"], reference(checkpoint.pipeline(), text, aggregation_strategy=aggregation))
    # Random weights tag plenty of tokens, so the comparison is not between two empty lists.
    assert sum(len(result["entities"]) for result in results) >= 10


@pytest.mark.parametrize("arch,tokenizer_name", MODELS[:1] + MODELS[3:])
def test_ignore_labels_matches_pipeline(models, arch, tokenizer_name):
    checkpoint = models.get(arch, tokenizer_name)
    results = TokenClassification(checkpoint.runtime, aggregation="simple", ignore_labels=["PER"])(TEXTS[:3])
    for text, result in zip(TEXTS[:3], results):
        expected = reference(checkpoint.pipeline(), text, aggregation_strategy="simple", ignore_labels=["PER"])
        assert_same_entities(result["entities"], expected)
    labels = {entity["label"] for result in results for entity in result["entities"]}
    assert "O" in labels and "PER" not in labels


@pytest.mark.parametrize("aggregation", ["simple", *WORD_AGGREGATIONS])
@pytest.mark.parametrize("arch,tokenizer_name", MODELS)
def test_long_texts_match_pipeline_with_stride(models, monkeypatch, arch, tokenizer_name, aggregation):
    """Windows overlapping by `stride` are merged as the pipeline merges them when given a stride."""
    checkpoint = models.get(arch, tokenizer_name)
    pipe = checkpoint.pipeline()
    monkeypatch.setattr(pipe.tokenizer, "model_max_length", 24)  # the pipeline's window size
    assert window_count(checkpoint.runtime, LONG_TEXT, 24, 6) >= 4
    task = TokenClassification(checkpoint.runtime, aggregation=aggregation, max_length=24, stride=6, batch_size=3)
    (result,) = task([LONG_TEXT])
    expected = reference(pipe, LONG_TEXT, aggregation_strategy=aggregation, stride=6)
    assert_same_entities(result["entities"], expected)


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_long_texts_are_covered_to_the_end(models, aggregation):
    """Every part of a text many windows long is labelled (the pipeline without a stride would stop at the
    first window), and entities from overlapping windows never overlap in the result."""
    runtime = models.get(*MODELS[0]).runtime
    text = " ".join([LONG_TEXT] * 3)
    (encoding,) = runtime.tokenizer.encode([text], max_length=32, stride=8, overflow=True)
    first_window_end = max(end for end, special in zip((o[1] for o in encoding.offsets), encoding.special_tokens_mask)
                           if not special)
    (result,) = TokenClassification(runtime, aggregation=aggregation, max_length=32, stride=8)([text])
    entities = result["entities"]
    assert entities[-1]["start"] > len(text) - len(LONG_TEXT) > first_window_end
    assert all(a["end"] <= b["start"] for a, b in itertools.pairwise(entities))
    for entity in entities:
        assert entity["text"] == text[entity["start"] : entity["end"]]


def test_windows_go_through_the_model_in_bounded_batches(models, monkeypatch):
    runtime = models.get(*MODELS[0]).runtime
    batch_sizes = []
    forward = Runtime.forward  # frozen: the class is patched

    def spy(self, encodings):
        batch_sizes.append(len(encodings))
        return forward(self, encodings)

    texts = [LONG_TEXT, TEXTS[0], LONG_TEXT[::-1]]
    expected = TokenClassification(runtime, max_length=32, stride=8, batch_size=64)(texts)
    monkeypatch.setattr(Runtime, "forward", spy)
    results = TokenClassification(runtime, max_length=32, stride=8, batch_size=2)(texts)
    assert sum(batch_sizes) == sum(window_count(runtime, text, 32, 8) for text in texts)
    assert max(batch_sizes) <= 2 and len(batch_sizes) > 2
    for ours, theirs in zip(results, expected):
        assert_same_entities(ours["entities"], theirs["entities"])


@pytest.mark.parametrize("aggregation", WORD_AGGREGATIONS)
@pytest.mark.parametrize("arch,tokenizer_name", MODELS)
def test_word_aggregations_never_split_words(models, arch, tokenizer_name, aggregation):
    runtime = models.get(arch, tokenizer_name).runtime
    results = TokenClassification(runtime, aggregation=aggregation)(TEXTS)
    for text, result in zip(TEXTS, results):
        for entity in result["entities"]:
            start, end = entity["start"], entity["end"]
            assert not (start > 0 and text[start - 1].isalpha() and text[start].isalpha()), entity
            assert not (end < len(text) and text[end - 1].isalpha() and text[end].isalpha()), entity


def test_results_are_json_lines_ready(models):
    runtime = models.get(*MODELS[3]).runtime
    for result in TokenClassification(runtime, aggregation="none")(TEXTS):
        assert set(result) == {"entities"}
        assert json.loads(json.dumps(result)) == result
        for entity in result["entities"]:
            assert set(entity) == {"label", "score", "text", "start", "end"}
            assert 0 < entity["score"] <= 1


def test_unknown_aggregation_is_a_user_error(models):
    runtime = models.get(*MODELS[0]).runtime
    with pytest.raises(SqueezeError, match="aggregation"):
        TokenClassification(runtime, aggregation="mean")
