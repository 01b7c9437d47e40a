"""Checkpoint files -> our tensors, and the head a checkpoint has.

Weights load only through safetensors or `torch.load(weights_only=True)`: a pickle that would run
code is refused. Each architecture's checkpoint names are mapped onto `encoder.py`'s by one table;
every tensor the model needs must be found with the right shape, and every tensor the checkpoint
has must be either used or knowingly ignored (pooler, LM heads), or loading fails and names them.
"""

from __future__ import annotations

import json
import pickle
import re
from collections.abc import Callable
from pathlib import Path

import torch

from ..checkpoint import heads, layout, tensorfile
from ..checkpoint.config import EncoderConfig
from ..checkpoint.layout import weight_files
from ..errors import ModelError
from .encoder import Encoder

# Where each architecture's base model sits inside a task checkpoint ("bert.encoder.layer.0...").
BASE_PREFIX = {"bert": "bert.", "squeezebert": "transformer.", "distilbert": "distilbert.", "roberta": "roberta."}

_BERT_BLOCK = {
    "encoder.layer.{i}.attention.self.query": "blocks.{i}.query",
    "encoder.layer.{i}.attention.self.key": "blocks.{i}.key",
    "encoder.layer.{i}.attention.self.value": "blocks.{i}.value",
    "encoder.layer.{i}.attention.output.dense": "blocks.{i}.attn_out",
    "encoder.layer.{i}.attention.output.LayerNorm": "blocks.{i}.attn_norm",
    "encoder.layer.{i}.intermediate.dense": "blocks.{i}.ffn_in",
    "encoder.layer.{i}.output.dense": "blocks.{i}.ffn_out",
    "encoder.layer.{i}.output.LayerNorm": "blocks.{i}.ffn_norm",
}
_EMBEDDINGS = {
    "embeddings.word_embeddings": "embed.word",
    "embeddings.position_embeddings": "embed.position",
    "embeddings.token_type_embeddings": "embed.token_type",
    "embeddings.LayerNorm": "embed.norm",
}

# Base-model names (after the prefix is stripped) -> ours. Each entry covers .weight and .bias.
NAME_TABLE: dict[str, dict[str, str]] = {
    "bert": {**_EMBEDDINGS, **_BERT_BLOCK, "pooler.dense": "pooler"},
    "roberta": {**_EMBEDDINGS, **_BERT_BLOCK, "pooler.dense": "pooler"},
    "squeezebert": {
        **_EMBEDDINGS,
        "encoder.layers.{i}.attention.query": "blocks.{i}.query",
        "encoder.layers.{i}.attention.key": "blocks.{i}.key",
        "encoder.layers.{i}.attention.value": "blocks.{i}.value",
        "encoder.layers.{i}.post_attention.conv1d": "blocks.{i}.attn_out",
        "encoder.layers.{i}.post_attention.layernorm": "blocks.{i}.attn_norm",
        "encoder.layers.{i}.intermediate.conv1d": "blocks.{i}.ffn_in",
        "encoder.layers.{i}.output.conv1d": "blocks.{i}.ffn_out",
        "encoder.layers.{i}.output.layernorm": "blocks.{i}.ffn_norm",
        "pooler.dense": "pooler",
    },
    "distilbert": {
        "embeddings.word_embeddings": "embed.word",
        "embeddings.position_embeddings": "embed.position",
        "embeddings.LayerNorm": "embed.norm",
        "transformer.layer.{i}.attention.q_lin": "blocks.{i}.query",
        "transformer.layer.{i}.attention.k_lin": "blocks.{i}.key",
        "transformer.layer.{i}.attention.v_lin": "blocks.{i}.value",
        "transformer.layer.{i}.attention.out_lin": "blocks.{i}.attn_out",
        "transformer.layer.{i}.sa_layer_norm": "blocks.{i}.attn_norm",
        "transformer.layer.{i}.ffn.lin1": "blocks.{i}.ffn_in",
        "transformer.layer.{i}.ffn.lin2": "blocks.{i}.ffn_out",
        "transformer.layer.{i}.output_layer_norm": "blocks.{i}.ffn_norm",
    },
}

