"""One contender, alone in its own process: load a model, classify a corpus, report speed and peak memory.

    python benchmarks/contender.py KIND MODEL_DIR CORPUS_FILE [--lines N] [--batch-size 32]

KIND is one of CONTENDERS. Prints one JSON object. Each measurement is a fresh process so that peak RSS
(ru_maxrss) is this contender's own: interpreter, libraries, weights and activations, nothing else.

Every contender first classifies one batch of the corpus untimed (oneDNN and fbgemm build their kernels
on first use), then the whole corpus, timed. squeeze's int8 model must already be in SQUEEZE_CACHE_DIR
(run.py pulls it before any timing), so loading it measures a cached start.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CONTENDERS = ("squeeze-int8", "squeeze-fp32", "transformers", "transformers-int8")


def load_squeeze(model_dir: str, precision: str, batch_size: int) -> Callable[[list[str]], list]:
    sys.path.insert(0, str(ROOT))
    import squeezecli

    return squeezecli.load("sentiment", model=model_dir, precision=precision, batch_size=batch_size)


def load_transformers(model_dir: str, batch_size: int, int8: bool) -> Callable[[list[str]], list]:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    if int8:
        # What a transformers user does for int8 on CPU: dynamic quantization of every nn.Linear (fbgemm).
        model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return pipeline("text-classification", model=model, tokenizer=tokenizer, batch_size=batch_size, device="cpu")


def load(kind: str, model_dir: str, batch_size: int) -> Callable[[list[str]], list]:
    if kind.startswith("squeeze"):
        return load_squeeze(model_dir, kind.removeprefix("squeeze-"), batch_size)
    return load_transformers(model_dir, batch_size, int8=kind.endswith("int8"))


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=CONTENDERS)
    parser.add_argument("model_dir")
    parser.add_argument("corpus")
    parser.add_argument("--lines", type=int, default=None, help="Use only the first N lines.")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    lines = Path(args.corpus).read_text(encoding="utf-8").splitlines()[: args.lines]

    start = time.perf_counter()
    classify = load(args.kind, args.model_dir, args.batch_size)
    load_seconds = time.perf_counter() - start
    rss_loaded = rss_mb()
    classify(lines[: args.batch_size])  # warm-up, untimed
    start = time.perf_counter()
    results = classify(lines)
    run_seconds = time.perf_counter() - start
    assert len(results) == len(lines) and all("label" in r for r in results), results[:3]

    import torch

    print(json.dumps({
        "kind": args.kind,
        "lines": len(lines),
        "threads": torch.get_num_threads(),
        "load_s": round(load_seconds, 3),
        "run_s": round(run_seconds, 3),
        "lines_per_s": round(len(lines) / run_seconds, 2),
        "rss_loaded_mb": round(rss_loaded, 1),
        "peak_rss_mb": round(rss_mb(), 1),
    }))


if __name__ == "__main__":
    main()
