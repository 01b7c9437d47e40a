"""The int8 artifact squeeze caches: what it holds, how an fp32 model becomes one, how one is loaded.

Scheme "squeeze-int8" v3 is kernel-independent: each quantized projection is its int8 weight plus one
fp32 scale per output channel; the word-embedding table is int8 with one scale per row; everything else
stays fp32. Which projections are int8, and whether their activations are too (per token: "token") or
not ("weight": int8 weights dequantized at load, fp32 activations), is written in the metadata, never
inferred: calibration (calibration.py) decides it per model on a built-in text sample. docs/performance.md's
"int8 fidelity" has the measurements behind the choices. The metadata's "auto" records, for this machine,
whether `--precision auto` runs the entry (auto.py: int8's speed and fidelity on the same sample).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from ..checkpoint import heads
from ..checkpoint.config import EncoderConfig
from ..errors import CacheError, ModelError
from ..model.encoder import Encoder
from ..model.projection import GroupedProjection
from ..model.weights import check_state, load_encoder
from ..precision import cpu
from ..precision.names import BF16, FP32, INT8
from ..precision.int8 import Int8Embedding, Int8Projection, dequantize_per_channel, int8_backend, quantize_per_channel
from . import auto, calibration
from .calibration import TOKEN, WEIGHT_ONLY
from .calibration_texts import CALIBRATION_TEXTS

SCHEME = "squeeze-int8"
SCHEME_VERSION = 3  # v2 quantized activations per kernel call: a token's result depended on its batch
# Mean cosine (fp32 vs int8) on the calibration sample, which tracks held-out text to about +-0.001
# (benchmarks/int8_fidelity.py). The target is what per-token activations are spent on: nearest-neighbour
# search needs it (a sentence's nearest neighbour is sometimes only 0.001 nearer than the next). Below
# the floor, projections go back to fp32: the promise to users is 0.99 on their text.
CALIBRATION_TARGET = 0.999
CALIBRATION_FLOOR = 0.995
MODES = (TOKEN, WEIGHT_ONLY)
PROJECTIONS = ("query", "key", "value", "attn_out", "ffn_in", "ffn_out")
WORD_EMBEDDING = "embed.word"


def projection_names(cfg: EncoderConfig) -> list[str]:
    return [f"blocks.{i}.{p}" for i in range(cfg.num_layers) for p in PROJECTIONS]


def quantize(runtime, texts: list[str] | None = None, kernel: str = "auto") -> tuple[dict[str, torch.Tensor], dict]:
    """The int8 artifact of an fp32 `Runtime`: (tensors by our state-dict names, JSON-able metadata).

    Calibrates on `texts` (default: calibration_texts.CALIBRATION_TEXTS) with this machine's kernel
    (`kernel` is SQUEEZE_INT8_KERNEL); with no kernel there is nothing to calibrate against, and every
    projection is stored int8 with int8 activations.
    """
    encoder: Encoder = runtime.encoder
    names = projection_names(encoder.cfg)
    backend = int8_backend(kernel)
    embedding = Int8Embedding.from_float(encoder.embed.word)
    if backend is None:
        activations = dict.fromkeys(names, TOKEN)
        keep_fp32: dict[str, str] = {}
        report: dict = {"skipped": "no int8 kernel on the machine that quantized: every projection is int8"}
    else:
        candidates = {
            name: {TOKEN: Int8Projection.from_float(encoder.get_submodule(name)),
                   WEIGHT_ONLY: _weight_only(encoder.get_submodule(name))}
            for name in names
        }
        batches = calibration.batches(runtime.tokenizer, texts or CALIBRATION_TEXTS, runtime.max_length)
        started = time.perf_counter()
        result = calibration.choose(encoder, candidates, {WORD_EMBEDDING: embedding}, batches, CALIBRATION_TARGET,
                                    CALIBRATION_FLOOR)
        activations = {name: mode for name, mode in result.plan.items() if mode != "fp32"}
        keep_fp32 = {
            name: f"calibration: int8 stayed below {CALIBRATION_FLOOR}; "
            f"this projection alone lowers it by {result.damage[name]:.1e}"
            for name, mode in result.plan.items() if mode == "fp32"
        }
        report = {
            "kernel": backend,
            "texts": sum(len(b["input_ids"]) for b in batches),
            "metric": result.metric,
            "target": CALIBRATION_TARGET,
            "floor": CALIBRATION_FLOOR,
            **{f"cosine_{key}": round(value, 5) for key, value in result.cosines.items()},
            "seconds": round(time.perf_counter() - started, 2),
        }

    tensors = {name: t.detach().contiguous() for name, t in encoder.state_dict().items()}
    tensors[f"{WORD_EMBEDDING}.weight"] = embedding.weight
    tensors[f"{WORD_EMBEDDING}.weight_scale"] = embedding.weight_scale
    for name in activations:
        q, scale = quantize_per_channel(tensors[f"{name}.weight"])
        tensors[f"{name}.weight"], tensors[f"{name}.weight_scale"] = q, scale
    meta = {
        "scheme": SCHEME,
        "version": SCHEME_VERSION,
        "arch": encoder.cfg.arch,
        "head": encoder.head_kind,
        "weights": "int8 symmetric per output channel, fp32 scales (<name>.weight_scale)",
        "activations": {
            TOKEN: "int8 symmetric per token (per group when grouped), quantized as they come",
            WEIGHT_ONLY: "not quantized: the int8 weights are dequantized once at load and run in fp32",
        },
        "embedding": {"name": WORD_EMBEDDING, "storage": "int8 per row", "lookup": "rows dequantized on lookup"},
        "int8": activations,  # projection -> "token" or "weight"
        "fp32": {
            **keep_fp32,
            "other": "position and token-type embeddings, LayerNorms, biases and the task head: small, "
            "and a negligible share of the compute",
        },
        "calibration": report,
    }
    if backend is not None:  # what --precision auto runs once this entry is cached (auto.py)
        meta["auto"] = race(runtime, tensors, meta, backend, batches)
    return tensors, meta


def race(runtime, tensors: dict[str, torch.Tensor], meta: dict, backend: str, batches: list[dict]) -> dict:
    """auto.py's record for an artifact: the int8 model as it will load here against fp32 (fidelity) and
    against what auto runs without int8 (speed), over the calibration batches."""
    encoder: Encoder = runtime.encoder
    head = encoder.head_kind
    other = cpu.auto_precision().precision
    models = {FP32: encoder, INT8: load_quantized(encoder.cfg, head, tensors, meta, backend)}
    if other == BF16:
        models[BF16] = load_encoder(runtime.model_dir, head, torch.bfloat16).use_fused_bf16_attention(
            cpu.fused_bf16_attention())

    def run(model: Encoder) -> Callable[[], list[torch.Tensor]]:
        def outputs() -> list[torch.Tensor]:
            with torch.inference_mode():
                return [_items(model(b["input_ids"], b["attention_mask"], b["token_type_ids"]).float(),
                               b["attention_mask"], head) for b in batches]
        return outputs

    return auto.measure({name: run(model) for name, model in models.items()}, head, other)


def _items(out: torch.Tensor, attention_mask: torch.Tensor, head: str) -> torch.Tensor:
    """A batch's output as rows of what the head gives per item: a text's logits ([B, labels]), its
    mean-pooled vector (base), or each real token's logits (token, qa)."""
    real = attention_mask.bool()  # [B, T]
    if head == heads.SEQUENCE:
        return out  # [B, labels]
    if head == heads.BASE:
        weights = real.unsqueeze(-1).float()  # [B, T, 1]
        return (out * weights).sum(1) / weights.sum(1)  # [B, H]
    return out[real]  # [real tokens, labels or 2]


