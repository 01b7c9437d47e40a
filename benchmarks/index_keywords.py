"""What keyword search adds to a similarity index: the file size with and without the FTS5 table of the
texts, and the mean time of a keyword query (io/index.py's Index.keyword_top_k).

    python benchmarks/index_keywords.py [--texts 100000]

The texts are tests/sentences.py's varied sentences, appended as `squeeze index build` appends them
(blocks of 10,000, float16 384-dimensional vectors of zeros: no model runs, the vectors' size is the
real one); "without" is the same file with the table dropped and VACUUMed, as an index of format 1 is.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

QUERIES = ["the cat sat", "Paris museum", "engine program Lovelace", "résumé café", "tokyo"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=100_000)
    args = parser.parse_args()
    import sentences

    from squeezecli.io import index as index_file
    from squeezecli.precision.cpu import cpu_name

    texts = sentences.varied(args.texts, seed=1)
    dimension = 384
    with tempfile.TemporaryDirectory() as scratch:
        path, old = Path(scratch) / "keywords.sqidx", Path(scratch) / "dense.sqidx"
        meta = {"model": "x", "commit": None, "name": "x", "precision": "fp32", "dimension": dimension,
                "vectors": "float16", "pooling": ["mean"], "normalize": True, "max_length": 256, "chunk": None,
                "overlap": 0}
        with index_file.creating(path, meta) as index:
            vector = b"\0" * (2 * dimension)
            for first in range(0, len(texts), 10_000):
                index.append([(text, json.dumps({"file": "corpus.txt", "line": first + i + 1}), None, None, None, 1.0,
                               vector) for i, text in enumerate(texts[first:first + 10_000])])
        shutil.copy(path, old)
        db = sqlite3.connect(old)
        db.execute("DROP TABLE texts")
        db.commit()
        db.execute("VACUUM")
        db.close()
        with_table, without = os.path.getsize(path), os.path.getsize(old)
        index = index_file.open_index(path)
        start = time.perf_counter()
        for query in QUERIES * 20:
            index.keyword_top_k(query, 10)
        mean = (time.perf_counter() - start) / (len(QUERIES) * 20)
    print(f"CPU: {cpu_name() or platform.processor()}; {len(texts):,} texts, {sum(map(len, texts)) / 1e6:.1f} M "
          f"characters, float16 {dimension}-d vectors")
    print(f"without the FTS table {without / 1e6:.1f} MB, with it {with_table / 1e6:.1f} MB "
          f"(+{(with_table - without) / 1e6:.1f} MB, {100 * (with_table - without) / without:.0f}%); "
          f"keyword query (top 10) {mean * 1000:.1f} ms mean over {len(QUERIES) * 20}")


if __name__ == "__main__":
    main()
