"""int8 models as plain tensors: what the cache stores, how it is made, and how it runs.

The format (after gpt-fast's quantize.py) is kernel-independent: each quantized projection is its int8
weight in the projection's own layout ([out, in], or [groups, out/g, in/g] for SqueezeBERT's grouped
ones) plus one fp32 scale per output channel; the word-embedding table is int8 with one scale per row;
everything else stays fp32. Which projections are int8, and how each quantizes its activations, is
written in the metadata, never inferred.

Scheme "squeeze-int8" v2, chosen by measurement on all-MiniLM-L6-v2's real weights (fp32 vs int8
sentence embeddings over benchmarks/fidelity_sentences.py; random weights have no outliers and hide all
of this):

* Weights: symmetric, per output channel. Weight rounding alone costs 0.9996 mean cosine.
* Activations: quantized per call by the kernel (fbgemm's dynamic linear: one asymmetric uint8 range
  over the whole input of the call; per group for grouped projections), fused into the matrix product.
  Real encoders give a few tokens ([CLS], full stops) activations 4-10x larger than most, so one
  range per call leaves ordinary tokens a few levels: 0.992 for the whole model. A projection may
  therefore run "per token": each token's activations are first mapped affinely onto [0, 1], so the
  kernel's one range fits every token, and the output is mapped back (0.9988; on MiniLM about a third
  more CPU time than per call, and half of fp32's).
* Calibration (calibration.py): on a built-in text sample, per token goes where it corrects most, on
  as few projections as reach CALIBRATION_TARGET (or come close to int8's best, when that falls short
  and per token is what helps). When neither granularity reaches the target but int8 weights with
  fp32 activations do, every projection is stored int8 and run "weight"-only (dequantized at load):
  all-MiniLM-L6-v2 lands here, because per token (0.9988) still reorders near-tied nearest neighbours
  (95.9% the same) where weight rounding alone (0.9996) keeps 98.6%. Only if int8 at its best stays
  below CALIBRATION_FLOOR do the most damaging projections stay fp32.

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

from .calibration import WEIGHT_ONLY
from .config import EncoderConfig
from .encoder import Encoder, GroupedProjection, Pieces, whole
from .errors import CacheError, SqueezeError

SCHEME = "squeeze-int8"
SCHEME_VERSION = 2
KERNEL_ENV = "SQUEEZE_INT8_KERNEL"
# Mean cosine (fp32 vs int8) on the calibration sample, which tracks held-out text to about +-0.001
# (benchmarks/int8_fidelity.py). The target is what per-token activations are spent on: nearest-neighbour
# search needs it (a sentence's nearest neighbour is sometimes only 0.001 nearer than the next). Below
# the floor, projections go back to fp32: the promise to users is 0.99 on their text. Between the two,
# int8 stays int8, and stays small: a 12-layer model with random weights lands there on rounding alone.
CALIBRATION_TARGET = 0.999
CALIBRATION_FLOOR = 0.995
# How an int8 projection quantizes its input: one range per kernel call, or one per token.
ACTIVATIONS = ("tensor", "token")  # run by the int8 kernel
# WEIGHT_ONLY (named in calibration.py): int8 weights dequantized once at load, fp32 activations and
# matmul. Chosen by calibration only when no int8-activation plan reaches the target (real MiniLM:
# nearest-neighbour rankings break on activation rounding), so such a model keeps the small artifact
# but not the int8 speed.
MODES = (*ACTIVATIONS, WEIGHT_ONLY)
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
    once, after the state is loaded. `activations` is "tensor" (one range per kernel call) or "token".
    """

    hands_on_pieces = True  # takes and gives its groups' pieces (see encoder.Pieces)

    def __init__(self, in_features: int, out_features: int, groups: int = 1, backend: str = "fbgemm",
                 activations: str = "tensor"):
        super().__init__()
        assert in_features % groups == 0 and out_features % groups == 0, (in_features, out_features, groups)
        assert activations in ACTIVATIONS, activations
        self.in_features, self.out_features, self.groups = in_features, out_features, groups
        self.reduce_range = BACKENDS[backend]
        self.activations = activations
        shape = (out_features, in_features) if groups == 1 else (groups, out_features // groups, in_features // groups)
        self.register_buffer("weight", torch.empty(shape, dtype=torch.int8))
        self.register_buffer("weight_scale", torch.empty(shape[:-1]))
        self.register_buffer("bias", torch.zeros(out_features))
        self.packed: list[torch.ScriptObject] = []
        self.correction = torch.empty(0)  # per token only: [2, out], see forward_per_token

    @classmethod
    def from_float(cls, proj: GroupedProjection, backend: str, activations: str = "tensor") -> "Int8Projection":
        q, scale = quantize_per_channel(proj.weight)
        module = cls(proj.in_features, proj.out_features, proj.groups, backend, activations)
        module.load_state_dict({"weight": q, "weight_scale": scale, "bias": proj.bias.detach().clone()})
        return module.prepack()

    def prepack(self) -> "Int8Projection":
        g = self.groups
        weights = self.weight.view(g, self.out_features // g, self.in_features // g)  # [G, out/G, in/G]
        scales = self.weight_scale.view(g, -1)  # [G, out/G]
        if self.activations == "token":
            # The kernel computes W x' for the normalised input x' alone; forward_per_token adds the rest.
            row_sums = (weights.sum(-1, dtype=torch.int32).float() * scales).reshape(-1)  # [out]: W 1
            self.correction = torch.stack([row_sums, self.bias])  # [2, out]
            biases = [None] * g
        else:
            biases = list(self.bias.view(g, -1))  # G x [out/G]
        self.packed = [_prepack(weights[i], scales[i], biases[i]) for i in range(g)]
        return self

    def forward(self, x: torch.Tensor | Pieces, pieces: bool = False) -> torch.Tensor | Pieces:
        """x [..., in], or its groups' pieces [..., in/G] -> [..., out]; with `pieces`, a grouped
        projection run per call may return its groups' pieces [..., out/G] (see encoder.Pieces)."""
        if self.activations == "token":
            return self.forward_per_token(whole(x))
        y = self.matmul(x)
        return y if pieces else whole(y)

    def matmul(self, x: torch.Tensor | Pieces) -> torch.Tensor | Pieces:
        """The kernel's product (plus bias when packed with it), one activation range per call (per group)."""
        if self.groups == 1:
            return torch.ops.quantized.linear_dynamic(whole(x), self.packed[0], self.reduce_range)
        if not (isinstance(x, list) and len(x) == self.groups):
            x = whole(x)
            x = list(x.unflatten(-1, (self.groups, -1)).unbind(-2))  # G x [..., in/G], views
        # One call per group: each group's activations get their own range, and the kernel is 4x
        # faster on a group than on the block-diagonal dense weight (measured, 4096 tokens).
        return [torch.ops.quantized.linear_dynamic(xi, p, self.reduce_range) for xi, p in zip(x, self.packed)]

    def forward_per_token(self, x: torch.Tensor) -> torch.Tensor:
        """W x + b with each token's activations quantized over their own range.

        Each token x is mapped onto [0, 1] as x' = (x - lo) / span, with lo <= 0 <= lo + span its range,
        so the kernel's one range per call is [0, 1] for every token; then W x + b = span W x' + lo W 1 + b.
        """
        # amin and amax rather than aminmax: along a dimension the latter is 40x slower on CPU (torch 2.13).
        lo = x.amin(-1, keepdim=True).clamp_(max=0)  # [..., 1]
        span = x.amax(-1, keepdim=True).clamp_(min=0).sub_(lo).clamp_(min=1e-12)  # [..., 1]
        inverse = span.reciprocal()  # [..., 1]
        y = whole(self.matmul(torch.addcmul(-lo * inverse, x, inverse)))  # [..., out]: W x'
        rows = y.view(-1, self.out_features)  # [N, out], y is fresh and contiguous
        rows.mul_(span.view(-1, 1))
        offsets = torch.cat([lo.view(-1, 1), torch.ones_like(lo.view(-1, 1))], dim=1)  # [N, 2]: [lo, 1]
        rows.addmm_(offsets, self.correction)  # + [lo, 1] @ [W 1; b]
        return y

    def dequantized(self) -> GroupedProjection:
        proj = GroupedProjection(self.in_features, self.out_features, self.groups)
        proj.load_state_dict({"weight": dequantize_per_channel(self.weight, self.weight_scale), "bias": self.bias})
        return proj

    def extra_repr(self) -> str:
        return (f"in={self.in_features}, out={self.out_features}, groups={self.groups}, int8, "
                f"activations per {self.activations}")


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
    kernel there is nothing to calibrate against, and every projection is stored int8 to run per token,
    the more faithful granularity.
    """
    from . import calibration

    encoder: Encoder = runtime.encoder
    names = projection_names(encoder.cfg)
    backend = int8_backend()
    embedding = Int8Embedding.from_float(encoder.embed.word)
    if backend is None:
        activations = dict.fromkeys(names, "token")
        keep_fp32: dict[str, str] = {}
        report: dict = {"skipped": "no int8 kernel on the machine that quantized: every projection is int8, per token"}
    else:
        candidates = {
            name: {
                **{mode: Int8Projection.from_float(encoder.get_submodule(name), backend, mode) for mode in ACTIVATIONS},
                WEIGHT_ONLY: _weight_only(encoder.get_submodule(name)),
            }
            for name in names
        }
        batches = calibration.batches(runtime.tokenizer, texts or calibration.CALIBRATION_TEXTS, runtime.max_length)
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
            "tensor": "quantized by the kernel, one asymmetric uint8 range per call (per group when grouped)",
            "token": "each token mapped affinely onto [0, 1] first, so the kernel's one range fits every token",
            WEIGHT_ONLY: "not quantized: the int8 weights are dequantized once at load and run in fp32",
        },
        "embedding": {"name": WORD_EMBEDDING, "storage": "int8 per row", "lookup": "rows dequantized on lookup"},
        "int8": activations,  # projection -> activation granularity
        "fp32": {
            **keep_fp32,
            "other": "position and token-type embeddings, LayerNorms, biases and the task head: small, "
            "and a negligible share of the compute",
        },
        "calibration": report,
    }
    return tensors, meta


def _weight_only(proj: GroupedProjection) -> GroupedProjection:
    """`proj` with its weights rounded to int8 per channel and back: what a weight-only projection runs."""
    rounded = GroupedProjection(proj.in_features, proj.out_features, proj.groups)
    rounded.load_state_dict({"weight": dequantize_per_channel(*quantize_per_channel(proj.weight)), "bias": proj.bias})
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
                setattr(model.get_submodule(parent), attr,
                        Int8Projection(proj.in_features, proj.out_features, proj.groups, backend, activations))
    from .errors import ModelError
    from .weights import check_state

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