def _weight_only(proj: GroupedProjection) -> GroupedProjection:
    """`proj` with its weights rounded to int8 per channel and back: what a weight-only projection runs."""
    rounded = GroupedProjection(proj.in_features, proj.out_features, proj.groups)
    rounded.load_state_dict({"weight": dequantize_per_channel(*quantize_per_channel(proj.plain_weight())), "bias": proj.bias})
    return rounded


def load_quantized(
    cfg: EncoderConfig, head: str, tensors: dict[str, torch.Tensor], meta: dict, backend: str | None
) -> Encoder:
    """The Encoder of an int8 artifact: Int8Projections run by `backend`, or, with backend None,
    GroupedProjections holding the dequantized weights. No quantization happens here."""
    _check_meta(meta, cfg, head)
    int8: dict[str, str] = meta["int8"]
    embedding = meta["embedding"]["name"]
    _check_dtypes(tensors, [*int8, embedding])
    tensors = dict(tensors)
    for name, mode in int8.items():
        if backend is None or mode == WEIGHT_ONLY:
            q, scale = tensors[f"{name}.weight"], tensors.pop(f"{name}.weight_scale")
            tensors[f"{name}.weight"] = dequantize_per_channel(q, scale)
    with torch.device("meta"):
        model = Encoder(cfg, head)
        model.embed.word = Int8Embedding(cfg.vocab_size, cfg.hidden_size)
        if backend is not None:
            for name, activations in int8.items():
                if activations == WEIGHT_ONLY:
                    continue
                proj: GroupedProjection = model.get_submodule(name)
                parent, attr = name.rsplit(".", 1)
                setattr(model.get_submodule(parent), attr, Int8Projection(proj.in_features, proj.out_features, proj.groups))
    try:
        check_state(model, tensors)
    except ModelError as exc:
        raise CacheError(f"int8 tensors do not fit the model: {exc.message}") from None
    model.load_state_dict(tensors, assign=True)
    for module in model.modules():
        if isinstance(module, Int8Projection):
            module.prepack()
    if backend is not None and cpu.auto_precision().precision == BF16:
        # Attention between int8 products as bf16 runs it where bf16 is native (precisions.kernels says so).
        model.use_attention_dtype(torch.bfloat16).use_fused_bf16_attention(cpu.fused_bf16_attention())
    return model.pack().eval()


