"""A position-wise projection as a block holds it: `Projection` (what a block calls), `GroupedProjection`
(fp32 or bf16: y = x W^T + b with the channels in groups, groups=1 a dense layer; SqueezeBERT's grouped 1x1
convolutions and BERT's dense layers alike) and `Stack` (projections of one input, a block's query, key
and value, stacked into one product). How a product runs on this CPU is kernels.py's business; the int8
projections are precision/'s.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import torch
from torch import nn

from . import kernels
from .kernels import Epilogue, Pieces, cast, whole


class Projection(nn.Module):
    """A position-wise projection as a block calls it: x [..., in] (or its groups' pieces) -> [..., out],
    finished by an epilogue. Subclasses compute `project(x, epilogue)`: GroupedProjection here (fp32,
    epilogue fused into the product), the int8 ones in precision/."""

    def forward(self, x: torch.Tensor | Pieces, residual: torch.Tensor | None = None, activation: str | None = None,
                in_place: bool = False, pieces: bool = False) -> torch.Tensor | Pieces:
        assert residual is None or activation is None, "one epilogue at a time"
        return self.project(x, Epilogue(residual, activation, in_place, pieces))

    # The dtype a projection that may choose its output's (int8's rescale writes any float dtype) writes
    # in: the attention's, for query, key and value (Encoder.use_attention_dtype). Float products ignore it.
    output_dtype: torch.dtype | None = None

    def project(self, x: Any, epilogue: Epilogue) -> torch.Tensor | Pieces:
        raise NotImplementedError

    @property
    def input_form(self) -> Hashable:
        """What `prepare` makes of an input: projections with equal forms take the same prepared input."""
        return torch.float32

    def prepare(self, x: torch.Tensor) -> Any:
        """x [..., in] fp32 as `project` takes it (here: itself)."""
        return x


class GroupedProjection(Projection):
    """y = x W^T + b applied at every position, with the channels split into `groups` blocks.

    weight: [out, in] when groups == 1 (an nn.Linear), else [groups, out/groups, in/groups],
    which is a Conv1d weight [out, in/groups, 1] viewed by group. `pack` lays it out for this CPU's
    kernels, once; a grouped weight packed by group then lives in `group_weights`, and one stacked with
    its siblings' (query, key and value: `Stack`) in `stacked` (either way `weight` is left empty, its
    dtype kept). The epilogue (a residual or an activation) runs inside oneDNN's product while
    each output tile is still in cache; a grouped output may stay its groups' pieces where asked.
    """

    def __init__(self, in_features: int, out_features: int, groups: int = 1):
        super().__init__()
        assert in_features % groups == 0 and out_features % groups == 0, (in_features, out_features, groups)
        self.in_features, self.out_features, self.groups = in_features, out_features, groups
        self.weight = nn.Parameter(torch.empty(self.shape))
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.group_weights: tuple[torch.Tensor, ...] = ()  # per group, packed [out/G, in/G] (after `pack`)
        self.stacked: tuple[Stack, int] | None = None  # the stack holding this weight, and its place in it

    @property
    def input_dtype(self) -> torch.dtype:
        """The dtype the product takes its input in: bf16 for bf16 weights."""
        return self.weight.dtype

    @property
    def by_group(self) -> bool:
        """Does each group run apart (as its own inner product), taking its input as pieces?"""
        return self.groups > 1 and bool(self.group_weights or self.stacked)

    @property
    def input_form(self) -> Hashable:
        return (self.input_dtype, self.groups) if self.by_group else self.input_dtype

    def prepare(self, x: torch.Tensor) -> torch.Tensor | Pieces:
        """x as the product takes it: in its dtype (a no-op in fp32, one cast in bf16), and split into its
        groups' pieces (in the same pass) where each group runs apart."""
        if self.by_group:
            return kernels.split(x, self.groups, self.input_dtype)
        return x.to(self.input_dtype)

    def pack(self, tokens: int = kernels.TOKENS_PER_PASS) -> None:
        """Lay the weight out, once, as this CPU's inner product takes it (kernels.pack: `tokens` is the pass
        size it is told to expect); it replaces the plain one. A stacked weight is packed in its stack."""
        if self.stacked is not None:
            return
        packed = kernels.pack(self.weight, self.groups, tokens)
        if isinstance(packed, tuple):
            self.group_weights = packed
            packed = self.weight.detach().new_empty(0)  # the groups hold the weight now; its dtype stays
        self.weight = nn.Parameter(packed, requires_grad=False)

    def plain_weight(self) -> torch.Tensor:
        """The weight in the layout the class docstring gives, packed or not."""
        if self.stacked is not None:
            stack, index = self.stacked
            return stack.plain_weight(index)
        return kernels.unpack(self.group_weights or self.weight.detach(), self.shape)

    @property
    def shape(self) -> tuple[int, ...]:
        """The plain weight's shape."""
        g = self.groups
        return (self.out_features, self.in_features) if g == 1 else (g, self.out_features // g, self.in_features // g)

    def parameter_count(self) -> int:
        return self.bias.numel() + self.out_features * self.in_features // self.groups

    def _save_to_state_dict(self, destination, prefix, keep_vars):  # type: ignore[no-untyped-def]
        super()._save_to_state_dict(destination, prefix, keep_vars)
        destination[prefix + "weight"] = self.plain_weight()  # checkpoints and artifacts hold the plain layout

    def project(self, x: torch.Tensor | Pieces, epilogue: Epilogue) -> torch.Tensor | Pieces:
        x = cast(x, self.input_dtype)  # e.g. an fp32 projection of an int8 model after bf16 attention
        if self.stacked is not None:  # run apart from its stack's siblings (one swapped out): the stack, its part
            stack, index = self.stacked
            return epilogue.apply(stack.run(x)[index])
        return kernels.project(x, self.group_weights or self.weight, self.bias, self.groups,
                               residual=epilogue.residual, activation=epilogue.activation,
                               in_place=epilogue.in_place, pieces=epilogue.pieces)  # [..., out] or pieces

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, groups={self.groups}"


class Stack:
    """Projections of one input (a block's query, key and value) stacked into one product: per group,
    their weights one above the other ([G, n x out/G, in/G], or [n x out, in] dense), packed once, so one
    inner product per group computes all n (a third of the calls for query, key and value, each on
    wider weights). Each projection keeps its bias and reads its weight back from here (`stacked`);
    run alone (its siblings swapped out, as calibration does), it computes the stack and takes its part.
    Built only where the packed kernels run: each part is then a slice of each group's output."""

    def __init__(self, parts: tuple[GroupedProjection, ...], tokens: int):
        first = parts[0]
        self.count, self.groups, self.width = len(parts), first.groups, first.out_features // first.groups
        plain = torch.cat([p.plain_weight() for p in parts], dim=-2)  # [G, n x out/G, in/G] or [n x out, in]
        self.shape = tuple(plain.shape)
        self.weight = kernels.pack(plain, self.groups, tokens)
        self.bias = torch.cat([p.bias.detach().view(self.groups, -1) for p in parts], dim=1).flatten()  # [G x n x out/G]

    @staticmethod
    def fits(parts: tuple[Projection, ...]) -> bool:
        """Can `parts` be stacked: float projections of one shape and dtype, where the packed kernels run."""
        if not all(type(p) is GroupedProjection and p.stacked is None for p in parts) or not kernels.packed_kernels():
            return False
        first = parts[0]
        return first.input_dtype in (torch.float32, torch.bfloat16) and all(
            (p.in_features, p.out_features, p.groups, p.input_dtype)
            == (first.in_features, first.out_features, first.groups, first.input_dtype) for p in parts)

    def stack(self, parts: tuple[GroupedProjection, ...]) -> None:
        """Hand `parts` their places here; their own weights are released."""
        for index, part in enumerate(parts):
            part.stacked = (self, index)
            part.group_weights = ()
            part.weight = nn.Parameter(part.weight.detach().new_empty(0), requires_grad=False)

    def run(self, x: torch.Tensor | Pieces) -> list[torch.Tensor | Pieces]:
        """x as a part `prepare`s it -> each part's output ([..., out], or its groups' pieces), views of the
        stacked product."""
        y = kernels.project(x, self.weight, self.bias, self.groups, pieces=True)  # [..., n x out] or G x [..., n x out/G]
        w = self.width
        if isinstance(y, list):
            return [[piece[..., i * w:(i + 1) * w] for piece in y] for i in range(self.count)]
        return [y[..., i * w:(i + 1) * w] for i in range(self.count)]

    def plain_weight(self, index: int) -> torch.Tensor:
        """Part `index`'s plain weight."""
        plain = kernels.unpack(self.weight, self.shape)
        return plain[..., index * self.width:(index + 1) * self.width, :].contiguous()


def prepared(x: torch.Tensor, projections: tuple[Projection, ...]) -> list[Any]:
    """x as each of `projections` takes it, each form made once."""
    forms: dict[Hashable, Any] = {}
    for p in projections:
        if p.input_form not in forms:
            forms[p.input_form] = p.prepare(x)
    return [forms[p.input_form] for p in projections]
