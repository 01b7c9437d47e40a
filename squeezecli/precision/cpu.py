"""What this CPU offers, and the precision `--precision auto` runs on it, decided at run time.

bf16 products are what a CPU with native bf16 dot products runs fastest within squeeze's fidelity bar
(AVX512-BF16 on AMD Zen 4 and Intel Cooper Lake on, AMX-BF16 on Sapphire Rapids on: oneDNN's bf16
kernels; measured in the docs/performance.md); without them bf16 is emulated and slower than fp32,
so auto is fp32 there. int8 is not auto's choice anywhere: its activation rounding moves near-tied
nearest neighbours of real embeddings (docs/performance.md, int8 fidelity); it stays selectable for its 4x smaller
artifact. Every kernel is probed before it is used: a CPU flag says what the silicon can do, the probe
says that this torch build does it, and right.
"""

from __future__ import annotations

import functools
import platform
from dataclasses import dataclass
from pathlib import Path

# What --precision takes; auto is resolved here, per CPU.
PRECISIONS = ("auto", "bf16", "int8", "fp32")
NATIVE_BF16 = ("amx_bf16", "avx512_bf16")
INT8_DOT_PRODUCTS = ("amx_int8", "avx512_vnni", "avx_vnni")
# The flags worth reporting, in the order `doctor` lists them.
REPORTED = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8")


@dataclass(frozen=True)
class Choice:
    precision: str  # "bf16" or "fp32"
    reason: str


@functools.cache
def _cpuinfo(key: str) -> str | None:
    """The value of the first /proc/cpuinfo line whose name starts with `key`; None where there is none."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux names them (x86 "flags", Arm "Features"); empty where unknown."""
    return frozenset((_cpuinfo("flags") or _cpuinfo("Features") or "").split())


@functools.cache
def cpu_name() -> str:
    return _cpuinfo("model name") or platform.processor() or platform.machine()


def present(wanted: tuple[str, ...], flags: frozenset[str] | None = None) -> list[str]:
    """Those of `wanted` this CPU (or `flags`) has, in `wanted`'s order."""
    flags = cpu_flags() if flags is None else flags
    return [flag for flag in wanted if flag in flags]


def auto_precision(flags: frozenset[str] | None = None) -> Choice:
    """The precision `--precision auto` runs with on a CPU with `flags` (default: this one's)."""
    native = present(NATIVE_BF16, flags)
    if not native:
        return Choice("fp32", "no native bf16 dot products on this CPU (no AMX-BF16 or AVX512-BF16)")
    if not bf16_kernels_work():
        return Choice("fp32", f"this CPU has {native[0]}, but torch's bf16 kernels failed their probe here")
    return Choice("bf16", f"native bf16 dot products ({native[0]}), oneDNN's bf16 kernels")


@functools.cache
def bf16_kernels_work() -> bool:
    """Do the bf16 kernels squeeze runs (1x1 convolutions, batched products) run here, and right?"""
    import torch
    import torch.nn.functional as F

    try:
        with torch.inference_mode():
            # Small integers: every input, product and sum is exact in bf16, so the results must be equal.
            x = (torch.arange(256, dtype=torch.float32) % 5 - 2).view(1, 64, 1, 4)  # [1, C=64, 1, N=4]
            w = (torch.arange(128, dtype=torch.float32) % 3 - 1).view(8, 16, 1, 1)  # 4 groups of 16 -> 2
            got = F.conv2d(x.bfloat16(), w.bfloat16(), groups=4).float()
            scores = torch.bmm(x.view(4, 4, 16).bfloat16(), x.view(4, 16, 4).bfloat16()).float()
    except (RuntimeError, NotImplementedError):
        return False
    return bool(torch.equal(got, F.conv2d(x, w, groups=4))
                and torch.equal(scores, torch.bmm(x.view(4, 4, 16), x.view(4, 16, 4))))


def kernels(int8_kernel: str | None) -> dict[str, dict[str, str]]:
    """For `squeeze doctor`: what runs the projections and attention at each precision here, and why.
    `int8_kernel` is int8.int8_backend()'s answer."""
    from ..model.kernels import projection_kernel

    fp32 = {"projections": projection_kernel(), "attention": "fused SDPA over keys padded to a multiple of 16",
            "why": "exact, the reference"}
    native = present(NATIVE_BF16)
    if not bf16_kernels_work():
        bf16 = {"projections": "fp32", "attention": "fp32", "why": "torch's bf16 kernels failed their probe here"}
    else:
        bf16 = {"projections": "the same in bf16, fp32 residual stream and LayerNorms",
                "attention": "bf16 batched products + softmax",
                "why": f"native bf16 dot products ({native[0]})" if native else "bf16 is emulated here: slower than fp32"}
    dots = present(INT8_DOT_PRODUCTS)
    if int8_kernel == "int_mm":
        int8 = {"projections": "torch._int_mm, per-token activation scales", "attention": "fp32",
                "why": f"int8 dot products ({dots[0]})" if dots else "no int8 dot-product instructions: emulated"}
    else:
        int8 = {"projections": "fp32", "attention": "fp32", "why": "no working int8 kernel, or SQUEEZE_INT8_KERNEL=none"}
    return {"fp32": fp32, "bf16": bf16, "int8": int8}
