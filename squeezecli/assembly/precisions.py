"""Which precision a run gets on this machine, and which kernels run it: the one place where the name the
user chose (precision/names.py), what this CPU offers (precision/cpu.py), the int8 kernel that works here
(precision/int8.py) and the encoder's own fp32 kernel (model/kernels.py) meet. `doctor` words its kernel
report from here, so it says what `load_runtime` does.
"""

from __future__ import annotations

from ..environment import Environment
from ..errors import ModelError
from ..model.kernels import projection_kernel
from ..precision import cpu
from ..precision.names import AUTO, BF16, FP32, INT8, PRECISIONS


def choose(precision: str, env: Environment) -> tuple[str, str | None]:
    """(the precision a run asked to run at `precision` gets here, its int8 kernel or None).

    auto is what cpu.auto_precision says this CPU runs best; bf16 whose kernels fail their probe, and int8
    without a working kernel (or SQUEEZE_INT8_KERNEL=none), run fp32 with a one-line notice.
    """
    if precision not in PRECISIONS:
        raise ModelError(f"unknown precision {precision!r}", hint=f"use {', '.join(PRECISIONS)}")
    if precision == AUTO:
        precision = cpu.auto_precision().precision
    if precision == BF16 and not cpu.bf16_kernels_work():
        env.notice("torch's bf16 kernels do not run right on this machine: running in fp32")
        precision = FP32
    if precision != INT8:
        return precision, None
    from ..precision import int8  # only for int8 runs: fp32 and bf16 never need it

    backend = int8.int8_backend(env.kernel)
    if backend is None:
        env.notice("no int8 kernel on this machine (or SQUEEZE_INT8_KERNEL=none): running in fp32")
        return FP32, None
    return INT8, backend


def kernels(int8_kernel: str | None) -> dict[str, dict[str, str]]:
    """For `squeeze doctor`: what runs the projections and attention at each precision here, and why.
    `int8_kernel` is int8.int8_backend()'s answer."""
    fp32 = {"projections": projection_kernel(), "attention": "fused SDPA over keys padded to a multiple of 16",
            "why": "exact, the reference"}
    native = cpu.present(cpu.NATIVE_BF16)
    if not cpu.bf16_kernels_work():
        bf16 = {"projections": "fp32", "attention": "fp32", "why": "torch's bf16 kernels failed their probe here"}
    else:
        bf16 = {"projections": "the same in bf16, fp32 residual stream and LayerNorms",
                "attention": "fused SDPA in bf16 (AMX)" if cpu.fused_bf16_attention() else "bf16 batched products + softmax",
                "why": f"native bf16 dot products ({native[0]})" if native else "bf16 is emulated here: slower than fp32"}
    dots = cpu.present(cpu.INT8_DOT_PRODUCTS)
    # Attention between int8 products runs as bf16's where bf16 is auto's choice here (artifact.load_quantized).
    int8_attention = bf16["attention"] if cpu.auto_precision().precision == BF16 else fp32["attention"]
    if int8_kernel == "int_mm":
        int8_row = {"projections": "torch._int_mm, per-token activation scales", "attention": int8_attention,
                    "why": f"int8 dot products ({dots[0]})" if dots else "no int8 dot-product instructions: emulated"}
    else:
        int8_row = {"projections": "fp32", "attention": "fp32", "why": "no working int8 kernel, or SQUEEZE_INT8_KERNEL=none"}
    return {FP32: fp32, BF16: bf16, INT8: int8_row}