# Task-head names (outside the base prefix) -> ours, by head kind and architecture.
HEAD_TABLE: dict[str, dict[str, dict[str, str]]] = {
    heads.SEQUENCE: {
        "bert": {"pooler": "head.pre", "classifier": "head.out"},
        "squeezebert": {"pooler": "head.pre", "classifier": "head.out"},
        "distilbert": {"pre_classifier": "head.pre", "classifier": "head.out"},
        "roberta": {"classifier.dense": "head.pre", "classifier.out_proj": "head.out"},
    },
    heads.TOKEN: {arch: {"classifier": "head"} for arch in BASE_PREFIX},
    heads.QA: {arch: {"qa_outputs": "head"} for arch in BASE_PREFIX},
    heads.BASE: {arch: {} for arch in BASE_PREFIX},
}

# Tensors a checkpoint may carry that no head of ours uses: buffers, LM heads, unused poolers.
IGNORED = re.compile(
    r"(^|\.)position_ids$|^(cls|lm_head|vocab_transform|vocab_layer_norm|vocab_projector|pooler)\."
)


def _compile(table: dict[str, str]) -> list[tuple[re.Pattern, str]]:
    out = []
    for theirs, ours in table.items():
        pattern = re.escape(theirs).replace(r"\{i\}", r"(?P<i>\d+)") + r"\.(?P<p>weight|bias|gamma|beta)$"
        out.append((re.compile(pattern), ours))
    return out


def _our_name(name: str, rules: list[tuple[re.Pattern, str]]) -> str | None:
    for pattern, ours in rules:
        m = pattern.fullmatch(name)
        if m:
            # Old TF-era checkpoints call LayerNorm parameters gamma/beta.
            p = {"gamma": "weight", "beta": "bias"}.get(m["p"], m["p"])
            return ours.format(i=m.groupdict().get("i")) + "." + p
    return None


class Namer:
    """A checkpoint tensor's name -> ours for an architecture and head (None: not ours to load)."""

    def __init__(self, cfg: EncoderConfig, head: str) -> None:
        self.base_table, self.head_table = NAME_TABLE[cfg.arch], HEAD_TABLE[head][cfg.arch]
        self.base_rules = _compile(self.base_table)
        self.head_rules = _compile(self.head_table)
        self.prefix = BASE_PREFIX[cfg.arch]

    def __call__(self, name: str) -> str | None:
        inner = name[len(self.prefix):] if name.startswith(self.prefix) else name
        target = _our_name(inner, self.base_rules) or _our_name(name, self.head_rules)
        if target and target.startswith("pooler."):
            # The BERT pooler is part of the base model in the checkpoint but of the head for us.
            target = _our_name(target, self.head_rules)
        return target

    def theirs(self, ours: str, prefixed: bool) -> str:
        """Our tensor name -> the name this checkpoint would give it (with the base-model prefix if
        `prefixed`: a task checkpoint's), for messages about tensors a checkpoint lacks."""
        stem, _, parameter = ours.rpartition(".")
        for table, prefix in ((self.head_table, ""), (self.base_table, self.prefix if prefixed else "")):
            for their_name, our_name in table.items():
                match = re.fullmatch(re.escape(our_name).replace(r"\{i\}", r"(?P<i>\d+)"), stem)
                if match:
                    name = their_name.format(i=match.groupdict().get("i"))
                    if table is self.head_table and name == "pooler":  # the BERT pooler: inside the base model
                        return self.theirs(f"pooler.{parameter}", prefixed)
                    return f"{prefix}{name}.{parameter}"
        return ours

    def ignored(self, name: str) -> bool:
        inner = name[len(self.prefix):] if name.startswith(self.prefix) else name
        return bool(IGNORED.search(inner) or IGNORED.search(name))


