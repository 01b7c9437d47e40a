"""int8 projections and embeddings as plain tensors plus scales (after gpt-fast's quantize.py), and the
kernel that runs them, found by probing this CPU's torch at run time.

An `Int8Projection` holds its int8 weight in GroupedProjection's layout ([out, in], or [groups, out/g,
in/g]) with one fp32 scale per output channel; its activations are quantized per kernel call ("tensor")
or per token ("token", each token mapped onto [0, 1] first so that outlier tokens do not crush the
rest). The kernel is fbgemm's dynamic int8 linear through torch.ops.quantized; torch is deprecating
quantized tensors, so nothing here assumes it works: `int8_backend` probes it, and without it the int8
tensors run dequantized. The format, calibration and their measurements: artifact.py, the README.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import SqueezeError
from ..model.encoder import Epilogue, GroupedProjection, Pieces, Projection, whole

# How an int8 projection quantizes its input: one range per kernel call, or one per token.
RANGES = ("tensor", "token")
# Backend name -> fbgemm's reduce_range. Without VNNI, fbgemm multiplies with vpmaddubsw, whose int16
# pair sums saturate on 8-bit activations; 7-bit activations ("reduce range") cannot saturate.
BACKENDS = {"fbgemm": False, "fbgemm-reduce-range": True}


# -- per-channel quantization of plain tensors ------------------------------------------------------------


def quantize_per_channel(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 over the last dimension: returns (int8 like `weight`, fp32 scales of shape weight.shape[:-1])."""
    amax = weight.detach().abs().amax(dim=-1).float()  # [...]
    scale = torch.where(amax > 0, amax / 127, torch.ones_like(amax))  # an all-zero row stays zero at any scale
    q = torch.round(weight.detach().float() / scale.unsqueeze(-1)).clamp_(-127, 127).to(torch.int8)
    return q, scale


def dequantize_per_channel(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return q.float() * scale.unsqueeze(-1)


# -- kernels ------------------------------------------------------------------------------------------


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


def int8_backend(choice: str = "auto") -> str | None:
    """The int8 matmul kernel this torch offers on this CPU, or None to run int8 models dequantized.

    `choice` is SQUEEZE_INT8_KERNEL: "none" forces None; "fbgemm" or "fbgemm-reduce-range" picks one
    (if it works); "auto" the first that works.
    """
    from ..environment import KERNEL_ENV

    if choice == "none":
        return None
    if choice != "auto" and choice not in BACKENDS:
        raise SqueezeError(f"{KERNEL_ENV}={choice} is not a kernel squeeze knows",
                           hint=f"use one of: auto, none, {', '.join(BACKENDS)}")
    for backend in BACKENDS if choice == "auto" else (choice,):
        if _usable(backend):
            return backend
    return None


# -- modules ------------------------------------------------------------------------------------------


class Int8Projection(Projection):
    """GroupedProjection with int8 weights, run by fbgemm's dynamic int8 linear.

    State (the artifact's tensors): weight int8 in GroupedProjection's layout, weight_scale fp32 per
    output channel (weight.shape[:-1]), bias fp32 [out]. `prepack` builds the kernel's form of it,
    once, after the state is loaded. `activations` is "tensor" (one range per kernel call) or "token".
    """

    def __init__(self, in_features: int, out_features: int, groups: int = 1, backend: str = "fbgemm",
                 activations: str = "tensor"):
        super().__init__()
        assert in_features % groups == 0 and out_features % groups == 0, (in_features, out_features, groups)
        assert activations in RANGES, activations
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

    def project(self, x: torch.Tensor | Pieces, epilogue: Epilogue) -> torch.Tensor | Pieces:
        """x [..., in], or its groups' pieces [..., in/G] -> [..., out], then the epilogue in place on the
        fresh output. A grouped projection run per call may hand on its groups' pieces (encoder.Pieces)."""
        y = self.forward_per_token(whole(x)) if self.activations == "token" else self.matmul(x)
        return epilogue.apply(y)

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
