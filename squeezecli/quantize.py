"""int8 models as plain tensors: what the cache stores, how it is made, and how it runs.

The format (after gpt-fast's quantize.py) is kernel-independent: each quantized projection is its int8
weight in the projection's own layout ([out, in], or [groups, out/g, in/g] for SqueezeBERT's grouped
ones) plus one fp32 scale per output channel; the word-embedding table is int8 with one scale per row;
everything else stays fp32. Which projections are int8 is written in the metadata, never inferred.

Scheme "squeeze-int8" v1, chosen by measurement on all-MiniLM-L6-v2's real weights (mean cosine of
fp32 vs int8 sentence embeddings; random weights have no outliers and hide all of this):

* Weights: symmetric, per output channel. Weight-only rounding alone costs 0.9996.
* Activations: quantized per batch by the kernel (fbgemm's dynamic linear: asymmetric uint8 over the
  whole input of one call; per group for grouped projections), fused into the matrix product, so no
  extra pass over the activations. With all 8 bits (fbgemm's default reduce_range=True keeps 7) the
  whole model reaches 0.993; per-token scales would reach 0.997-0.999 but cost separate quantize and
  rescale passes that made torch._int_mm slower than fp32 here.
* Calibration (calibration.py): on a built-in text sample, the projections whose int8 error hurts
  the output most are kept fp32 until the sample's cosine clears CALIBRATION_TARGET.

Kernels (`int8_backend`): fbgemm through torch.ops.quantized, found by probing, not assumed; torch is
deprecating quantized tensors, and without a kernel the int8 tensors are dequantized once at load.
"""

from __future__ import annotations

import functools
import os
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from .config import EncoderConfig
from .encoder import Encoder, GroupedProjection
from .errors import CacheError, SqueezeError

SCHEME = "squeeze-int8"
SCHEME_VERSION = 1
KERNEL_ENV = "SQUEEZE_INT8_KERNEL"
# Mean cosine (fp32 vs int8) the calibration sample must reach; the promise to users is 0.99 on their
# text, and the sample tracks held-out text to about +-0.001 (benchmarks/int8_fidelity.py).
CALIBRATION_TARGET = 0.995
PROJECTIONS = ("query", "key", "value", "attn_out", "ffn_in", "ffn_out")
WORD_EMBEDDING = "embed.word"

# Backend name -> fbgemm's reduce_range. Without VNNI, fbgemm multiplies with vpmaddubsw, whose int16
# pair sums saturate on 8-bit activations; 7-bit activations ("reduce range") cannot saturate.
BACKENDS = {"fbgemm": False, "fbgemm-reduce-range": True}


# ---------------------------------------------------------------------------------------------------
# Per-channel quantization of plain tensors


