"""squeeze against transformers on this machine: throughput, memory, forward efficiency, start-up.

    python benchmarks/run.py            # everything: 3 models x 4 contenders x 3 rounds (about 50 minutes on 2 cores)
    python benchmarks/run.py --quick    # 200 lines, SqueezeBERT only, 2 rounds (a few minutes)
    python benchmarks/run.py --quiet-wait 60   # before each measurement, wait up to 60 s for an idle CPU

Needs the test extra (transformers). Prints a Markdown report and writes it to benchmarks/out/results.md.
Every figure is a median over rounds in which the contenders take turns (the order rotating each round),
so load from other processes on a shared machine lands on all of them alike; the report says how much CPU
other processes used while the measurements ran.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
from pathlib import Path

import corpus
import models
import processes
from contender import CONTENDERS

ONE_LINE = "The staff were friendly and the room was clean, but the food was awful.\n"
BASELINE = "transformers"  # every speed and memory ratio is against transformers' own pipeline, fp32


def main() -> None:
    args = parse_args()
    names = args.models.split(",") if args.models else (["squeezebert"] if args.quick else list(models.MODELS))
    lines = args.lines or (200 if args.quick else corpus.LINES)
    rounds = args.rounds or (2 if args.quick else 3)
    # The forward and whole-process measurements run SqueezeBERT, whatever --models says.
    needed = sorted(set(names) | ({"squeezebert"} if not (args.skip_forward and args.skip_startup) else set()))
    processes.run([processes.PYTHON, str(Path(__file__).with_name("models.py")), *needed], os.environ).check(
        "building the models")
    corpus_file = corpus.write(models.OUT / "corpus.txt", lines)
    load_before = os.getloadavg()[0]

    wait = args.quiet_wait
    with tempfile.TemporaryDirectory(prefix="squeeze-bench-cache-") as cache:
        env = processes.child_env(Path(cache))
        int8_errors = pull_int8(needed, env)
        throughput = measure_throughput(names, corpus_file, lines, rounds, env, int8_errors, wait)
        forward = None if args.skip_forward else measure_forward(env, max(rounds, 3), wait)
        startup = None if args.skip_startup else measure_startup(env, int8_errors, max(2 * rounds, 5), wait)

    report = render(names, lines, rounds, throughput, forward, startup, int8_errors, load_before, os.getloadavg()[0])
    print(report)
    (models.OUT / "results.md").write_text(report, encoding="utf-8")
    raw = {"throughput": {f"{n} {k}": rows for (n, k), rows in throughput.items()}, "forward": forward, "startup": startup}
    (models.OUT / "results.json").write_text(json.dumps(raw, indent=1), encoding="utf-8")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="200 lines, SqueezeBERT only, 2 rounds.")
    parser.add_argument("--models", help=f"Comma-separated, from: {', '.join(models.MODELS)}.")
    parser.add_argument("--lines", type=int, help=f"Corpus lines (default {corpus.LINES}; --quick 200).")
    parser.add_argument("--rounds", type=int, help="Rounds of the sentiment runs (default 3; --quick 2); the forward pass takes at "
                        "least 3, the whole processes at least 5.")
    parser.add_argument("--skip-forward", action="store_true", help="No forward-alone GFLOP/s measurement.")
    parser.add_argument("--skip-startup", action="store_true", help="No whole-process start-up timings.")
    parser.add_argument("--quiet-wait", type=float, default=0.0, metavar="SECONDS",
                        help="Before each measurement, wait up to this long for other processes to leave the CPU idle.")
    return parser.parse_args()


# Without an int8 kernel squeeze runs an int8 entry dequantized (fp32 speed) with only a notice: here
# that is a failure, so that no fp32 figure is reported as int8.
PULL_INT8 = (
    "import sys, squeezecli; from squeezecli.precision import int8 as quantize; "
    "assert quantize.int8_backend(), 'no int8 kernel in this torch'; "
    "squeezecli.load('sentiment', model=sys.argv[1])"
)


def pull_int8(names: list[str], env: dict[str, str]) -> dict[str, str]:
    """Quantize each model into squeeze's (temporary) cache before anything is timed; model -> error."""
    errors = {}
    for name in names:
        processes.log(f"pulling {name} into squeeze's cache (int8, untimed)")
        finished = processes.run(
            [processes.PYTHON, "-c", PULL_INT8, str(models.model_dir(name))], env)
        if finished.status != 0:
            errors[name] = finished.stderr.strip().splitlines()[-1] if finished.stderr.strip() else "failed"
            processes.log(f"  squeeze int8 unavailable for {name}: {errors[name]}")
    return errors


