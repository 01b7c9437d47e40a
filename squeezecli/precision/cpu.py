"""What this CPU offers, and the precision `--precision auto` runs on it, decided at run time.

bf16 products are what a CPU with native bf16 dot products runs fastest within squeeze's fidelity bar
(AVX512-BF16 on AMD Zen 4 and Intel Cooper Lake on, AMX-BF16 on Sapphire Rapids on: oneDNN's bf16
kernels; measured in the docs/performance.md); without them bf16 is emulated and slower than fp32,
so auto is fp32 there. int8 is not the CPU's choice: whether a pulled model's int8 entry runs under auto
is measured per model, on the machine, when the entry is built (assembly/auto.py). Every kernel is probed before it is used: a CPU flag says what the silicon can do, the probe
says that this torch build does it, and right.
"""

from __future__ import annotations

import functools
import platform
from dataclasses import dataclass
from pathlib import Path

from .names import BF16, FP32

NATIVE_BF16 = ("amx_bf16", "avx512_bf16")
INT8_DOT_PRODUCTS = ("amx_int8", "avx512_vnni", "avx_vnni")
# The flags worth reporting, in the order `doctor` lists them.
REPORTED = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8")


@dataclass(frozen=True)
class Choice:
    precision: str  # BF16 or FP32
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


@functools.cache
def fingerprint() -> str:
    """This CPU and torch, as a measurement made here is good for: the model name, the flags that decide
    kernels, and torch's version (read without importing torch)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        torch_version = version("torch")
    except PackageNotFoundError:
        torch_version = "?"
    return f"{cpu_name()} [{' '.join(present(REPORTED))}] torch {torch_version}"


def present(wanted: tuple[str, ...], flags: frozenset[str] | None = None) -> list[str]:
    """Those of `wanted` this CPU (or `flags`) has, in `wanted`'s order."""
    flags = cpu_flags() if flags is None else flags
    return [flag for flag in wanted if flag in flags]


def auto_precision(flags: frozenset[str] | None = None) -> Choice:
    """The precision `--precision auto` runs with on a CPU with `flags` (default: this one's)."""
    native = present(NATIVE_BF16, flags)
    if not native:
        return Choice(FP32, "no native bf16 dot products on this CPU (no AMX-BF16 or AVX512-BF16)")
    if not bf16_kernels_work():
        return Choice(FP32, f"this CPU has {native[0]}, but torch's bf16 kernels failed their probe here")
    return Choice(BF16, f"native bf16 dot products ({native[0]}), oneDNN's bf16 kernels")


def fused_bf16_attention(flags: frozenset[str] | None = None) -> bool:
    """Does bf16 attention run faster as torch's fused kernel (SDPA) than as two batched products and a
    softmax on a CPU with `flags`? On AMX-BF16, yes; with AVX512-BF16 alone the products and softmax win
    (docs/performance.md)."""
    return bool(present(("amx_bf16",), flags))


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
    # The grouped convolution's reference as batched products: fp32's own grouped convolution spends ~40 ms
    # of a start making its kernel.
    expected = torch.bmm(w.view(4, 2, 16), x.view(4, 16, 4)).view(1, 8, 1, 4)  # [G, out/G, in/G] @ [G, in/G, N]
    return bool(torch.equal(got, expected) and torch.equal(scores, torch.bmm(x.view(4, 4, 16), x.view(4, 16, 4))))