def quantize_per_channel(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 over the last dimension: returns (int8 like `weight`, fp32 scales of shape weight.shape[:-1])."""
    amax = weight.detach().abs().amax(dim=-1).float()  # [...]
    scale = torch.where(amax > 0, amax / 127, torch.ones_like(amax))  # an all-zero row stays zero at any scale
    q = torch.round(weight.detach().float() / scale.unsqueeze(-1)).clamp_(-127, 127).to(torch.int8)
    return q, scale


def dequantize_per_channel(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return q.float() * scale.unsqueeze(-1)


# ---------------------------------------------------------------------------------------------------
# Kernels


@contextmanager
def _fbgemm() -> Iterator[None]:
    """Prepack for fbgemm whatever the default engine is, and keep torch's deprecation warnings for
    quantized tensors out of the user's terminal: we know, and fall back when they are gone."""
    previous = torch.backends.quantized.engine
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.backends.quantized.engine = "fbgemm"
        try:
            yield
        finally:
            torch.backends.quantized.engine = previous


def _prepack(q: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None) -> torch.ScriptObject:
    """fbgemm's packed form of one dense int8 weight [out, in] with per-row scales [out]."""
    with _fbgemm():
        zero_points = torch.zeros(q.shape[0], dtype=torch.long)
        qweight = torch._make_per_channel_quantized_tensor(q.contiguous(), scale.double(), zero_points, 0)
        return torch.ops.quantized.linear_prepack(qweight, None if bias is None else bias.contiguous())


def _probe(reduce_range: bool) -> bool:
    """Does fbgemm run here, and multiply full-range uint8 x int8 without saturating?

    Every activation is quantized to 255 (the input's range is [0, 1]) and every weight to 127, the
    case where a pairwise int16 sum would saturate; the exact product is 64.
    """
    try:
        packed = _prepack(torch.full((1, 64), 127, dtype=torch.int8), torch.tensor([1 / 127]), None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            y = torch.ops.quantized.linear_dynamic(torch.ones(2, 64), packed, reduce_range)
    except (AttributeError, RuntimeError, NotImplementedError):
        return False
    return bool(torch.allclose(y, torch.full_like(y, 64.0), rtol=1e-3))


@functools.cache
def _usable(backend: str) -> bool:
    return "fbgemm" in torch.backends.quantized.supported_engines and _probe(BACKENDS[backend])


def int8_backend() -> str | None:
    """The int8 matmul kernel this torch offers on this CPU, or None to run int8 models dequantized.

    SQUEEZE_INT8_KERNEL=none forces None; =fbgemm or =fbgemm-reduce-range picks one (if it works).
    """
    choice = os.environ.get(KERNEL_ENV, "auto").strip().lower() or "auto"
    if choice == "none":
        return None
    if choice != "auto" and choice not in BACKENDS:
        raise SqueezeError(f"{KERNEL_ENV}={choice} is not a kernel squeeze knows",
                           hint=f"use one of: auto, none, {', '.join(BACKENDS)}")
    for backend in BACKENDS if choice == "auto" else (choice,):
        if _usable(backend):
            return backend
    return None


# ---------------------------------------------------------------------------------------------------
# Modules


class Int8Projection(nn.Module):
    """GroupedProjection with int8 weights, run by fbgemm's dynamic int8 linear.

    State (the artifact's tensors): weight int8 in GroupedProjection's layout, weight_scale fp32 per
    output channel (weight.shape[:-1]), bias fp32 [out]. `prepack` builds the kernel's form of it,
    once, after the state is loaded.
    """

    def __init__(self, in_features: int, out_features: int, groups: int = 1, backend: str = "fbgemm"):
        super().__init__()
        assert in_features % groups == 0 and out_features % groups == 0, (in_features, out_features, groups)
        self.in_features, self.out_features, self.groups = in_features, out_features, groups
        self.reduce_range = BACKENDS[backend]
        shape = (out_features, in_features) if groups == 1 else (groups, out_features // groups, in_features // groups)
        self.register_buffer("weight", torch.empty(shape, dtype=torch.int8))
        self.register_buffer("weight_scale", torch.empty(shape[:-1]))
        self.register_buffer("bias", torch.zeros(out_features))
        self.packed: list[torch.ScriptObject] = []

    @classmethod
    def from_float(cls, proj: GroupedProjection, backend: str) -> "Int8Projection":
        q, scale = quantize_per_channel(proj.weight)
        module = cls(proj.in_features, proj.out_features, proj.groups, backend)
        module.load_state_dict({"weight": q, "weight_scale": scale, "bias": proj.bias.detach().clone()})
        return module.prepack()

    def prepack(self) -> "Int8Projection":
        g = self.groups
        weights = self.weight.view(g, self.out_features // g, self.in_features // g)  # [G, out/G, in/G]
        scales = self.weight_scale.view(g, -1)  # [G, out/G]
        biases = self.bias.view(g, -1)  # [G, out/G]
        self.packed = [_prepack(weights[i], scales[i], biases[i]) for i in range(g)]
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.groups == 1:
            return torch.ops.quantized.linear_dynamic(x, self.packed[0], self.reduce_range)
        *lead, c = x.shape
        xg = x.reshape(-1, self.groups, c // self.groups)  # [N, G, in/G]
        # One call per group: each group's activations get their own range, and the kernel is 4x
        # faster on a group than on the block-diagonal dense weight (measured, 4096 tokens).
        ys = [torch.ops.quantized.linear_dynamic(xg[:, i], p, self.reduce_range) for i, p in enumerate(self.packed)]
        return torch.cat(ys, dim=-1).view(*lead, self.out_features)  # [..., out]

    def dequantized(self) -> GroupedProjection:
        proj = GroupedProjection(self.in_features, self.out_features, self.groups)
        proj.load_state_dict({"weight": dequantize_per_channel(self.weight, self.weight_scale), "bias": self.bias})
        return proj

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, groups={self.groups}, int8"


class Int8Embedding(nn.Module):
    """An embedding table stored int8 with one fp32 scale per row, dequantized row by row on lookup.

    Dequantizing only the rows a batch looks up costs a few microseconds per batch and keeps the
    table at a quarter of its fp32 memory (SqueezeBERT: 23 MB rather than 94 MB).
    """

    def __init__(self, num_embeddings: int, embedding_dim: int):
        super().__init__()
        self.register_buffer("weight", torch.empty(num_embeddings, embedding_dim, dtype=torch.int8))
        self.register_buffer("weight_scale", torch.empty(num_embeddings))

    @classmethod
    def from_float(cls, table: nn.Embedding) -> "Int8Embedding":
        q, scale = quantize_per_channel(table.weight)
        module = cls(*q.shape)
        module.load_state_dict({"weight": q, "weight_scale": scale})
        return module

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        rows = F.embedding(ids, self.weight)  # [..., H] int8
        return rows.float() * F.embedding(ids, self.weight_scale.unsqueeze(-1))  # [..., H] * [..., 1]


# ---------------------------------------------------------------------------------------------------
# Making and loading the artifact


def projection_names(cfg: EncoderConfig) -> list[str]:
    return [f"blocks.{i}.{p}" for i in range(cfg.num_layers) for p in PROJECTIONS]


def quantize(runtime, texts: list[str] | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """The int8 artifact of an fp32 `Runtime`: (tensors by our state-dict names, JSON-able metadata).

    Calibrates on `texts` (default: calibration.CALIBRATION_TEXTS) with this machine's kernel; with no
    kernel there is nothing to calibrate against and every projection is stored int8.
    """
    from . import calibration

    encoder: Encoder = runtime.encoder
    names = projection_names(encoder.cfg)
    backend = int8_backend()
    embedding = Int8Embedding.from_float(encoder.embed.word)
    if backend is None:
        keep_fp32: dict[str, str] = {}
        report = {"skipped": "no int8 kernel on the machine that quantized: every projection is int8"}
    else:
        candidates = {name: Int8Projection.from_float(encoder.get_submodule(name), backend) for name in names}
        batches = calibration.batches(runtime.tokenizer, texts or calibration.CALIBRATION_TEXTS, runtime.max_length)
        started = time.perf_counter()
        result = calibration.choose_fp32(encoder, candidates, {WORD_EMBEDDING: embedding}, batches, CALIBRATION_TARGET)
        keep_fp32 = {
            name: f"calibration: int8 alone lowers the sample's cosine by {result.damage[name]:.1e}"
            for name in result.keep_fp32
        }
        report = {
            "kernel": backend,
            "texts": sum(len(b["input_ids"]) for b in batches),
            "metric": result.metric,
            "target": CALIBRATION_TARGET,
            "cosine_all_int8": round(result.cosine_all_int8, 5),
            "cosine": round(result.cosine, 5),
            "seconds": round(time.perf_counter() - started, 2),
        }

    tensors = {name: t.detach().contiguous() for name, t in encoder.state_dict().items()}
    tensors[f"{WORD_EMBEDDING}.weight"] = embedding.weight
    tensors[f"{WORD_EMBEDDING}.weight_scale"] = embedding.weight_scale
    int8 = [name for name in names if name not in keep_fp32]
    for name in int8:
        q, scale = quantize_per_channel(tensors[f"{name}.weight"])
        tensors[f"{name}.weight"], tensors[f"{name}.weight_scale"] = q, scale
    meta = {
        "scheme": SCHEME,
        "version": SCHEME_VERSION,
        "arch": encoder.cfg.arch,
        "head": encoder.head_kind,
        "weights": "int8 symmetric per output channel, fp32 scales (<name>.weight_scale)",
        "activations": "quantized per call by the kernel (dynamic, per tensor; per group when grouped)",
        "embedding": {"name": WORD_EMBEDDING, "storage": "int8 per row", "lookup": "rows dequantized on lookup"},
        "int8": int8,
        "fp32": {
            **keep_fp32,
            "other": "position and token-type embeddings, LayerNorms, biases and the task head: small, "
            "and a negligible share of the compute",
        },
        "calibration": report,
    }
    return tensors, meta


def load_quantized(cfg: EncoderConfig, head: str, tensors: dict[str, torch.Tensor], meta: dict, backend: str | None) -> Encoder:
    """The Encoder of an int8 artifact: Int8Projections run by `backend`, or, with backend None,
    GroupedProjections holding the dequantized weights. No quantization happens here."""
    _check_meta(meta, cfg, head)
    int8 = list(meta["int8"])
    embedding = meta["embedding"]["name"]
    _check_dtypes(tensors, [*int8, embedding])
    tensors = dict(tensors)
    if backend is None:
        for name in int8:
            q, scale = tensors[f"{name}.weight"], tensors.pop(f"{name}.weight_scale")
            tensors[f"{name}.weight"] = dequantize_per_channel(q, scale)
    with torch.device("meta"):
        model = Encoder(cfg, head)
        model.embed.word = Int8Embedding(cfg.vocab_size, cfg.hidden_size)
        if backend is not None:
            for name in int8:
                proj: GroupedProjection = model.get_submodule(name)
                parent, attr = name.rsplit(".", 1)
                setattr(model.get_submodule(parent), attr,
                        Int8Projection(proj.in_features, proj.out_features, proj.groups, backend))
    from .weights import check_state
    from .errors import ModelError

    try:
        check_state(model, tensors)
    except ModelError as exc:
        raise CacheError(f"int8 tensors do not fit the model: {exc.message}") from None
    model.load_state_dict(tensors, assign=True)
    for module in model.modules():
        if isinstance(module, Int8Projection):
            module.prepack()
    return model.eval()


def _check_meta(meta: dict, cfg: EncoderConfig, head: str) -> None:
    if meta.get("scheme") != SCHEME or meta.get("version") != SCHEME_VERSION:
        raise CacheError(
            f"int8 weights are in format {meta.get('scheme')!r} v{meta.get('version')}, "
            f"this squeeze reads {SCHEME!r} v{SCHEME_VERSION}",
            hint="pull the model again to re-quantize it",
        )
    if meta.get("arch") != cfg.arch or meta.get("head") != head:
        raise CacheError(
            f"int8 weights are for a {meta.get('arch')} {meta.get('head')} model, not {cfg.arch} {head}",
        )
    if not isinstance(meta.get("int8"), list) or not isinstance(meta.get("embedding"), dict):
        raise CacheError("int8 metadata lacks the list of quantized tensors")


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
