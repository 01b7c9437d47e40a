"""How a position-wise projection runs on this CPU: the oneDNN kernels torch reaches, and the probes
that check them. encoder.py holds the model and calls `project`; nothing here knows what a block is.

    project(x, weight, bias, groups, residual=None, activation=None, in_place=False, pieces=False)
        x [..., in] (or its groups' pieces) -> x W^T + b [..., out], then `residual` added or `activation`
        applied, inside the product wherever a fused kernel runs here.

    pack(weight, groups, tokens)
        a weight in the layout this CPU's inner product takes, made once at load, so that no batch re-lays
        it out (oneDNN otherwise reorders every weight on every call); `project` takes either form.

A packed weight runs as oneDNN's inner product (`mkldnn._linear_pointwise`), whose weight layout is the
same at any number of tokens: a dense one as one product, a grouped one as one product per group (its
weight packed by group), the groups' inputs and outputs handed on as pieces (see Pieces), so no glue is
copied where a block does not need the whole. A grouped weight is not packed for oneDNN's grouped
convolution: that kernel picks its weight layout by the number of tokens (two layouts, alternating with
the size at fp32), so one packed for one size is re-laid out on every call of another (a one-line pass of
full-size SqueezeBERT: 0.6 s of oneDNN's generic reorder). Without the packed ops (a probe fails), a
projection runs as a 1x1 convolution on plain weights over channels-last "pixels" (`_pixels`: [N, C]
viewed as [1, C, 1, N], no copy), the epilogue fused by torch's private `mkldnn._convolution_pointwise`
ops (what torch.compile emits on CPU) where they work, else F.conv2d and an in-place epilogue. Private
ops are probed once, never assumed. What each measured is in docs/design.md and docs/performance.md.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F

# The most tokens one forward pass runs where nothing asks for more (runtime.pass_tokens picks the pass size
# from the CPU); also the size the inner product's weight is packed for (its layout is the same at any size).
TOKENS_PER_PASS = 1024

# Applied to fresh projection outputs only, so in place where torch has an in-place form.
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": lambda x: torch.ops.aten.gelu_(x),
    "gelu_new": lambda x: torch.ops.aten.gelu_(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: torch.ops.aten.gelu_(x, approximate="tanh"),
    "gelu_fast": lambda x: torch.ops.aten.gelu_(x, approximate="tanh"),
    "relu": torch.relu_,
    "silu": lambda x: F.silu(x, inplace=True),
    "swish": lambda x: F.silu(x, inplace=True),
    "quick_gelu": lambda x: x * torch.sigmoid(1.702 * x),
}
# Activations oneDNN can apply inside the product: name -> (oneDNN's name, algorithm).
FUSABLE_ACTIVATIONS = {
    "gelu": ("gelu", "none"),
    "gelu_new": ("gelu", "tanh"),
    "gelu_pytorch_tanh": ("gelu", "tanh"),
    "gelu_fast": ("gelu", "tanh"),
    "relu": ("relu", None),
}

# A grouped projection on packed weights (and every int8 one, precision/int8.py) computes each group
# apart, and gluing the groups' outputs back together is a copy as costly as a tenth of the products
# ([tokens, 3072] for the feed-forward). So a projection may hand on its output as the list of its groups'
# pieces, which the next projection takes as its groups' inputs (act(FfnIn x) never exists as one tensor)
# and attention as its heads.
Pieces = list[torch.Tensor]


def whole(x: torch.Tensor | Pieces) -> torch.Tensor:
    """A projection output in one tensor: pieces [..., C/G] glued along channels into [..., C]."""
    return torch.cat(x, dim=-1) if isinstance(x, list) else x


def split(x: torch.Tensor, groups: int, dtype: torch.dtype | None = None) -> Pieces:
    """x [..., C] -> its groups' pieces, each [..., C/G] and contiguous, cast to `dtype` in the same pass."""
    *lead, c = x.shape
    out = x.new_empty((groups, *lead, c // groups), dtype=dtype or x.dtype)  # [G, ..., C/G]
    out.copy_(x.view(*lead, groups, c // groups).movedim(-2, 0))
    return list(out.unbind(0))


def cast(x: torch.Tensor | Pieces, dtype: torch.dtype) -> torch.Tensor | Pieces:
    """x, or each of its pieces, in `dtype` (itself where it already is)."""
    if isinstance(x, list):
        return [piece if piece.dtype == dtype else piece.to(dtype) for piece in x]
    return x if x.dtype == dtype else x.to(dtype)


class Epilogue(NamedTuple):
    """What finishes a projection's product: `residual` added (with `in_place`, into the residual's own
    memory, which the caller must not need afterwards), or `activation` applied; with `pieces`, the
    output may stay its groups' pieces (see Pieces)."""

    residual: torch.Tensor | None = None
    activation: str | None = None
    in_place: bool = False
    pieces: bool = False

    def apply(self, y: torch.Tensor | Pieces) -> torch.Tensor | Pieces:
        """The epilogue on a fresh product `y` (a tensor, or pieces), in place where torch allows. A
        residual of another dtype (fp32, under a bf16 product) keeps its own: the sum is the residual's."""
        if isinstance(y, list):
            if self.residual is not None and self.in_place and self.residual.is_contiguous():
                slots = self.residual.view(-1, len(y), self.residual.shape[-1] // len(y))  # [N, G, C/G]
                for group, piece in enumerate(y):  # each group's output into its own channels: nothing glued
                    slots[:, group].add_(piece.view(slots.shape[0], -1))
                return self.residual
            if self.residual is None and self.pieces:
                return [ACTIVATIONS[self.activation](piece) for piece in y] if self.activation is not None else y
            y = whole(y)
        if self.residual is not None and self.residual.dtype != y.dtype:
            return self.residual.add_(y) if self.in_place else self.residual + y
        if self.residual is not None:
            y = y.add_(self.residual)
        return ACTIVATIONS[self.activation](y) if self.activation is not None else y


def project(x: torch.Tensor | Pieces, weight: Weight, bias: torch.Tensor, groups: int = 1,
            residual: torch.Tensor | None = None, activation: str | None = None, in_place: bool = False,
            pieces: bool = False) -> torch.Tensor | Pieces:
    """x [..., in] (or its groups' pieces) -> x W^T + b [..., out], with `residual` [..., out] added (with
    `in_place`, into the residual's own memory: the caller must not need it afterwards) or `activation`
    applied; with `pieces`, a grouped output may stay its groups' pieces [..., out/G].

    weight: [out, in], or [groups, out/groups, in/groups] (a grouped 1x1 convolution's, by group), or
    what `pack` made of either.
    """
    assert residual is None or activation is None, "one epilogue at a time"
    if isinstance(weight, tuple):  # packed by group: one inner product each
        return _grouped_linear(x, weight, bias, Epilogue(residual, activation, in_place, pieces))
    x = whole(x)
    *lead, c = x.shape
    out = bias.shape[0]
    if x.numel() == 0:  # oneDNN refuses zero-width images, and there is nothing to compute
        return x.new_empty(*lead, out, dtype=x.dtype if residual is None else residual.dtype)
    if residual is not None and residual.dtype != x.dtype:  # a bf16 product into an fp32 residual stream
        return Epilogue(residual, in_place=in_place).apply(project(x, weight, bias, groups))
    if weight.is_mkldnn and weight.dim() == 2:  # packed for the inner product
        return _linear(x.reshape(-1, c), weight, bias, residual, activation).view(*lead, out)
    weight = weight.view(out, c // groups, 1, 1)  # [out, in/G, 1, 1]
    fused = _fused_convolution()
    conv_args = ([0, 0], [1, 1], [1, 1], groups)  # padding, stride, dilation, groups
    if fused is not None and residual is not None and in_place and residual.is_contiguous():
        # Accumulating into the residual also fuses grouped products, which the out-of-place form
        # below runs as a convolution and a separate add.
        fused.in_place.binary(_pixels(residual), _pixels(x), weight, bias, *conv_args, "add", None, None, [], None)
        return residual
    if fused is not None and residual is not None:
        y = fused.binary(_pixels(x), _pixels(residual), weight, bias, *conv_args, "add", None, None, [], None)
    elif fused is not None and activation in FUSABLE_ACTIVATIONS:
        name, algorithm = FUSABLE_ACTIVATIONS[activation]
        y = fused(_pixels(x), weight, bias, *conv_args, name, [], algorithm)
    else:
        y = F.conv2d(_pixels(x), weight, bias, groups=groups)
        return Epilogue(residual, activation).apply(_unpixels(y, lead))
    return _unpixels(y, lead)  # [..., out]


# A weight as `project` takes it: plain, packed whole (dense), or packed by group (a tuple, one per group).
Weight = torch.Tensor | tuple[torch.Tensor, ...]


def pack(weight: torch.Tensor, groups: int = 1, tokens: int = TOKENS_PER_PASS) -> Weight:
    """`weight` in the layout this CPU's inner product takes, as oneDNN's own (mkldnn) tensors: a dense one
    [out, in] whole, a grouped one [groups, out/groups, in/groups] as one packed [out/G, in/G] per group
    (`tokens`: the pass size oneDNN is told to expect; here its layout does not depend on it). `weight`
    itself where no packed kernel runs. Made once, at load: the packed copy replaces the plain one."""
    if not packed_kernels() or weight.dtype not in (torch.float32, torch.bfloat16):
        return weight
    weight = weight.detach()
    return _pack(weight, tokens) if groups == 1 else tuple(_pack(w, tokens) for w in weight)


def _pack(weight: torch.Tensor, tokens: int = TOKENS_PER_PASS) -> torch.Tensor:
    return torch.ops.mkldnn._reorder_linear_weight(weight, tokens)


def unpack(packed: Weight, shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
    """The plain weight of `shape` that `pack` made `packed` from (itself if it is plain)."""
    if isinstance(packed, tuple):
        return torch.stack([w.to_dense() for w in packed]).reshape(shape)
    return packed.to_dense().reshape(shape) if packed.is_mkldnn else packed


def projection_kernel() -> str:
    """What runs a float projection on this machine, in words (for `squeeze doctor`)."""
    if _fused_convolution() is None:
        return "oneDNN 1x1 convolution on plain weights, then the residual or activation"
    if not packed_kernels():
        return "oneDNN 1x1 convolution, residual or GELU fused; weights re-laid out on every call"
    return "oneDNN inner product on weights packed at load (grouped: one per group), residual or GELU fused"


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, residual: torch.Tensor | None,
            activation: str | None) -> torch.Tensor:
    """x [N, in] through a packed dense weight -> [N, out], the epilogue fused where oneDNN has it."""
    if residual is not None:
        return torch.ops.mkldnn._linear_pointwise.binary(x, residual.reshape(x.shape[0], -1), weight, bias, "add")
    if activation in FUSABLE_ACTIVATIONS:
        name, algorithm = FUSABLE_ACTIVATIONS[activation]
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, name, [], algorithm or "")
    y = torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
    return ACTIVATIONS[activation](y) if activation is not None else y


def _grouped_linear(x: torch.Tensor | Pieces, weights: tuple[torch.Tensor, ...], bias: torch.Tensor,
                    epilogue: Epilogue) -> torch.Tensor | Pieces:
    """x [..., in] or its groups' pieces through one packed weight per group -> the epilogue's result; each
    group's activation fused into its product."""
    groups = len(weights)
    parts = x if isinstance(x, list) else split(x, groups)  # G x [..., in/G]
    lead = parts[0].shape[:-1]
    if parts[0].numel() == 0:  # oneDNN refuses empty inputs, and there is nothing to compute
        empty = torch.cat([part.new_empty(*lead, w.shape[0]) for part, w in zip(parts, weights)], dim=-1)
        return epilogue._replace(activation=None, pieces=False).apply(empty)
    ys = [_linear(part.reshape(-1, part.shape[-1]), w, b, None, epilogue.activation).view(*lead, -1)
          for part, w, b in zip(parts, weights, bias.view(groups, -1))]  # G x [..., out/G]
    return epilogue._replace(activation=None).apply(ys)


def _pixels(x: torch.Tensor) -> torch.Tensor:
    """[..., C] -> [1, C, 1, N], a view with channels-last strides: N one-pixel images of C channels."""
    return x.reshape(1, 1, -1, x.shape[-1]).permute(0, 3, 1, 2)


def _unpixels(y: torch.Tensor, lead: list[int]) -> torch.Tensor:
    """[1, C, 1, N] channels-last -> [*lead, C], a view: y is [N, C] in memory."""
    return y.permute(0, 2, 3, 1).reshape(*lead, y.shape[1])


class _FusedConvolution:
    """oneDNN's convolution with a fused epilogue: the ops torch.compile emits on CPU."""

    def __init__(self) -> None:
        self.out_of_place = torch.ops.mkldnn._convolution_pointwise  # (x, w, ...) and .binary(x, other, w, ...)
        self.in_place = torch.ops.mkldnn._convolution_pointwise_  # .binary(other, x, w, ...): other += conv(x)

    def __call__(self, *args: Any) -> torch.Tensor:
        return self.out_of_place(*args)

    def binary(self, *args: Any) -> torch.Tensor:
        return self.out_of_place.binary(*args)


@functools.cache
def packed_kernels() -> bool:
    """Do oneDNN's packed-weight ops run here, and right, at both float precisions? Small integers: every
    product and sum is exact in bf16 too, so the results must equal the plain ones."""
    if _fused_convolution() is None:
        return False
    x = torch.arange(-8.0, 16.0).view(3, 8) % 5 - 2  # [3, 8]
    w = torch.arange(64.0).view(8, 8) % 3 - 1  # [8, 8]
    b = torch.arange(8.0)
    try:
        with torch.inference_mode():
            for dtype in (torch.float32, torch.bfloat16):
                xd, wd, bd = x.to(dtype), w.to(dtype), b.to(dtype)
                dense = F.linear(x, w, b)
                if not (torch.equal(_linear(xd, _pack(wd), bd, None, "relu").float(), dense.relu())
                        and torch.equal(_linear(xd, _pack(wd), bd, xd, None).float(), dense + x)
                        and torch.equal(unpack(_pack(wd), wd.shape), wd)):
                    return False
    except (AttributeError, RuntimeError, NotImplementedError, TypeError):
        return False
    return True


@functools.cache
def _fused_convolution() -> _FusedConvolution | None:
    """The fused convolutions, or None where this torch lacks them or they compute something else."""
    args = ([0, 0], [1, 1], [1, 1], 1)  # padding, stride, dilation, groups
    try:
        fused = _FusedConvolution()
        x = torch.arange(6.0).view(1, 3, 1, 2).to(memory_format=torch.channels_last)  # [1, C=3, 1, N=2]
        w = torch.arange(9.0).view(3, 3, 1, 1)  # [3, 3, 1, 1]
        with torch.inference_mode():
            added = fused.binary(x, x, w, None, *args, "add", None, None, [], None)
            accumulated = x.clone()
            fused.in_place.binary(accumulated, x, w, None, *args, "add", None, None, [], None)
            relu = fused(-x, w, None, *args, "relu", [], None)
            expected = F.conv2d(x, w) + x
            ok = (torch.equal(added, expected) and torch.equal(accumulated, expected)
                  and torch.equal(relu, F.conv2d(-x, w).relu()))
    except (AttributeError, RuntimeError, NotImplementedError):
        return None
    return fused if ok else None