def measure_throughput(
    names: list[str], corpus_file: Path, lines: int, rounds: int, env: dict[str, str], int8_errors: dict[str, str],
    quiet_wait: float,
) -> dict[tuple[str, str], list[dict]]:
    """(model, contender) -> one result per round; each run is its own process (contender.py)."""
    script = str(Path(__file__).with_name("contender.py"))
    kinds = list(CONTENDERS)
    results: dict[tuple[str, str], list[dict]] = {(n, k): [] for n in names for k in kinds}
    for round_index in range(rounds):
        order = kinds[round_index % len(kinds):] + kinds[: round_index % len(kinds)]
        for name in names:
            for kind in order:
                if kind == "squeeze-int8" and name in int8_errors:
                    continue
                processes.log(f"round {round_index + 1}/{rounds}: {name} {kind}")
                finished = processes.measure(
                    [processes.PYTHON, script, kind, str(models.model_dir(name)), str(corpus_file), "--lines", str(lines)],
                    env, quiet_wait=quiet_wait,
                ).check(f"{kind} on {name}")
                results[(name, kind)].append(
                    dict(json.loads(finished.stdout), process_rss_mb=finished.peak_rss_mb, others_cores=finished.others_cores)
                )
    return results


def measure_forward(env: dict[str, str], rounds: int, quiet_wait: float) -> dict:
    processes.log("forward alone at 32 x 128 tokens against the fp32 matmul peak")
    finished = processes.run(
        [processes.PYTHON, str(Path(__file__).with_name("forward.py")), str(models.model_dir("squeezebert")),
         "--rounds", str(rounds), "--quiet-wait", str(quiet_wait)], env,
    ).check("forward.py")
    return json.loads(finished.stdout)


SQUEEZE_ONE_LINE = "squeeze sentiment, one line ({}, cached)"
HF_ONE_LINE = "transformers pipeline script, one line"


def measure_startup(env: dict[str, str], int8_errors: dict[str, str], rounds: int, quiet_wait: float) -> dict:
    processes.log("whole processes: --help, and one line through squeeze sentiment and a transformers script")
    model = str(models.model_dir("squeezebert"))
    precisions = ["fp32"] if "squeezebert" in int8_errors else ["int8", "fp32"]
    one_line = {p: processes.SQUEEZE + ["sentiment", "--model", model, "--precision", p] for p in precisions}
    commands = {
        "python -c pass": ([processes.PYTHON, "-c", "pass"], ""),
        "python -c 'import torch'": ([processes.PYTHON, "-c", "import torch"], ""),
        "squeeze --help": (processes.SQUEEZE + ["--help"], ""),
        **{SQUEEZE_ONE_LINE.format(p): (argv, ONE_LINE) for p, argv in one_line.items()},
        HF_ONE_LINE: (processes.HF_ONE_LINE + [model], ONE_LINE),
    }
    runs = processes.interleaved(commands, env, rounds, quiet_wait)
    return {
        "rounds": rounds,
        "median_s": {name: statistics.median(r.seconds for r in rs) for name, rs in runs.items()},
        "peak_rss_mb": {name: statistics.median(r.peak_rss_mb for r in rs) for name, rs in runs.items()},
        "others_cores": statistics.median(r.others_cores for rs in runs.values() for r in rs),
        "imports": processes.import_profile(one_line[precisions[0]], env, ONE_LINE),
        "import_precision": precisions[0],
    }


# -- report ----------------------------------------------------------------------------------------


def med(rows: list[dict], key: str) -> float:
    return statistics.median(row[key] for row in rows)


FORWARD_LABELS = {
    "squeeze_fp32": "squeeze fp32, one encoder pass",
    "squeeze_fp32_runtime": "squeeze fp32, as its tasks run it (Runtime.forward: {:,}-token passes)",
    "transformers_fp32": "transformers fp32, one pass",
}


