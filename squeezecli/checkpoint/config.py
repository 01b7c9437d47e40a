"""EncoderConfig: the few numbers that describe every encoder squeeze runs.

Each architecture's `config.json` spells these differently (DistilBERT says `dim` and `n_layers`,
SqueezeBERT adds six `*_groups`); `EncoderConfig.from_hf` reads them all into one shape so that the
model code never looks at `model_type` again, except where the checkpoint really differs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ModelError
from .layout import CONFIG_FILE

ARCHITECTURES = ("bert", "squeezebert", "distilbert", "roberta")
# model_type values that are one of ours under another name.
ALIASES = {"xlm-roberta": "roberta", "camembert": "roberta"}


@dataclass(frozen=True)
class Groups:
    """Groups of each position-wise projection (SqueezeBERT's grouped 1x1 convolutions; 1 = dense)."""

    query: int = 1
    key: int = 1
    value: int = 1
    attn_out: int = 1  # SqueezeBERT's "post_attention"
    ffn_in: int = 1  # "intermediate"
    ffn_out: int = 1  # "output"


@dataclass(frozen=True)
class EncoderConfig:
    arch: str
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    max_positions: int
    type_vocab_size: int  # 0 when the architecture has no token-type embeddings (DistilBERT)
    layer_norm_eps: float = 1e-12
    activation: str = "gelu"
    pad_token_id: int = 0
    position_offset: int = 0  # RoBERTa numbers positions from pad_token_id + 1
    groups: Groups = field(default_factory=Groups)
    id2label: dict[int, str] = field(default_factory=dict)
    problem_type: str | None = None  # "regression", "multi_label_classification", ...: how logits are scored

    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    @property
    def max_length(self) -> int:
        """Longest input in tokens the position table allows."""
        return self.max_positions - self.position_offset

    @property
    def parameters(self) -> int:
        """Parameters of the encoder this config describes (embeddings and blocks; heads are small)."""
        h, i, g = self.hidden_size, self.intermediate_size, self.groups
        embeddings = (self.vocab_size + self.max_positions + self.type_vocab_size) * h + 2 * h
        projections = h * h // g.query + h * h // g.key + h * h // g.value + h * h // g.attn_out
        projections += h * i // g.ffn_in + i * h // g.ffn_out
        per_block = projections + 6 * h + i + 4 * h  # biases and two LayerNorms
        return embeddings + self.num_layers * per_block

    @classmethod
    def from_hf(cls, cfg: dict) -> "EncoderConfig":
        """Ours from a config.json's dict; every value is type- and range-checked (a hostile or broken
        config must fail here, with its field named, not inside torch or by exhausting memory)."""
        if not isinstance(cfg, dict):
            raise ModelError("config.json is not a JSON object")
        model_type = cfg.get("model_type", "")
        arch = ALIASES.get(model_type, model_type) if isinstance(model_type, str) else model_type
        if arch not in ARCHITECTURES:
            raise ModelError(
                f"unsupported model_type {model_type!r}",
                hint="squeeze runs bert, squeezebert, distilbert, roberta and xlm-roberta checkpoints",
            )
        read = _Reader(cfg, str(model_type))
        names = _DISTILBERT_NAMES if arch == "distilbert" else _BERT_NAMES
        groups = Groups()
        if arch == "squeezebert":
            if read.int("embedding_size", read.int("hidden_size")) != read.int("hidden_size"):
                raise ModelError("squeezebert checkpoints with embedding_size != hidden_size are not supported")
            groups = Groups(
                query=read.int("q_groups", 4),
                key=read.int("k_groups", 4),
                value=read.int("v_groups", 4),
                attn_out=read.int("post_attention_groups", 1),
                ffn_in=read.int("intermediate_groups", 4),
                ffn_out=read.int("output_groups", 4),
            )
        pad = read.int("pad_token_id", 1 if arch == "roberta" else 0, minimum=0)
        config = cls(
            arch=arch,
            **{ours: read.int(theirs) for ours, theirs in names.items()},
            max_positions=read.int("max_position_embeddings"),
            # DistilBERT has no token types, and transformers hard-codes its LayerNorm epsilon.
            type_vocab_size=0 if arch == "distilbert" else read.int("type_vocab_size", 2, minimum=0),
            layer_norm_eps=1e-12 if arch == "distilbert" else read.float("layer_norm_eps", 1e-12),
            activation=read.str("activation" if arch == "distilbert" else "hidden_act", "gelu"),
            pad_token_id=pad,
            position_offset=pad + 1 if arch == "roberta" else 0,
            groups=groups,
            id2label=read.labels(),
            problem_type=read.optional_str("problem_type"),
        )
        config.check()
        return config

    def check(self) -> None:
        """The shapes fit together, and the model is of a size squeeze runs (MAX_PARAMETERS)."""
        problems = []
        if self.hidden_size % self.num_heads:
            problems.append(f"hidden size {self.hidden_size} is not a multiple of {self.num_heads} attention heads")
        for name, groups in vars(self.groups).items():
            width_in = self.intermediate_size if name == "ffn_out" else self.hidden_size
            width_out = self.intermediate_size if name == "ffn_in" else self.hidden_size
            if width_in % groups or width_out % groups:
                problems.append(f"{groups} groups do not divide the {name} projection ({width_in} -> {width_out})")
        if self.pad_token_id >= self.vocab_size:
            problems.append(f"pad_token_id {self.pad_token_id} is outside the vocabulary of {self.vocab_size}")
        if self.num_layers > MAX_LAYERS:
            problems.append(f"{self.num_layers} layers, more than the {MAX_LAYERS} squeeze builds")
        if self.max_length < 1:
            problems.append(f"max_position_embeddings {self.max_positions} leaves no position for a token")
        if problems:
            raise ModelError(f"config.json does not describe a model squeeze can build: {problems[0]}")
        if self.parameters > MAX_PARAMETERS:
            raise ModelError(
                f"config.json describes a model of {self.parameters:,} parameters; squeeze runs encoders of up to "
                f"{MAX_PARAMETERS:,}",
                hint="squeeze is for compact encoders (SqueezeBERT, BERT, DistilBERT, MiniLM, RoBERTa)",
            )


# Our names -> config.json's: DistilBERT spells the sizes its own way.
_BERT_NAMES = {"vocab_size": "vocab_size", "hidden_size": "hidden_size", "num_layers": "num_hidden_layers",
               "num_heads": "num_attention_heads", "intermediate_size": "intermediate_size"}
_DISTILBERT_NAMES = {"vocab_size": "vocab_size", "hidden_size": "dim", "num_layers": "n_layers", "num_heads": "n_heads",
                     "intermediate_size": "hidden_dim"}
# Larger than any encoder squeeze is for (BERT-large and XLM-R large are 335M and 560M) and small enough
# that a config.json with absurd sizes fails before anything is allocated for it.
MAX_PARAMETERS = 2_000_000_000
# Far more layers than any encoder has (BERT-large: 24); each is a module object, whatever its size.
MAX_LAYERS = 256
# Sizes a config.json may state, each on its own (their product is bounded by MAX_PARAMETERS).
_MAX_DIMENSION = 1 << 24


class _Reader:
    """Typed access to a config.json's values, naming the field when one is missing or of the wrong type."""

    def __init__(self, cfg: dict, model_type: str) -> None:
        self.cfg, self.model_type = cfg, model_type

    def _value(self, key: str, default: object) -> object:
        if key in self.cfg and self.cfg[key] is not None:
            return self.cfg[key]
        if default is _REQUIRED:
            raise ModelError(f"config.json for a {self.model_type} model lacks {key!r}")
        return default

    def _wrong(self, key: str, value: object, expected: str) -> ModelError:
        return ModelError(f"config.json's {key!r} is {json.dumps(value)[:40]}, not {expected}")

    def int(self, key: str, default: object = None, *, minimum: int = 1) -> int:
        value = self._value(key, _REQUIRED if default is None else default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._wrong(key, value, "an integer")
        if not minimum <= value <= _MAX_DIMENSION:
            raise self._wrong(key, value, f"an integer from {minimum} to {_MAX_DIMENSION:,}")
        return value

    def float(self, key: str, default: float) -> float:
        value = self._value(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
            raise self._wrong(key, value, "a small positive number")
        return float(value)

    def str(self, key: str, default: str) -> str:
        value = self._value(key, default)
        if not isinstance(value, str):
            raise self._wrong(key, value, "a string")
        return value

    def optional_str(self, key: str) -> str | None:
        value = self.cfg.get(key)
        if value is not None and not isinstance(value, str):
            raise self._wrong(key, value, "a string")
        return value

    def labels(self) -> dict[int, str]:
        return labels_of(self.cfg)


def labels_of(cfg: dict) -> dict[int, str]:
    """A config.json's id2label with int ids ({} where it has none); ModelError where it is no such map."""
    raw = cfg.get("id2label") or {}
    try:
        return {int(k): str(v) for k, v in raw.items()}
    except (AttributeError, TypeError, ValueError):
        raise ModelError("config.json's id2label is not a map from class ids to names") from None


_REQUIRED = object()


def read_config(model_dir: str | Path) -> tuple[EncoderConfig, dict]:
    """Parse `config.json` in a Hub-format directory; returns ours and the raw dict."""
    path = Path(model_dir) / CONFIG_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{path} is missing", hint="a model directory needs config.json") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path} is not valid JSON: {exc}") from None
    return EncoderConfig.from_hf(raw), raw
