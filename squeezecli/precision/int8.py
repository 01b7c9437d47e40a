"""int8 projections and embeddings as plain tensors plus scales (after gpt-fast's quantize.py), and the
kernel that runs them, found by probing this torch on this CPU at run time.

An `Int8Projection` holds its int8 weight in GroupedProjection's layout ([out, in], or [groups, out/g,
in/g]) with one fp32 scale per output channel. Its activations are quantized per token (symmetric, one
scale for each token's row, per group): a token's result never depends on the other tokens of its
batch, and an outlier token does not crush the others into a few levels. The product is `torch._int_mm`
(int8 x int8 -> int32, oneDNN's VNNI/AMX kernels; exact, so any batching gives the same integers),
then one rescale. torch.ao's quantized tensors are not used: they are deprecated upstream, and fbgemm
has no AMX path. Without a working kernel the int8 weights run dequantized (fp32).
"""

from __future__ import annotations

import functools
from collections.abc import Hashable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import SqueezeError
from ..model.projection import GroupedProjection, Projection
from ..model.kernels import Epilogue, Pieces, whole

# SQUEEZE_INT8_KERNEL values: the kernels squeeze can run int8 products with ("auto": the first that works).
KERNELS = ("int_mm",)


# -- per-channel quantization of plain tensors ------------------------------------------------------------


