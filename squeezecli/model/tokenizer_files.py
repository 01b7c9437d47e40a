"""A checkpoint's tokenizer files -> a `tokenizers` backend that behaves exactly like transformers' fast
tokenizer for the same files.

A checkpoint either ships a serialized fast tokenizer (tokenizer.json) or only the slow tokenizer's files
(vocab.txt for WordPiece; vocab.json + merges.txt for byte-level BPE). For the latter the fast tokenizer
is rebuilt the way transformers' BertConverter / RobertaConverter do, and in both cases the same
tokenizer_config.json overrides transformers applies are applied, so ids, offsets and special-token
handling match what the model was trained and evaluated with.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tokenizers import AddedToken, decoders, normalizers, pre_tokenizers, processors
from tokenizers import Tokenizer as BackendTokenizer
from tokenizers.models import BPE, WordPiece

from ..errors import ModelError

Family = Literal["wordpiece", "bpe"]

FALLBACK_MAX_LENGTH = 512
# Checkpoints that do not declare a limit get transformers' VERY_LARGE_INTEGER (1e30) written in; anything
# this large is not a real position limit.
_ABSURD_MAX_LENGTH = 100_000
INCOMPLETE_HINT = "the checkpoint's tokenizer files are incomplete"

# transformers' SPECIAL_TOKENS_ATTRIBUTES order, which decides the ids of special tokens missing from the vocab.
_SPECIAL_KEYS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
# Constructor defaults of BertTokenizerFast and RobertaTokenizerFast, used when the config is silent.
_DEFAULT_SPECIALS: dict[Family, dict[str, str]] = {
    "wordpiece": {
        "unk_token": "[UNK]",
        "sep_token": "[SEP]",
        "pad_token": "[PAD]",
        "cls_token": "[CLS]",
        "mask_token": "[MASK]",
    },
    "bpe": {
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "sep_token": "</s>",
        "pad_token": "<pad>",
        "cls_token": "<s>",
        "mask_token": "<mask>",
    },
}


@dataclass(frozen=True)
class SpecialTokens:
    named: dict[str, AddedToken]  # by transformers attribute name: "cls_token", "pad_token", ...
    additional: list[AddedToken]


def load(directory: Path) -> tuple[BackendTokenizer, SpecialTokens, int]:
    """(backend, special tokens, model_max_length) from the tokenizer files in `directory`."""
    config = _read_json_if_present(directory / "tokenizer_config.json")
    # transformers ignores special_tokens_map.json once the config carries its own added-token table.
    special_map = (
        {} if "added_tokens_decoder" in config else _read_json_if_present(directory / "special_tokens_map.json")
    )
    serialized = directory / "tokenizer.json"
    if serialized.is_file():
        backend = _load_serialized(serialized, config)
        specials = _resolve_special_tokens(config, special_map, _family_of(backend))
        _add_missing_tokens(backend, config, specials)
    elif (directory / "vocab.txt").is_file():
        specials = _resolve_special_tokens(config, special_map, "wordpiece")
        backend = _build_wordpiece(directory / "vocab.txt", config, specials)
    elif (directory / "vocab.json").is_file() and (directory / "merges.txt").is_file():
        specials = _resolve_special_tokens(config, special_map, "bpe")
        backend = _build_byte_level_bpe(directory / "vocab.json", directory / "merges.txt", config, specials)
    else:
        raise ModelError(
            f"no tokenizer files in {directory}",
            hint="expected tokenizer.json, vocab.txt, or vocab.json with merges.txt",
        )
    try:  # a vocabulary without its [UNK] (an empty vocab.txt) fails only when text is encoded
        backend.encode("squeeze", add_special_tokens=True)
    except Exception as error:  # tokenizers raises plain Exception
        raise ModelError(f"the tokenizer in {directory} cannot encode text: {error}", hint=INCOMPLETE_HINT) from None
    return backend, specials, _model_max_length(config)


def _read_json_if_present(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _damaged(path, f"cannot read it: {error}") from error
    if not isinstance(payload, dict):
        raise _damaged(path, "not a JSON object")
    return payload


def _damaged(path: Path, problem: str) -> ModelError:
    return ModelError(f"{path.name}: {problem}", hint=f"the file at {path} is damaged")


def _model_max_length(config: dict[str, Any]) -> int:
    value = config.get("model_max_length")
    if isinstance(value, (int, float)) and 0 < value <= _ABSURD_MAX_LENGTH:
        return int(value)
    return FALLBACK_MAX_LENGTH


def _added_token(value: str | dict[str, Any], *, special: bool, **string_defaults: bool) -> AddedToken:
    """An AddedToken from its serialized dict, or from a plain string with `string_defaults` for its flags."""
    if isinstance(value, str):
        # tokenizers' own default: special tokens are matched on the raw text, before normalization.
        return AddedToken(value, special=special, **{"normalized": not special, **string_defaults})
    return AddedToken(
        value["content"],
        single_word=value.get("single_word", False),
        lstrip=value.get("lstrip", False),
        rstrip=value.get("rstrip", False),
        normalized=value.get("normalized", not special),
        special=special,
    )


def _string_special_flags(family: Family, key: str) -> dict[str, bool]:
    """How the slow tokenizer classes wrap special tokens given as plain strings."""
    if family == "wordpiece":
        return {}
    # RobertaTokenizer wraps them with tokenizers' non-special default (normalized), except <mask>, which
    # gets lstrip so that "a <mask>" absorbs the space before the mask.
    return {"lstrip": True, "normalized": False} if key == "mask_token" else {"normalized": True}


def _resolve_special_tokens(config: dict[str, Any], special_map: dict[str, Any], family: Family) -> SpecialTokens:
    """Special tokens with transformers' precedence: class defaults < tokenizer_config < special_tokens_map,
    and a token listed in the config's added_tokens_decoder keeps the flags recorded there."""
    values: dict[str, Any] = dict(_DEFAULT_SPECIALS[family])
    for source in (config, special_map):
        values.update({key: source[key] for key in _SPECIAL_KEYS if key in source})
    recorded = {
        entry["content"]: entry for entry in config.get("added_tokens_decoder", {}).values() if isinstance(entry, dict)
    }
    named: dict[str, AddedToken] = {}
    for key in _SPECIAL_KEYS:
        value = values.get(key)
        if value is None:
            continue
        content = value if isinstance(value, str) else value["content"]
        named[key] = _added_token(recorded.get(content, value), special=True, **_string_special_flags(family, key))
    additional: list[AddedToken] = []
    for source in (config, special_map):
        for value in source.get("additional_special_tokens") or []:
            content = value if isinstance(value, str) else value["content"]
            token = _added_token(recorded.get(content, value), special=True)
            if token.content not in {known.content for known in additional}:
                additional.append(token)
    return SpecialTokens(named, additional)