def map_names(cfg: EncoderConfig, head: str, checkpoint: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a checkpoint's tensors to ours. Unknown tensors are an error; pooler goes where the head wants it."""
    namer = Namer(cfg, head)
    ours, unexpected = {}, []
    for name, tensor in checkpoint.items():
        target = namer(name)
        if target is None:
            if not namer.ignored(name):
                unexpected.append(name)
            continue
        ours[target] = tensor
    if unexpected:
        raise ModelError(f"checkpoint has tensors squeeze does not know: {_names(unexpected)}")
    return ours


def _names(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(sorted(names)[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


# The tensors that run in the products' dtype (bf16 where that is the precision): the projections and the
# word-embedding table (looked up as fp32). The rest (LayerNorms, small embeddings, heads) stays fp32.
_PRODUCT_TENSORS = re.compile(r"blocks\.\d+\.(query|key|value|attn_out|ffn_in|ffn_out)\.(weight|bias)|embed\.word\.weight")


def to_model_layout(model: Encoder, tensors: dict[str, torch.Tensor], dtype: torch.dtype = torch.float32
                    ) -> dict[str, torch.Tensor]:
    """Reshape checkpoint layouts to ours (Conv1d [out, in/g, 1] -> [g, out/g, in/g]), as fp32, and the
    projections and word embeddings as `dtype`."""
    expected = model.state_dict()
    out = {}
    for name, t in tensors.items():
        if t.is_floating_point():  # fp16/bf16 checkpoints load as fp32
            t = t.to(dtype if _PRODUCT_TENSORS.fullmatch(name) else torch.float32)
        want = expected.get(name)
        if want is not None and t.shape != want.shape and t.numel() == want.numel() and t.dim() == 3:
            t = t.reshape(want.shape)
        out[name] = t
    return out


def check_state(model: Encoder, tensors: dict[str, torch.Tensor], theirs: Callable[[str], str] = str) -> None:
    """Every tensor the model needs is there with the right shape (nanoGPT-style strict loading); tensors
    are named by `theirs(our name)`, the checkpoint's own names where it has them."""
    expected = model.state_dict()
    missing = [theirs(k) for k in expected if k not in tensors]
    if missing:
        raise ModelError(f"checkpoint lacks tensors for a {model.cfg.arch} {model.head_kind} model: {_names(missing)}")
    extra = [theirs(k) for k in tensors if k not in expected]
    if extra:
        raise ModelError(f"checkpoint has tensors squeeze does not know: {_names(extra)}")
    wrong = [f"{theirs(k)} {tuple(tensors[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
             if tensors[k].shape != v.shape]
    if wrong:
        raise ModelError(f"checkpoint tensors have the wrong shape: {_names(wrong)}")


def check_size(cfg: EncoderConfig, files: list[Path], bytes_per_parameter: int) -> None:
    """Refuse a config.json that describes more parameters than its weight files can hold, before a
    model of that size is built: at least `bytes_per_parameter` bytes each (2 for fp16 checkpoints)."""
    try:
        stored = sum(path.stat().st_size for path in files)
    except OSError as exc:
        raise ModelError(f"cannot read the weights: {exc.strerror or exc}") from None
    if cfg.parameters * bytes_per_parameter > stored:
        raise ModelError(
            f"config.json describes {cfg.parameters:,} parameters, which take at least "
            f"{cfg.parameters * bytes_per_parameter:,} bytes ({bytes_per_parameter} a parameter in fp16 or bf16, 4 in "
            f"fp32), but the weight files hold only {stored:,} bytes",
            hint="config.json does not belong to these weights, or the weights are incomplete",
        )


def check_finite(name: str, tensor: torch.Tensor) -> None:
    """Refuse weights holding NaN or infinity: every output would be NaN, and int8 cannot scale them.

    Any NaN or infinity makes the sum NaN or infinite, and a sum is 10-20x faster than
    `isfinite` over the tensor (docs/performance.md, start-up); only a sum that is not (overflow, or
    what is refused) is checked element by element."""
    if not tensor.is_floating_point() or bool(torch.isfinite(tensor.sum(dtype=torch.float32))):
        return
    if not bool(torch.isfinite(tensor).all()):
        raise ModelError(f"the checkpoint's tensor {name} holds NaN or infinite values",
                         hint="the weights are damaged; download or export them again")


Convert = Callable[[str, torch.Tensor], torch.Tensor]


def read_checkpoint(model_dir: str | Path, convert: Convert | None = None) -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint by its name, each passed through `convert(name, tensor)` as it is read
    (a cast to bf16, say), so that a checkpoint is never held twice."""

    def kept(name: str, tensor: torch.Tensor) -> torch.Tensor:
        return convert(name, tensor) if convert is not None else tensor

    tensors: dict[str, torch.Tensor] = {}
    for path in weight_files(Path(model_dir)):
        if not path.is_file():
            raise ModelError(f"weight shard {path.name} is missing from {model_dir}")
        try:
            if path.suffix == ".safetensors":
                tensors.update(tensorfile.tensors(path, kept))
            else:
                loaded = torch.load(path, map_location="cpu", weights_only=True)
                tensors.update((name, kept(name, tensor)) for name, tensor in loaded.items())
        except pickle.UnpicklingError as exc:
            raise ModelError(
                f"refusing to load {path.name}: it is not a plain tensor file ({str(exc).splitlines()[0]})",
                hint="squeeze loads pickles only with weights_only=True; prefer model.safetensors",
            ) from None
        except (tensorfile.HeaderError, RuntimeError, EOFError, OSError) as exc:
            raise ModelError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None
    return tensors


def load_encoder(model_dir: str | Path, head: str = heads.BASE, dtype: torch.dtype = torch.float32,
                 pass_tokens: int | None = None) -> Encoder:
    """Build an Encoder from a Hub-format directory (config.json + weights), its products in `dtype`
    (fp32 or bf16: see to_model_layout), its weights packed for passes of `pass_tokens` tokens (default:
    kernels.TOKENS_PER_PASS)."""
    from ..checkpoint.config import read_config

    cfg, _ = read_config(model_dir)
    if head in heads.LABELLED and cfg.num_labels == 0:
        raise ModelError(f"{model_dir} has no id2label in config.json, so no {head}-classification head")
    namer = Namer(cfg, head)

    def convert(name: str, tensor: torch.Tensor) -> torch.Tensor:
        check_finite(name, tensor)
        if not tensor.is_floating_point():
            return tensor
        return tensor.to(dtype if _PRODUCT_TENSORS.fullmatch(namer(name) or "") else torch.float32)

    checkpoint = read_checkpoint(model_dir, convert)  # as large as its files, whatever config.json says
    check_size(cfg, weight_files(Path(model_dir)), bytes_per_parameter=2)
    with torch.device("meta"):
        model = Encoder(cfg, head)
    prefixed = any(name.startswith(namer.prefix) for name in checkpoint)
    tensors = to_model_layout(model, map_names(cfg, head, checkpoint), dtype)
    del checkpoint
    check_state(model, tensors, lambda ours: namer.theirs(ours, prefixed))
    model.load_state_dict(tensors, assign=True)
    del tensors  # the model holds the only reference: each packed weight replaces its plain one
    return (model.pack(pass_tokens) if pass_tokens else model.pack()).eval()


# config.json `architectures` suffix -> the head the checkpoint has.
ARCHITECTURE_HEADS = (
    ("ForSequenceClassification", heads.SEQUENCE),
    ("ForTokenClassification", heads.TOKEN),
    ("ForQuestionAnswering", heads.QA),
    ("ForMaskedLM", heads.BASE),
    ("ForPreTraining", heads.BASE),
    ("Model", heads.BASE),
)


def tensor_names(model_dir: Path) -> list[str]:
    """Tensor names of a checkpoint, from safetensors headers or a shard index where possible."""
    for single, index in layout.WEIGHT_FORMATS:
        if (model_dir / index).is_file() and not (model_dir / single).is_file():
            try:
                return list(json.loads((model_dir / index).read_text(encoding="utf-8"))["weight_map"])
            except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
                raise ModelError(f"the weight index {index} in {model_dir} is not valid") from None
        path = model_dir / single
        if not path.is_file():
            continue
        if single.endswith(".safetensors"):
            try:
                return list(tensorfile.read_header(path))
            except (OSError, tensorfile.HeaderError) as exc:
                raise ModelError(f"{path} is not a readable safetensors file: {exc}") from None
        return list(read_checkpoint(model_dir))  # a pickle's names are known only once it is read
    return []


def architecture_head(raw_config: dict) -> str | None:
    """The head config.json's `architectures` names, or None (the tensors' names tell: checkpoint_head)."""
    for architecture in raw_config.get("architectures") or []:
        for suffix, head in ARCHITECTURE_HEADS:
            if isinstance(architecture, str) and architecture.endswith(suffix):
                return head
    return None


def checkpoint_head(model_dir: Path, raw_config: dict, hint: str | None = None) -> str:
    """Which head a checkpoint has: from config.json's `architectures`, else from the names of its
    tensors. A bare `classifier` is a sequence or a token head; `hint` decides, else sequence."""
    named = architecture_head(raw_config)
    if named is not None:
        return named
    roots = {name.split(".")[0] for name in tensor_names(model_dir)}
    if "qa_outputs" in roots:
        return heads.QA
    if "pre_classifier" in roots:
        return heads.SEQUENCE
    if "classifier" in roots:
        return hint if hint in heads.LABELLED else heads.SEQUENCE
    return heads.BASE
