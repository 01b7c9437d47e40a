"""Whether `--precision auto` runs a model's cached int8 entry: measured once, when the entry is built, on
the machine that builds it, and recorded in the entry (its metadata's "auto"); read at every auto run.

auto runs the cached int8 entry where the record was made on this CPU (the same model name, flags and
torch: `cpu.fingerprint`) and says int8 won there: at least SPEEDUP times the speed of what auto runs
otherwise (bf16 where native, else fp32), measured on the calibration sample, and as faithful to fp32 as
auto's own floors ask (labels: the same label for LABEL_FLOOR of the sample's texts; vectors and spans:
a cosine of COSINE_FLOOR, bf16's floor). Anywhere else auto is cpu.auto_precision's choice. A model
never pulled has no entry, so auto never quantizes by itself: `squeeze models pull` (or one int8 run)
makes the entry, and with it the measurement. Torch-free at import: the CLI's loading line asks too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..checkpoint import heads
from ..precision import cpu
from ..precision.names import INT8

SPEEDUP = 1.1  # int8 over auto's other choice, lines/s on the calibration sample: beyond timing noise
LABEL_FLOOR = 0.995  # texts (tokens, for a token head) whose label int8 keeps
COSINE_FLOOR = 0.9999  # mean cosine to fp32 of what the head reads (bf16's floor: tests/test_precision.py)
ROUNDS = 3  # timed rounds, interleaved; the fastest of each counts


def picks_int8(meta: dict | None) -> bool:
    """Does an entry's metadata say auto runs int8 on this CPU?"""
    record = (meta or {}).get("auto")
    return isinstance(record, dict) and record.get("picks") == INT8 and record.get("cpu") == cpu.fingerprint()


def measure(runs: dict[str, Callable[[], list[Any]]], head: str, other: str) -> dict[str, Any]:
    """The record for an entry: `runs` maps "fp32", "int8" and `other` (auto's choice without int8) to a
    function running the model over the calibration sample, returning per batch what the head gives for
    each item ([items, features]: a text's logits or pooled vector, a real token's logits)."""
    reference, got = runs["fp32"](), runs[INT8]()
    seconds = {name: float("inf") for name in (INT8, other)}
    for _ in range(ROUNDS):
        for name in seconds:
            start = time.perf_counter()
            runs[name]()
            seconds[name] = min(seconds[name], time.perf_counter() - start)
    speedup = seconds[other] / seconds[INT8]
    measure_name, value, floor = _fidelity(reference, got, head)
    picks = INT8 if speedup >= SPEEDUP and value >= floor else other
    return {
        "cpu": cpu.fingerprint(),
        "against": other,
        "speedup": round(speedup, 3),
        "fidelity": {"measure": measure_name, "value": round(value, 5), "floor": floor},
        "picks": picks,
        "rule": f"int8 where it runs >= {SPEEDUP}x {other}'s speed here and meets the floor",
    }


def _fidelity(reference: list[Any], got: list[Any], head: str) -> tuple[str, float, float]:
    """(what, int8's value, its floor): labels kept for label heads, else the mean cosine of the outputs."""
    import torch
    import torch.nn.functional as F

    if head in (heads.SEQUENCE, heads.TOKEN):
        same = [a.argmax(-1) == b.argmax(-1) for a, b in zip(reference, got)]
        return "labels equal to fp32's", torch.cat(same).float().mean().item(), LABEL_FLOOR
    cosines = [F.cosine_similarity(a.float(), b.float(), dim=-1) for a, b in zip(reference, got)]
    return "mean cosine to fp32", torch.cat(cosines).mean().item(), COSINE_FLOOR