def special_content(specials: SpecialTokens, key: str) -> str:
    if key not in specials.named:
        raise ModelError(f"the tokenizer config sets no {key.replace('_', ' ')}", hint=INCOMPLETE_HINT)
    return specials.named[key].content


def _add_missing_tokens(backend: BackendTokenizer, config: dict[str, Any], specials: SpecialTokens) -> None:
    """Register the config's added tokens and all special tokens, in the order transformers' fast __init__
    does (which fixes the ids of tokens missing from the vocab), so that e.g. a literal "[SEP]" in user text
    becomes the special token rather than three word pieces."""
    recorded = sorted(
        ((int(index), entry) for index, entry in config.get("added_tokens_decoder", {}).items()),
        key=lambda item: item[0],
    )
    candidates = [_added_token(entry, special=entry.get("special", False)) for _, entry in recorded]
    candidates += [*specials.named.values(), *specials.additional]
    special_contents = {token.content for token in [*specials.named.values(), *specials.additional]}
    present = {token.content for token in backend.get_added_tokens_decoder().values()}
    for token in candidates:
        if token.content in present:
            continue
        present.add(token.content)
        if token.special or token.content in special_contents:
            token.special = True
            backend.add_special_tokens([token])
        else:
            backend.add_tokens([token])


def _load_serialized(path: Path, config: dict[str, Any]) -> BackendTokenizer:
    try:
        backend = BackendTokenizer.from_file(str(path))
    except Exception as error:  # tokenizers raises plain Exception for unreadable or unknown JSON
        raise _damaged(path, f"cannot load it: {error}") from error
    # Some checkpoints ship fixed padding/truncation (e.g. pad everything to 128); we decide those per call.
    backend.no_padding()
    backend.no_truncation()
    _apply_config_overrides(backend, config)
    return backend


def _family_of(backend: BackendTokenizer) -> Family:
    return "bpe" if json.loads(backend.model.__getstate__())["type"] == "BPE" else "wordpiece"


def _apply_config_overrides(backend: BackendTokenizer, config: dict[str, Any]) -> None:
    """transformers lets tokenizer_config.json (or the tokenizer class defaults) override these parts of a
    tokenizer.json; doing the same keeps us in step when the two files disagree."""
    normalizer_state = json.loads(backend.normalizer.__getstate__()) if backend.normalizer else {}
    if normalizer_state.get("type") == "BertNormalizer":
        wanted = _bert_normalizer_options(config)
        if any(normalizer_state.get(key) != value for key, value in wanted.items()):
            backend.normalizer = normalizers.BertNormalizer(
                clean_text=normalizer_state.get("clean_text", True), **wanted
            )
    add_prefix_space = bool(config.get("add_prefix_space", False))
    pre_tokenizer_state = json.loads(backend.pre_tokenizer.__getstate__()) if backend.pre_tokenizer else {}
    if pre_tokenizer_state.get("type") == "ByteLevel" and pre_tokenizer_state["add_prefix_space"] != add_prefix_space:
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(
            add_prefix_space=add_prefix_space,
            trim_offsets=pre_tokenizer_state.get("trim_offsets", True),
            use_regex=pre_tokenizer_state.get("use_regex", True),
        )
    processor_state = json.loads(backend.post_processor.__getstate__()) if backend.post_processor else {}
    if processor_state.get("type") == "RobertaProcessing":
        trim_offsets = bool(config.get("trim_offsets", True))
        if processor_state["add_prefix_space"] != add_prefix_space or processor_state["trim_offsets"] != trim_offsets:
            backend.post_processor = processors.RobertaProcessing(
                sep=tuple(processor_state["sep"]),
                cls=tuple(processor_state["cls"]),
                trim_offsets=trim_offsets,
                add_prefix_space=add_prefix_space,
            )


