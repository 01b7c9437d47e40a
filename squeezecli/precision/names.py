"""The precision vocabulary: the names `--precision` takes and what each means. One home for the CLI's
choices and help, the loader's checks and doctor's report. Imports nothing.
"""

from __future__ import annotations

from typing import Literal, get_args

Precision = Literal["auto", "bf16", "int8", "fp32"]
PRECISIONS: tuple[str, ...] = get_args(Precision)  # what --precision takes, in the order help lists them
AUTO, BF16, INT8, FP32 = PRECISIONS
# The precisions that run the original checkpoint (bf16 with its products cast as they load); int8 runs
# squeeze's cached artifact; auto is resolved per CPU (cpu.auto_precision), or per pulled model
# (assembly/auto.py), into one of these.
CHECKPOINT_PRECISIONS = (FP32, BF16)
MEANINGS = {
    AUTO: "what this CPU runs fastest within fidelity (bf16 where it has native bf16, else fp32; a pulled "
          "model's int8 where it measured faster here)",
    BF16: "bf16 products, fp32 elsewhere",
    INT8: "the 4x smaller quantized model",
    FP32: "exact",
}


def help_text() -> str:
    """--precision's help: each name and what it means."""
    return "; ".join(f"{name}: {MEANINGS[name]}" for name in PRECISIONS) + "."
