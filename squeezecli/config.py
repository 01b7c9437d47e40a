"""EncoderConfig: the few numbers that describe every encoder squeeze runs.

Each architecture's `config.json` spells these differently (DistilBERT says `dim` and `n_layers`,
SqueezeBERT adds six `*_groups`); `EncoderConfig.from_hf` reads them all into one shape so that the
model code never looks at `model_type` again, except where the checkpoint really differs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ModelError

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

    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    @property
    def max_length(self) -> int:
        """Longest input in tokens the position table allows."""
        return self.max_positions - self.position_offset

    @classmethod
    def from_hf(cls, cfg: dict) -> "EncoderConfig":
        model_type = cfg.get("model_type", "")
        arch = ALIASES.get(model_type, model_type)
        if arch not in ARCHITECTURES:
            raise ModelError(
                f"unsupported model_type {model_type!r}",
                hint="squeeze runs bert, squeezebert, distilbert, roberta and xlm-roberta checkpoints",
            )
        id2label = {int(k): str(v) for k, v in (cfg.get("id2label") or {}).items()}
        try:
            if arch == "distilbert":
                return cls(
                    arch=arch,
                    vocab_size=cfg["vocab_size"],
                    hidden_size=cfg["dim"],
                    num_layers=cfg["n_layers"],
                    num_heads=cfg["n_heads"],
                    intermediate_size=cfg["hidden_dim"],
                    max_positions=cfg["max_position_embeddings"],
                    type_vocab_size=0,
                    layer_norm_eps=1e-12,  # hard-coded in transformers' DistilBERT
                    activation=cfg.get("activation", "gelu"),
                    pad_token_id=cfg.get("pad_token_id", 0),
                    id2label=id2label,
                )
            groups = Groups()
            if arch == "squeezebert":
                if cfg.get("embedding_size", cfg["hidden_size"]) != cfg["hidden_size"]:
                    raise ModelError("squeezebert checkpoints with embedding_size != hidden_size are not supported")
                groups = Groups(
                    query=cfg.get("q_groups", 4),
                    key=cfg.get("k_groups", 4),
                    value=cfg.get("v_groups", 4),
                    attn_out=cfg.get("post_attention_groups", 1),
                    ffn_in=cfg.get("intermediate_groups", 4),
                    ffn_out=cfg.get("output_groups", 4),
                )
            pad = cfg.get("pad_token_id", 1 if arch == "roberta" else 0)
            return cls(
                arch=arch,
                vocab_size=cfg["vocab_size"],
                hidden_size=cfg["hidden_size"],
                num_layers=cfg["num_hidden_layers"],
                num_heads=cfg["num_attention_heads"],
                intermediate_size=cfg["intermediate_size"],
                max_positions=cfg["max_position_embeddings"],
                type_vocab_size=cfg.get("type_vocab_size", 2),
                layer_norm_eps=cfg.get("layer_norm_eps", 1e-12),
                activation=cfg.get("hidden_act", "gelu"),
                pad_token_id=pad,
                position_offset=pad + 1 if arch == "roberta" else 0,
                groups=groups,
                id2label=id2label,
            )
        except KeyError as missing:
            raise ModelError(f"config.json for a {model_type} model lacks {missing}") from None


def read_config(model_dir: str | Path) -> tuple[EncoderConfig, dict]:
    """Parse `config.json` in a Hub-format directory; returns ours and the raw dict."""
    path = Path(model_dir) / "config.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"{path} is missing", hint="a model directory needs config.json") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path} is not valid JSON: {exc}") from None
    return EncoderConfig.from_hf(raw), raw