def quantize_per_channel(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 over the last dimension: returns (int8 like `weight`, fp32 scales of shape weight.shape[:-1])."""
    amax = weight.detach().abs().amax(dim=-1).float()  # [...]
    scale = torch.where(amax > 0, amax / 127, torch.ones_like(amax))  # an all-zero row stays zero at any scale
    q = torch.round(weight.detach().float() / scale.unsqueeze(-1)).clamp_(-127, 127).to(torch.int8)
    return q, scale


def dequantize_per_channel(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return q.float() * scale.unsqueeze(-1)


# -- the kernel ---------------------------------------------------------------------------------------


@functools.cache
def _int_mm_works() -> bool:
    """Does torch._int_mm run here, and exactly? Products of full-range int8 values (127 x 127, summed over
    64: where a 16-bit pairwise sum would saturate) and of mixed signs, against the float result."""
    a = torch.tensor([[127] * 64, [-127, 127] * 32, list(range(-32, 32))], dtype=torch.int8)  # [3, 64]
    a = a.repeat(6, 1)  # [18, 64]: more rows than the smallest some kernels take
    b = torch.stack([torch.full((64,), 127), torch.arange(64) % 7 - 3] * 4, dim=1).to(torch.int8)  # [64, 8]
    try:
        got = torch._int_mm(a, b)
    except (AttributeError, RuntimeError, NotImplementedError):
        return False
    return bool(torch.equal(got, (a.double() @ b.double()).to(torch.int32)))


def int8_backend(choice: str = "auto") -> str | None:
    """The int8 kernel this torch runs on this CPU, or None to run int8 models dequantized.

    `choice` is SQUEEZE_INT8_KERNEL: "none" forces None; "int_mm" asks for torch._int_mm (if it works);
    "auto" the first that works.
    """
    from ..environment import KERNEL_ENV

    if choice == "none":
        return None
    if choice != "auto" and choice not in KERNELS:
        raise SqueezeError(f"{KERNEL_ENV}={choice} is not a kernel squeeze knows",
                           hint=f"use one of: auto, none, {', '.join(KERNELS)}")
    return "int_mm" if _int_mm_works() else None


def quantize_per_token(x: torch.Tensor, groups: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """x [N, C] -> (int8 [N, C], fp32 scales [N, groups]): symmetric, each row's `groups` blocks of C/groups
    channels over their own largest value."""
    if x.dtype != torch.float32:
        x = x.float()  # bf16 in: one upcast, where mixed-dtype arithmetic below would leave torch's fast kernels
    n, c = x.shape
    blocks = x.view(n, groups, c // groups)  # [N, G, C/G]
    scale = blocks.abs().amax(-1).clamp_(min=1e-12).div_(127)  # [N, G]
    # |x / scale| <= 127 by construction, so no clamp; rounded in place: two passes fewer, the same bits.
    return torch.div(blocks, scale.unsqueeze(-1)).round_().to(torch.int8).view(n, c), scale


class Quantized(NamedTuple):
    """A projection input quantized per token (Int8Projection.prepare): one, shared by the projections
    that take the same input (a block's query, key and value)."""

    values: torch.Tensor  # int8 [N, C]
    scales: torch.Tensor  # fp32 [N, G], one per token and group
    lead: torch.Size  # the input's leading dimensions: N is their product


# -- modules ------------------------------------------------------------------------------------------


class Int8Projection(Projection):
    """GroupedProjection with int8 weights and per-token int8 activations, run by torch._int_mm.

    State (the artifact's tensors): weight int8 in GroupedProjection's layout, weight_scale fp32 per
    output channel (weight.shape[:-1]), bias fp32 [out]. `prepack` lays the weight out as the kernel
    takes it ([in/G, out/G] per group), once, after the state is loaded.
    """

    def __init__(self, in_features: int, out_features: int, groups: int = 1):
        super().__init__()
        assert in_features % groups == 0 and out_features % groups == 0, (in_features, out_features, groups)
        self.in_features, self.out_features, self.groups = in_features, out_features, groups
        shape = (out_features, in_features) if groups == 1 else (groups, out_features // groups, in_features // groups)
        self.register_buffer("weight", torch.empty(shape, dtype=torch.int8))
        self.register_buffer("weight_scale", torch.empty(shape[:-1]))
        self.register_buffer("bias", torch.zeros(out_features))
        self.packed: list[torch.Tensor] = []  # per group: int8 [in/G, out/G]
        self.scales: list[torch.Tensor] = []  # per group: fp32 [out/G]
        self.biases: list[torch.Tensor] = []  # per group: fp32 [out/G]

    @classmethod
    def from_float(cls, proj: GroupedProjection) -> Int8Projection:
        q, scale = quantize_per_channel(proj.plain_weight())
        module = cls(proj.in_features, proj.out_features, proj.groups)
        module.load_state_dict({"weight": q, "weight_scale": scale, "bias": proj.bias.detach().clone()})
        return module.prepack()

    def prepack(self) -> Int8Projection:
        g = self.groups
        weights = self.weight.view(g, self.out_features // g, self.in_features // g)  # [G, out/G, in/G]
        self.packed = [w.t().contiguous() for w in weights]
        self.scales = list(self.weight_scale.reshape(g, -1))
        self.biases = list(self.bias.view(g, -1))
        return self

    @property
    def input_form(self) -> Hashable:
        return ("int8 per token", self.groups)

    def prepare(self, x: torch.Tensor) -> Quantized:
        """x [..., in] (fp32 or bf16) -> its int8 values and per-token (and group) scales."""
        return Quantized(*quantize_per_token(x.reshape(-1, x.shape[-1]), self.groups), x.shape[:-1])

    def project(self, x: torch.Tensor | Pieces | Quantized, epilogue: Epilogue) -> torch.Tensor | Pieces:
        """x [..., in], its groups' pieces [..., in/G] or what `prepare` made of it -> [..., out] (or, where
        the epilogue allows, its groups' pieces [..., out/G], see kernels.Pieces); the epilogue applied on
        the fresh output, which is written in `output_dtype` (None: fp32) where nothing else follows."""
        if isinstance(x, list) and len(x) == self.groups:  # each piece quantized apart: one scale per token each
            lead = x[0].shape[:-1]
            groups = [quantize_per_token(piece.reshape(-1, piece.shape[-1])) for piece in x]
        else:
            values, scales, lead = x if isinstance(x, Quantized) else self.prepare(whole(x))
            width = values.shape[1] // self.groups
            groups = [(values[:, g * width:(g + 1) * width], scales[:, g:g + 1]) for g in range(self.groups)]
        pieces = [self._product(q, scale, g).view(*lead, -1) for g, (q, scale) in enumerate(groups)]
        if epilogue.residual is None and epilogue.activation is None and self.output_dtype not in (None, torch.float32):
            pieces = [piece.to(self.output_dtype) for piece in pieces]
            return pieces if epilogue.pieces and self.groups > 1 else whole(pieces)
        return epilogue.apply(pieces if self.groups > 1 else pieces[0])

    def _product(self, q: torch.Tensor, scale: torch.Tensor, group: int) -> torch.Tensor:
        """Group `group`'s W x + b for int8 rows q [N, in/G] with scales [N, 1] -> [N, out/G] fp32."""
        if q.shape[0] == 0:
            return torch.empty(0, self.out_features // self.groups)
        y = torch.mul(torch._int_mm(q, self.packed[group]), self.scales[group])  # exact integers x s_channel, fp32
        return torch.addcmul(self.biases[group], y, scale, out=y)  # b + y s_token, in place: one pass

    def dequantized(self) -> GroupedProjection:
        proj = GroupedProjection(self.in_features, self.out_features, self.groups)
        proj.load_state_dict({"weight": dequantize_per_channel(self.weight, self.weight_scale), "bias": self.bias})
        return proj

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, groups={self.groups}, int8, activations per token"


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
    def from_float(cls, table: nn.Embedding) -> Int8Embedding:
        q, scale = quantize_per_channel(table.weight)
        module = cls(*q.shape)
        module.load_state_dict({"weight": q, "weight_scale": scale})
        return module

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        rows = F.embedding(ids, self.weight)  # [..., H] int8
        return rows.float() * F.embedding(ids, self.weight_scale.unsqueeze(-1))  # [..., H] * [..., 1]
