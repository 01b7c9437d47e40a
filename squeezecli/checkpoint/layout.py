"""A checkpoint in Hugging Face Hub format, as files: which ones squeeze reads, which weight format, the
shards an index names. The Hub downloader, the cache and the weight loader all ask here, so each fact
has one home. No torch.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from pathlib import Path

from ..errors import ModelError, SqueezeError

CONFIG_FILE = "config.json"
# (single file, sharded index) per weight format, most preferred first.
WEIGHT_FORMATS = (
    ("model.safetensors", "model.safetensors.index.json"),
    ("pytorch_model.bin", "pytorch_model.bin.index.json"),
)
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
)
# A tokenizer can be built from any one of these; the other tokenizer files only refine it.
TOKENIZER_VOCABULARIES = ("tokenizer.json", "vocab.txt", "vocab.json")
# The names sentence-transformers has given its transformer module's config (max_seq_length,
# do_lower_case) over the years, in the order it searches them: the download fetches every one a model
# has, and tasks/embed.py reads the first present.
SENTENCE_TRANSFORMER_CONFIGS = (
    "sentence_bert_config.json",
    "sentence_roberta_config.json",
    "sentence_distilbert_config.json",
    "sentence_camembert_config.json",
    "sentence_albert_config.json",
    "sentence_xlm-roberta_config.json",
    "sentence_xlnet_config.json",
)
SENTENCE_TRANSFORMERS_FILES = ("modules.json", *SENTENCE_TRANSFORMER_CONFIGS, "config_sentence_transformers.json")
POOLING_CONFIG = re.compile(r"\d+_Pooling/config\.json")
_WEIGHT_NAMES = {name for pair in WEIGHT_FORMATS for name in pair}


def weights_entry(available: Iterable[str]) -> str | None:
    """The single weight file or sharded index to use among `available` names, in order of preference."""
    present = set(available)
    for single, index in WEIGHT_FORMATS:
        if single in present:
            return single
        if index in present:
            return index
    return None


def companion_files(available: Iterable[str]) -> list[str]:
    """The tokenizer and sentence-transformers files among `available`, in a stable order."""
    present = set(available)
    wanted = [name for name in (*TOKENIZER_FILES, *SENTENCE_TRANSFORMERS_FILES) if name in present]
    return wanted + sorted(name for name in present if POOLING_CONFIG.fullmatch(name))


def is_weights(name: str) -> bool:
    """Whether `name` is a weight file, an index or a shard (everything else travels with an int8 entry)."""
    return name in _WEIGHT_NAMES or name.endswith((".safetensors", ".bin"))


def shard_names(index_path: Path, error: type[SqueezeError], model: str) -> list[str]:
    """The shard files a `*.index.json` maps weights to: plain relative paths inside the model, since
    they become paths (an index naming "../elsewhere" or "/etc/passwd" is refused)."""
    try:
        weight_map = json.loads(index_path.read_text(encoding="utf-8"))["weight_map"]
        shards = sorted(set(weight_map.values()))
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise error(f"the weight index {index_path.name} of model '{model}' is not valid") from exc
    unsafe = [name for name in shards if not isinstance(name, str) or not is_safe_relative_path(name)]
    if unsafe or not shards:
        raise error(f"the weight index {index_path.name} of model '{model}' names no usable shard files")
    return shards


def is_safe_relative_path(name: str) -> bool:
    parts = name.split("/")
    return bool(name) and "\\" not in name and all(part not in ("", ".", "..") for part in parts)


def selection(present: Iterable[str], shards_of: Callable[[str], list[str]]) -> list[str] | None:
    """The files squeeze reads from a checkpoint whose files are `present`: config.json, one weight format
    (with the shards `shards_of(index)` names), the tokenizer and sentence-transformers files; or None
    when any is missing (no config, no weights, no tokenizer vocabulary, a missing shard)."""
    present = set(present)
    weights = weights_entry(present)
    if CONFIG_FILE not in present or weights is None or not any(v in present for v in TOKENIZER_VOCABULARIES):
        return None
    files = [CONFIG_FILE, weights, *companion_files(present)]
    if weights.endswith(".index.json"):
        shards = shards_of(weights)
        if not all(shard in present for shard in shards):
            return None
        files += shards
    return sorted(set(files))


def directory_files(directory: Path) -> list[str]:
    """The files squeeze reads from a local Hub-format directory ('/'-separated, sorted), as `selection`
    chooses them, with an error naming what is missing."""
    # Checked before the walk below: `--model /` or `--model ~` must fail at once, not walk the disk.
    if not (directory / CONFIG_FILE).is_file():
        raise ModelError(f"{directory} has no config.json", hint="a model directory is in Hugging Face Hub format")
    present = {path.relative_to(directory).as_posix() for path in directory.rglob("*") if path.is_file()}
    weights = weights_entry(present)
    if weights is None:
        raise ModelError(f"{directory} has no model.safetensors or pytorch_model.bin")
    shards = shard_names(directory / weights, ModelError, str(directory)) if weights.endswith(".json") else []
    missing = [name for name in shards if name not in present]
    if missing:
        raise ModelError(f"{directory} lacks the weight shard {missing[0]}")
    return sorted({CONFIG_FILE, weights, *shards, *companion_files(present)})


def weight_files(model_dir: Path) -> list[Path]:
    """The weight files of a Hub-format directory, safetensors preferred, shards resolved by their index."""
    for single, index in WEIGHT_FORMATS:
        if (model_dir / single).is_file():
            return [model_dir / single]
        if (model_dir / index).is_file():
            return [model_dir / s for s in shard_names(model_dir / index, ModelError, str(model_dir))]
    raise ModelError(f"no model.safetensors or pytorch_model.bin in {model_dir}")