def render(names, lines, rounds, throughput, forward, startup, int8_errors, load_before, load_after) -> str:
    import torch
    import transformers

    from squeezecli.precision import cpu

    others = [row["others_cores"] for rows in throughput.values() for row in rows]
    out = [
        "## Benchmarks",
        "",
        f"Machine: {cpu.cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"transformers {transformers.__version__}, Python {platform.python_version()}. "
        f"Load average {load_before:.1f} at the start, {load_after:.1f} at the end; while the sentiment runs were "
        f"timed, other processes used {statistics.median(others):.2f} cores (median; max {max(others):.2f}) of "
        f"{os.cpu_count()}.",
        "",
        f"### Sentiment over {lines:,} lines (batch 32), median of {rounds} rounds",
        "",
        "Random-weight checkpoints in the real configurations (speed depends on shapes, not values); each run",
        "is a fresh process that loads the model, classifies one batch untimed, then the whole corpus.",
        f"\"others' CPU\" is the median number of cores other processes kept busy during the runs (of {os.cpu_count()}).",
        "",
        "| model | contender | lines/s | vs transformers | peak RSS (MB) | RSS vs transformers | load (s) | others' CPU |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in names:
        base = throughput[(name, BASELINE)]
        for kind in CONTENDERS:
            rows = throughput[(name, kind)]
            if not rows:
                out.append(f"| {name} | {kind} | n/a: {int8_errors.get(name, 'not run')} | | | | | |")
                continue
            speed, rss = med(rows, "lines_per_s"), med(rows, "peak_rss_mb")
            out.append(
                f"| {name} | {kind} | {speed:.1f} | {speed / med(base, 'lines_per_s'):.2f}x | {rss:.0f} | "
                f"{rss / med(base, 'peak_rss_mb'):.0%} | {med(rows, 'load_s'):.1f} | {med(rows, 'others_cores'):.2f} |"
            )
    if forward:
        g, f = forward["gflops"], forward["fraction_of_peak"]
        out += [
            "",
            f"### Forward alone: SqueezeBERT fp32, {forward['shape'][0]} x {forward['shape'][1]} tokens",
            "",
            "The peak is the fastest fp32 matrix product measured in the same process, alternating with the",
            "forwards: MKL (torch.mm) and oneDNN (a 1x1 convolution), each on a square 2048^3 product and on",
            f"BERT's feed-forward shape (M x K x N). Other processes used {forward['others_cores']:.2f} cores meanwhile.",
            "",
            "| | GFLOP/s | of peak |",
            "|---|---:|---:|",
        ]
        for name, value in g.items():
            label = FORWARD_LABELS.get(name, "").format(forward["tokens_per_pass"]) or name.replace("peak_mkl_", "fp32 matmul, MKL, ").replace(
                "peak_onednn_", "fp32 matmul, oneDNN, ")
            out.append(f"| {label} | {value:.0f} | {f[name]:.0%} |")
    if startup:
        out += [
            "",
            f"### Whole processes, median of {startup['rounds']} runs",
            "",
            f"Other processes used {startup['others_cores']:.2f} cores (median) while these ran.",
            "",
            "| command | wall time (ms) | peak RSS (MB) |",
            "|---|---:|---:|",
        ]
        for name, seconds in startup["median_s"].items():
            out.append(f"| `{name}` | {seconds * 1000:.0f} | {startup['peak_rss_mb'][name]:.0f} |")
        imports = ", ".join(f"{module} {ms:.0f}" for module, ms in startup["imports"][:8])
        out += ["", f"Slowest imports of the one-line squeeze run ({startup['import_precision']}; cumulative ms): {imports}."]
    out += ["", *render_goals(throughput, forward, startup, names)]
    return "\n".join(out) + "\n"


def render_goals(throughput, forward, startup, names) -> list[str]:
    def speed(name: str, kind: str) -> float | None:
        rows = throughput.get((name, kind))
        return med(rows, "lines_per_s") if rows else None

    def rss(name: str, kind: str) -> float | None:
        rows = throughput.get((name, kind))
        return med(rows, "peak_rss_mb") if rows else None

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b is not None else None

    goals: list[tuple[str, float | None, str, bool]] = []
    r = ratio(speed("squeezebert", "squeeze-int8"), speed("squeezebert", BASELINE))
    goals.append(("squeeze int8 SqueezeBERT vs transformers pipeline, same weights", r, ">= 3x", r is not None and r >= 3))
    if "bert-base" in names:
        r = ratio(speed("squeezebert", "squeeze-int8"), speed("bert-base", BASELINE))
        goals.append(("squeeze int8 SqueezeBERT vs transformers pipeline on BERT-base", r, ">= 4x", r is not None and r >= 4))
    if forward:
        for key, how in (("squeeze_fp32", "one encoder pass"), ("squeeze_fp32_runtime", "Runtime.forward")):
            r = forward["fraction_of_peak"][key]
            goals.append((f"squeeze fp32 SqueezeBERT forward at 32x128 ({how}), of fp32 matmul peak", r, ">= 80%",
                          r >= 0.8))
    if startup:
        times = startup["median_s"]
        help_ms = times["squeeze --help"] * 1000
        goals.append(("`squeeze --help`, whole process (ms)", help_ms, "< 150", help_ms < 150))
        for precision in ("int8", "fp32"):
            one = times.get(SQUEEZE_ONE_LINE.format(precision))
            if one is not None:
                r = one / times[HF_ONE_LINE]
                goals.append((f"one line: squeeze sentiment ({precision}) vs transformers script, time", r, "<= 0.5x",
                              r <= 0.5))
    r = ratio(rss("squeezebert", "squeeze-int8"), rss("squeezebert", BASELINE))
    goals.append(("peak RSS, squeeze int8 vs transformers pipeline (SqueezeBERT)", r, "<= 40%", r is not None and r <= 0.4))

    lines = ["### Goals", "", "| goal | target | measured | met |", "|---|---|---:|:---:|"]
    for what, value, target, met in goals:
        shown = "n/a" if value is None else f"{value:.0%}" if "%" in target else f"{value:.2f}x" if "x" in target else f"{value:.0f}"
        lines.append(f"| {what} | {target} | {shown} | {'n/a' if value is None else 'yes' if met else 'no'} |")
    return lines


if __name__ == "__main__":
    main()
