"""Peak memory and time of top-k over similarity indexes of growing size: squeeze's block scan
(tasks/search.py) against a numpy brute force that loads every vector, each in its own process.

    python benchmarks/index_memory.py [--sizes 100000,1000000] [--queries 32] [-k 10]

The indexes hold random unit vectors (384 dimensions, as all-MiniLM-L6-v2's), written through the same
library code `squeeze index build` uses; no model runs, so the figures are the search's alone. A
baseline process (`import torch`, the index opened) is measured too: the scan's own memory is its peak
above that. The table names the CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import processes

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DIMENSION = 384
HERE = str(Path(__file__).resolve())


def build(path: Path, rows: int, kind: str) -> None:
    import torch

    from squeezecli.io import index as index_file
    from squeezecli.tasks import search

    generator = torch.Generator().manual_seed(0)
    meta = {"model": "benchmark/random", "commit": None, "name": "random", "precision": "fp32", "dimension": DIMENSION,
            "vectors": kind, "pooling": ["mean"], "normalize": True, "max_length": 256, "chunk": None, "overlap": 0}
    with index_file.creating(path, meta, force=True) as index:
        for first in range(0, rows, 50_000):
            block = torch.randn(min(50_000, rows - first), DIMENSION, generator=generator)
            scales, raw = search.encode(block, kind)
            width = len(raw) // len(block)
            index.append([(f"item {first + i}", "{}", None, None, None, scale, raw[i * width:(i + 1) * width])
                          for i, scale in enumerate(scales)])


def scan(path: str, queries: int, k: int, mode: str) -> None:
    """One measured process: open the index, then (unless `mode` is "baseline") answer the queries."""
    import torch

    from squeezecli.io import index as index_file
    from squeezecli.tasks import search

    index = index_file.open_index(path)
    vectors = torch.randn(queries, DIMENSION, generator=torch.Generator().manual_seed(1))
    start = time.perf_counter()
    if mode == "squeeze":
        found = [ranked[0][0] for ranked in search.top_k(index, vectors, k)]
    elif mode == "numpy":
        import numpy as np

        kind = {"int8": np.int8, "float16": "<f2", "float32": "<f4"}[index.meta["vectors"]]
        ids, scales, stored = [], [], []
        for block_ids, block_scales, raw in index.blocks(1 << 30):  # everything at once
            ids, scales, stored = block_ids, block_scales, np.frombuffer(raw, dtype=kind).reshape(len(block_ids), -1)
        matrix = stored.astype(np.float32) * np.asarray(scales, dtype=np.float32)[:, None]
        unit = vectors.numpy() / np.linalg.norm(vectors.numpy(), axis=1, keepdims=True)
        scores = unit @ matrix.T
        found = [ids[int(row.argmax())] for row in scores]
    else:
        found = []
    print(json.dumps({"seconds": time.perf_counter() - start, "first": found}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--vectors", default="float16,int8")
    parser.add_argument("--queries", type=int, default=32)
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--scan", nargs=2, metavar=("INDEX", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.scan:
        scan(args.scan[0], args.queries, args.k, args.scan[1])
        return
    from squeezecli.precision import cpu

    rows = []
    with tempfile.TemporaryDirectory(prefix="squeeze-index-") as scratch:
        env = processes.child_env(Path(scratch) / "cache")
        for kind in args.vectors.split(","):
            for size in (int(s) for s in args.sizes.split(",")):
                path = Path(scratch) / f"{kind}-{size}.sqidx"
                processes.log(f"building {size:,} {kind} vectors")
                build(path, size, kind)
                measured = {}
                for mode in ("baseline", "squeeze", "numpy"):
                    finished = processes.measure([sys.executable, HERE, "--scan", str(path), mode,
                                                  "--queries", str(args.queries), "-k", str(args.k)], env).check(mode)
                    measured[mode] = (finished.peak_rss_mb, json.loads(finished.stdout))
                assert measured["squeeze"][1]["first"] == measured["numpy"][1]["first"], "the two scans disagree"
                rows.append((kind, size, path.stat().st_size, measured))
                processes.log(f"{kind} {size:,}: squeeze {measured['squeeze'][0]:.0f} MB, numpy {measured['numpy'][0]:.0f} MB")
    from squeezecli.tasks.search import BLOCK_ROWS

    print(f"CPU: {cpu.cpu_name()}; {args.queries} queries, top-{args.k}, {DIMENSION} dimensions, blocks of "
          f"{BLOCK_ROWS:,} vectors. Peak RSS of the whole process; 'scan' is the peak above the baseline process "
          f"(torch imported, index opened).\n")
    print("| vectors | items | file | squeeze time | squeeze peak RSS (scan) | numpy brute force time | numpy peak RSS (scan) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for kind, size, file_size, m in rows:
        base = m["baseline"][0]
        print(f"| {kind} | {size:,} | {file_size / 1e6:.0f} MB | {m['squeeze'][1]['seconds']:.2f} s | "
              f"{m['squeeze'][0]:.0f} MB ({m['squeeze'][0] - base:+.0f}) | {m['numpy'][1]['seconds']:.2f} s | "
              f"{m['numpy'][0]:.0f} MB ({m['numpy'][0] - base:+.0f}) |")


if __name__ == "__main__":
    main()
