"""What Ray costs and gives on this machine: `squeeze run-distributed` on the local cluster it starts, against
the plain `squeeze sentiment`, on the same lines and model (needs the ray extra).

    python benchmarks/distributed.py                         # 2,000 lines, SqueezeBERT int8, 3 rounds
    python benchmarks/distributed.py --lines 500 --rounds 1 --model distilbert

Every run is a whole process, timed from spawn to exit, so each side pays all it costs a user: Python,
torch, the model load, and for Ray the cluster's start, the workers' start (each loads the model) and
its stop. Each command also runs on an empty file; the difference is the time the lines took, from which
the steady rate follows. The plain command runs with torch's default threads (one per core) and with
one thread, the share each Ray worker gets. Prints a Markdown table; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

import corpus
import models
import processes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=corpus.LINES, help=f"Corpus lines (default {corpus.LINES}).")
    parser.add_argument("--rounds", type=int, default=3, help="Timed rounds, after one untimed (default 3).")
    parser.add_argument("--model", default="squeezebert", choices=list(models.MODELS), help="Model (default squeezebert).")
    args = parser.parse_args()
    models.build_missing([args.model])
    model = str(models.model_dir(args.model))

    with tempfile.TemporaryDirectory(prefix="squeeze-bench-ray-") as scratch:
        root = Path(scratch)
        lines_file = corpus.write(root / "corpus.txt", args.lines)
        empty_file = root / "empty.txt"
        empty_file.write_text("", encoding="utf-8")
        env = processes.child_env(root / "cache")
        plain = processes.SQUEEZE + ["sentiment", "--model", model, "--format", "jsonl", "--quiet"]
        ray = processes.SQUEEZE + ["run-distributed", "sentiment", "--model", model, "--quiet", "--output"]
        commands = {
            "plain": (plain + [str(lines_file)], ""),
            "plain, empty input": (plain + [str(empty_file)], ""),
            "plain 1 thread": (plain + ["--threads", "1", str(lines_file)], ""),
            "plain 1 thread, empty input": (plain + ["--threads", "1", str(empty_file)], ""),
            "ray": (ray + [str(root / "out"), str(lines_file)], ""),
            "ray, empty input": (ray + [str(root / "out-empty"), str(empty_file)], ""),
        }
        processes.log(f"{args.rounds} rounds of {', '.join(commands)} ({args.lines:,} lines, {args.model}), one untimed first")
        runs = processes.interleaved(commands, env, args.rounds)
        written = (root / "out" / "results.jsonl").read_text(encoding="utf-8").count("\n")
        if written != args.lines:
            raise SystemExit(f"run-distributed wrote {written} rows for {args.lines} lines")

    median = {name: statistics.median(run.seconds for run in results) for name, results in runs.items()}
    print(render(median, args))


def render(median: dict[str, float], args: argparse.Namespace) -> str:
    rows = ["| command | whole run, s | lines/s, whole run | fixed cost (empty input), s | lines/s after it |",
            "| --- | --: | --: | --: | --: |"]
    for name, label in (("plain", "squeeze sentiment (one process, torch's 2 threads)"),
                        ("plain 1 thread", "squeeze sentiment --threads 1"),
                        ("ray", "squeeze run-distributed sentiment (local cluster, 2 workers x 1 thread)")):
        whole, fixed = median[name], median[f"{name}, empty input"]
        rows.append(f"| {label} | {whole:.1f} | {args.lines / whole:.0f} | {fixed:.1f} | {args.lines / (whole - fixed):.0f} |")
    title = (f"{args.lines:,} lines, {args.model} int8, median of {args.rounds} rounds, "
             f"load average {os.getloadavg()[0]:.1f} at the end:")
    return "\n".join([title, "", *rows])



if __name__ == "__main__":
    main()