def _check_meta(meta: dict, cfg: EncoderConfig, head: str) -> None:
    if meta.get("scheme") != SCHEME or meta.get("version") != SCHEME_VERSION:
        raise CacheError(
            f"int8 weights are in format {meta.get('scheme')!r} v{meta.get('version')}, "
            f"this squeeze reads {SCHEME!r} v{SCHEME_VERSION}",
            hint="re-quantize it: squeeze models pull --force MODEL",
        )
    if meta.get("arch") != cfg.arch or meta.get("head") != head:
        raise CacheError(
            f"int8 weights are for a {meta.get('arch')} {meta.get('head')} model, not {cfg.arch} {head}",
        )
    int8, embedding = meta.get("int8"), meta.get("embedding")
    if not isinstance(int8, dict) or not isinstance(embedding, dict) or embedding.get("name") != WORD_EMBEDDING:
        raise CacheError("int8 metadata lacks the list of quantized tensors")
    unknown = [name for name in int8 if name not in projection_names(cfg)]
    if unknown:
        raise CacheError(f"int8 metadata names projections the model does not have: {', '.join(unknown[:3])}")
    odd = [f"{name}: {mode!r}" for name, mode in int8.items() if mode not in MODES]
    if odd:
        raise CacheError(f"int8 metadata gives unknown activation granularities: {', '.join(odd[:3])}")


def _check_dtypes(tensors: dict[str, torch.Tensor], quantized: list[str]) -> None:
    for name in quantized:
        weight, scale = tensors.get(f"{name}.weight"), tensors.get(f"{name}.weight_scale")
        if weight is None or scale is None:
            raise CacheError(f"int8 tensors lack {name}.weight or {name}.weight_scale")
        if weight.dtype != torch.int8 or scale.dtype != torch.float32 or scale.shape != weight.shape[:-1]:
            raise CacheError(
                f"{name} should be int8 with fp32 scales of shape {tuple(weight.shape[:-1])}, "
                f"not {weight.dtype} with {scale.dtype} {tuple(scale.shape)}"
            )
    int8_weights = {f"{name}.weight" for name in quantized}
    wrong = [f"{key} ({t.dtype})" for key, t in tensors.items() if key not in int8_weights and t.dtype != torch.float32]
    if wrong:
        raise CacheError(f"int8 artifact tensors should otherwise be fp32: {', '.join(wrong[:3])}")
