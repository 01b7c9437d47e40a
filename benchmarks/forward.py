"""The model forward alone, against the machine's own fp32 matmul peak, in one process (run as a child).

    python benchmarks/forward.py MODEL_DIR [--rounds N] [--batch 32] [--tokens 128]

Prints one JSON object: GFLOP/s of the peak and of each contender's forward (median over rounds, the
contenders alternating within each round so that load from other processes hits them alike).

The peak is the fastest of the two fp32 matrix-multiply libraries torch carries, MKL (torch.mm) and
oneDNN (the library behind torch's CPU convolutions), each on two products: a square 2048^3 one and
one of BERT's own feed-forward shape (4096 tokens x 768 -> 3072), which oneDNN runs faster than the
square one. On AMD processors MKL does not take its AVX-512 path and reaches about half of what
oneDNN does, so MKL alone would flatter everything measured against it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from processes import DISTURBED_CORES, cpu_busy_seconds, wait_for_quiet  # noqa: E402

from squeezecli.model.encoder import flops_per_token  # noqa: E402
from squeezecli.model.runtime import TOKENS_PER_PASS, Runtime  # noqa: E402

PEAK_SHAPES = {"2048^3": (2048, 2048, 2048), "4096x768x3072": (4096, 768, 3072)}  # M x K x N


def seconds(run: Callable[[], object], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def peak_contenders() -> dict[str, tuple[Callable[[], object], float]]:
    """name -> (run, FLOPs) for each library on each PEAK_SHAPES product."""
    out = {}
    for shape, (m, k, n) in PEAK_SHAPES.items():
        a = torch.randn(m, k)
        b = torch.randn(n, k)
        # A 1x1 convolution over channels-last pixels is the product a @ b^T, computed by oneDNN.
        pixels = a.view(1, m, 1, k).permute(0, 3, 1, 2)  # [1, K, 1, M], channels-last
        weight = b.view(n, k, 1, 1)  # [N, K, 1, 1]
        out[f"peak_mkl_{shape}"] = (lambda a=a, b=b: torch.mm(a, b.t()), 2 * m * k * n)
        out[f"peak_onednn_{shape}"] = (lambda pixels=pixels, weight=weight: F.conv2d(pixels, weight), 2 * m * k * n)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--quiet-wait", type=float, default=0.0, help="Seconds to wait for a quiet machine per round.")
    args = parser.parse_args()
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    runtime = Runtime.from_dir(args.model_dir, "sequence")
    ours = runtime.encoder
    theirs = AutoModelForSequenceClassification.from_pretrained(args.model_dir).eval()
    ids = torch.randint(1000, ours.cfg.vocab_size, (args.batch, args.tokens))  # [B, T]
    mask = torch.ones_like(ids)  # [B, T]
    # The same batch as squeeze's tasks run it: tokenized texts through Runtime.forward, which slices it.
    words = " ".join(["word"] * 2 * args.tokens)
    encodings = runtime.tokenizer.encode([words] * args.batch, max_length=args.tokens)
    assert all(len(e.ids) == args.tokens for e in encodings)
    flops = flops_per_token(ours.cfg, args.tokens) * args.batch * args.tokens

    contenders = peak_contenders()
    contenders["squeeze_fp32"] = (lambda: ours(ids, mask), flops)
    contenders["squeeze_fp32_runtime"] = (lambda: runtime.forward(encodings), flops)
    contenders["transformers_fp32"] = (lambda: theirs(input_ids=ids, attention_mask=mask), flops)
    times: dict[str, list[float]] = {name: [] for name in contenders}
    others: list[float] = []  # cores used by other processes during each round
    with torch.inference_mode():
        for run, _ in contenders.values():  # warm-up: oneDNN builds its kernels on the first call
            run()
        attempts = 0
        while len(others) < args.rounds:
            attempts += 1
            if args.quiet_wait:
                wait_for_quiet(args.quiet_wait)
            busy, mine, start = cpu_busy_seconds(), sum(os.times()[:2]), time.perf_counter()
            measured = {name: seconds(run, 2 if name.startswith("peak") else 1) for name, (run, _) in contenders.items()}
            own = sum(os.times()[:2]) - mine
            disturbed = max(0.0, cpu_busy_seconds() - busy - own) / (time.perf_counter() - start)
            # With a quiet wait, a round other processes disturbed is redone (up to twice as many rounds in all).
            if args.quiet_wait and disturbed > DISTURBED_CORES and attempts < 2 * args.rounds:
                continue
            for name, ts in measured.items():
                times[name] += ts
            others.append(disturbed)
    gflops = {name: contenders[name][1] / statistics.median(ts) / 1e9 for name, ts in times.items()}
    peak = max(value for name, value in gflops.items() if name.startswith("peak"))
    print(json.dumps({
        "threads": torch.get_num_threads(),
        "shape": [args.batch, args.tokens],
        "tokens_per_pass": TOKENS_PER_PASS,
        "gflops": {name: round(value, 1) for name, value in gflops.items()},
        "peak": round(peak, 1),
        "fraction_of_peak": {name: round(value / peak, 3) for name, value in gflops.items()},
        "others_cores": round(statistics.median(others), 2),
    }))


if __name__ == "__main__":
    main()