def _bert_normalizer_options(config: dict[str, Any]) -> dict[str, Any]:
    # BertTokenizerFast defaults. strip_accents=None means "strip when lowercasing", as in original BERT.
    strip_accents = config.get("strip_accents")
    if strip_accents is not None and not isinstance(strip_accents, bool):
        raise ModelError(f"tokenizer_config.json's strip_accents is {strip_accents!r}, not true, false or null")
    return {
        "lowercase": bool(config.get("do_lower_case", True)),
        "strip_accents": strip_accents,
        "handle_chinese_chars": bool(config.get("tokenize_chinese_chars", True)),
    }


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as error:
        raise _damaged(path, f"cannot read it: {error}") from error


def _build_wordpiece(vocab_path: Path, config: dict[str, Any], specials: SpecialTokens) -> BackendTokenizer:
    """transformers' BertConverter applied to a BertTokenizer loaded from vocab.txt."""
    lines = _read_lines(vocab_path)
    if lines and lines[-1] == "":
        lines.pop()  # the newline ending the last entry
    # BertTokenizer's load_vocab: the line number is the id; a repeated token keeps its last line.
    vocab = {line: index for index, line in enumerate(lines)}
    backend = BackendTokenizer(
        WordPiece(
            vocab,
            unk_token=special_content(specials, "unk_token"),
            continuing_subword_prefix="##",
            max_input_chars_per_word=100,
        )
    )
    backend.normalizer = normalizers.BertNormalizer(clean_text=True, **_bert_normalizer_options(config))
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece(prefix="##")
    _add_missing_tokens(backend, config, specials)
    cls_token, sep_token = special_content(specials, "cls_token"), special_content(specials, "sep_token")
    backend.post_processor = processors.TemplateProcessing(
        single=f"{cls_token}:0 $A:0 {sep_token}:0",
        pair=f"{cls_token}:0 $A:0 {sep_token}:0 $B:1 {sep_token}:1",
        special_tokens=[(cls_token, backend.token_to_id(cls_token)), (sep_token, backend.token_to_id(sep_token))],
    )
    return backend


def _build_byte_level_bpe(
    vocab_path: Path, merges_path: Path, config: dict[str, Any], specials: SpecialTokens
) -> BackendTokenizer:
    """transformers' RobertaConverter applied to a RobertaTokenizer loaded from vocab.json + merges.txt."""
    vocab = _read_json_if_present(vocab_path)
    # RobertaTokenizer reads merges.txt as a "#version" header line and then one "left right" pair per line.
    merges: dict[tuple[str, ...], None] = {}  # ordered and de-duplicated, like RobertaTokenizer.bpe_ranks
    for line in _read_lines(merges_path):
        if line.startswith("#version") or not line.strip():
            continue
        merges.setdefault(tuple(line.split()), None)
    if any(len(pair) != 2 for pair in merges):
        raise _damaged(merges_path, "a line is not a pair of tokens")
    add_prefix_space = bool(config.get("add_prefix_space", False))
    trim_offsets = bool(config.get("trim_offsets", True))
    try:
        model = BPE(
            vocab=vocab,
            merges=list(merges),
            dropout=None,
            continuing_subword_prefix="",
            end_of_word_suffix="",
            fuse_unk=False,
        )
    except Exception as error:  # tokenizers raises plain Exception, e.g. for a merge of tokens not in the vocab
        raise _damaged(merges_path, f"does not fit {vocab_path.name}: {error}") from error
    backend = BackendTokenizer(model)
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space)
    backend.decoder = decoders.ByteLevel()
    _add_missing_tokens(backend, config, specials)
    cls_token, sep_token = special_content(specials, "cls_token"), special_content(specials, "sep_token")
    backend.post_processor = processors.RobertaProcessing(
        sep=(sep_token, backend.token_to_id(sep_token)),
        cls=(cls_token, backend.token_to_id(cls_token)),
        trim_offsets=trim_offsets,
        add_prefix_space=add_prefix_space,
    )
    return backend
