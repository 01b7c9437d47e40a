"""The model forward alone, against the machine's own matmul peak at each precision, in one process.

    python benchmarks/forward.py MODEL_DIR [--rounds N] [--batch 32] [--tokens 128] [--precisions fp32,bf16,int8]
    python benchmarks/forward.py MODEL_DIR --table      # a Markdown table with the CPU named, not JSON

Prints one JSON object: GFLOP/s (int8: GOP/s) of each peak and of each contender's forward (median over
rounds, the contenders alternating within each round so that load from other processes hits them
alike), and each forward's fraction of the fp32 peak and of its own precision's peak.

The peak is the fastest of the two fp32 matrix-multiply libraries torch carries, MKL (torch.mm) and
oneDNN (the library behind torch's CPU convolutions), each on two products: a square 2048^3 one and
one of BERT's own feed-forward shape (4096 tokens x 768 -> 3072), which oneDNN runs faster than the
square one. On AMD processors MKL does not take its AVX-512 path and reaches about half of what
oneDNN does, so MKL alone would flatter everything measured against it. The bf16 peak is oneDNN's bf16
1x1 convolution and bf16 torch.mm on the same shapes; the int8 peak torch._int_mm (int8 x int8 -> int32),
the kernel squeeze's int8 runs. `products_fp32` / `products_bf16` are the model's own projection
products alone (its packed weights, kernels.project, passes of TOKENS_PER_PASS tokens), and
`fraction_of_own_products` the forward's rate against theirs (issue 27's goal: >= 50%). squeeze's int8
forward is the model as `squeeze models pull` builds it (its calibration may keep some projections
weight-only, which run at fp32 speed).
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
from squeezecli.precision import cpu  # noqa: E402
from squeezecli.model.runtime import TOKENS_PER_PASS, Runtime  # noqa: E402

PEAK_SHAPES = {"2048^3": (2048, 2048, 2048), "4096x768x3072": (4096, 768, 3072)}  # M x K x N


def seconds(run: Callable[[], object], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def peak_contenders(precisions: list[str]) -> dict[str, tuple[Callable[[], object], float]]:
    """name -> (run, FLOPs) for each library on each PEAK_SHAPES product, at each precision."""
    out = {}
    for shape, (m, k, n) in PEAK_SHAPES.items():
        a = torch.randn(m, k)
        b = torch.randn(n, k)
        # A 1x1 convolution over channels-last pixels is the product a @ b^T, computed by oneDNN.
        pixels = a.view(1, m, 1, k).permute(0, 3, 1, 2)  # [1, K, 1, M], channels-last
        weight = b.view(n, k, 1, 1)  # [N, K, 1, 1]
        flops = 2 * m * k * n
        out[f"peak_mkl_{shape}"] = (lambda a=a, b=b: torch.mm(a, b.t()), flops)
        out[f"peak_onednn_{shape}"] = (lambda pixels=pixels, weight=weight: F.conv2d(pixels, weight), flops)
        if "bf16" in precisions:
            pb, wb, ab, bb = pixels.bfloat16(), weight.bfloat16(), a.bfloat16(), b.t().contiguous().bfloat16()
            out[f"peak_bf16_conv_{shape}"] = (lambda pb=pb, wb=wb: F.conv2d(pb, wb), flops)
            out[f"peak_bf16_mm_{shape}"] = (lambda ab=ab, bb=bb: torch.mm(ab, bb), flops)
        if "int8" in precisions:
            qa = torch.randint(-127, 128, (m, k), dtype=torch.int8)
            qb = torch.randint(-127, 128, (k, n), dtype=torch.int8)
            out[f"peak_int8_int_mm_{shape}"] = (lambda qa=qa, qb=qb: torch._int_mm(qa, qb), flops)
    return out


def own_products(encoder, tokens: int) -> tuple[Callable[[], object], float]:
    """(run, FLOPs) of the encoder's own projection products alone, at its own shapes, with its own packed
    weights and kernel (kernels.project), in passes of TOKENS_PER_PASS tokens: the rate the forward's
    products reach with nothing else around them."""
    from squeezecli.model import kernels
    from squeezecli.model.projection import GroupedProjection

    projections = [m for m in encoder.modules() if type(m) is GroupedProjection and m is not encoder.head]
    inputs = {p.in_features: torch.randn(TOKENS_PER_PASS, p.in_features).to(p.input_dtype) for p in projections}
    passes = max(1, tokens // TOKENS_PER_PASS)
    flops = 2 * TOKENS_PER_PASS * passes * sum(p.in_features * p.out_features // p.groups for p in projections)

    def run() -> None:
        for _ in range(passes):
            for p in projections:
                kernels.project(inputs[p.in_features], p.weight, p.bias, p.groups)

    return run, flops


def peak_of(precision: str, gflops: dict[str, float]) -> float:
    prefixes = ("peak_mkl_", "peak_onednn_") if precision == "fp32" else (f"peak_{precision}_",)
    return max(value for name, value in gflops.items() if name.startswith(prefixes))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--quiet-wait", type=float, default=0.0, help="Seconds to wait for a quiet machine per round.")
    parser.add_argument("--precisions", default="fp32", help="Comma-separated: fp32, bf16, int8 (default fp32).")
    parser.add_argument("--table", action="store_true", help="Print a Markdown table instead of JSON.")
    args = parser.parse_args()
    precisions = args.precisions.split(",")
    from transformers import AutoModelForSequenceClassification

    from squeezecli.assembly import loader

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

    contenders = peak_contenders(precisions)
    contenders["squeeze_fp32"] = (lambda: ours(ids, mask), flops)
    contenders["squeeze_fp32_runtime"] = (lambda: runtime.forward(encodings), flops)
    for precision in precisions:
        if precision != "fp32":
            encoder = loader.load_runtime(args.model_dir, "sequence", precision=precision).encoder
            contenders[f"squeeze_{precision}"] = (lambda encoder=encoder: encoder(ids, mask), flops)
        if precision in ("fp32", "bf16"):
            own = ours if precision == "fp32" else encoder
            contenders[f"products_{precision}"] = own_products(own, args.batch * args.tokens)
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
    peaks = {precision: peak_of(precision, gflops) for precision in precisions}
    report = {
        "cpu": cpu.cpu_name(),
        "flags": cpu.present(cpu.REPORTED),
        "threads": torch.get_num_threads(),
        "shape": [args.batch, args.tokens],
        "tokens_per_pass": TOKENS_PER_PASS,
        "gflops": {name: round(value, 1) for name, value in gflops.items()},
        "peak": round(peaks["fp32"], 1),
        "peaks": {precision: round(value, 1) for precision, value in peaks.items()},
        "fraction_of_peak": {name: round(value / peaks["fp32"], 3) for name, value in gflops.items()},
        "fraction_of_own_peak": {name: round(gflops[name] / peaks[name.split("_")[1]], 3)
                                 for name in gflops if name.startswith("squeeze_")},
        # The issue-27 goal: the forward's rate against its own products' rate at the model's shapes.
        "fraction_of_own_products": {f"squeeze_{p}": round(gflops[f"squeeze_{p}"] / gflops[f"products_{p}"], 3)
                                     for p in ("fp32", "bf16") if f"products_{p}" in gflops},
        "others_cores": round(statistics.median(others), 2),
    }
    print(table(report) if args.table else json.dumps(report))


def table(report: dict) -> str:
    out = [f"CPU: {report['cpu']} ({', '.join(report['flags'])}), {report['threads']} threads; "
           f"forward at {report['shape'][0]} x {report['shape'][1]} tokens; others used {report['others_cores']:.2f} cores.",
           "", "| | GFLOP/s (int8: GOP/s) | of fp32 peak | of its precision's peak | of its own products' rate |",
           "|---|---:|---:|---:|---:|"]
    for name, value in report["gflops"].items():
        own = report["fraction_of_own_peak"].get(name)
        products = report["fraction_of_own_products"].get(name)
        out.append(f"| {name} | {value:.0f} | {report['fraction_of_peak'][name]:.0%} | "
                   f"{'' if own is None else f'{own:.0%}'} | {'' if products is None else f'{products:.0%}'} |")
    return "\n".join(out)


if __name__ == "__main__":
    main()
