"""A peer as a user would run it: lines on stdin through ONNX Runtime or OpenVINO, JSON lines on stdout.

    python benchmarks/peer.py ort|ort-int8|openvino|openvino-f32 MODEL.onnx TOKENIZER_DIR classify|embed

What squeeze's CLI does around the model, done the same way, so that whole processes compare: the
same tokenizer (squeezecli's, which matches transformers'), windows of 8 batches sorted by length,
batches of 32, truncation to 128 tokens, 2 threads; a classifier prints the best label and its softmax
score, an embedder the mean-pooled, unit-length vector (all-MiniLM-L6-v2's sentence-transformers
pipeline). Input order is kept.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's squeezecli (tokenizer only)

from squeezecli.model.tokenizer import Tokenizer  # noqa: E402

BATCH, WINDOW, MAX_LENGTH, THREADS = 32, 8 * 32, 128, 2


def session(engine: str, model: Path):
    """A callable from a dict of int64 arrays to the model's first output."""
    if engine.startswith("ort"):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = THREADS, 1
        sess = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        names = {i.name for i in sess.get_inputs()}
        return lambda feed: sess.run(None, {k: v for k, v in feed.items() if k in names})[0]
    import openvino as ov

    core = ov.Core()
    config = {"INFERENCE_NUM_THREADS": THREADS}
    if engine == "openvino-f32":
        config["INFERENCE_PRECISION_HINT"] = "f32"
    compiled = core.compile_model(core.read_model(str(model)), "CPU", config)
    request = compiled.create_infer_request()
    names = {port.get_any_name() for port in compiled.inputs}
    return lambda feed: request.infer({k: v for k, v in feed.items() if k in names})[compiled.outputs[0]].copy()


def main() -> None:
    engine, model, tokenizer_dir, task = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
    run = session(engine, model)
    tokenizer = Tokenizer.from_dir(tokenizer_dir)
    out = sys.stdout
    window: list[str] = []

    def flush() -> None:
        encodings = tokenizer.encode(window, max_length=MAX_LENGTH)
        order = sorted(range(len(window)), key=lambda i: len(encodings[i].ids))
        results: list[str] = [""] * len(window)
        for start in range(0, len(order), BATCH):
            rows = [encodings[i] for i in order[start:start + BATCH]]
            width = max(len(e.ids) for e in rows)
            feed = {
                "input_ids": np.array([e.ids + [tokenizer.pad_id] * (width - len(e.ids)) for e in rows], dtype=np.int64),
                "attention_mask": np.array([e.attention_mask + [0] * (width - len(e.ids)) for e in rows], dtype=np.int64),
                "token_type_ids": np.array([e.type_ids + [0] * (width - len(e.ids)) for e in rows], dtype=np.int64),
            }
            output = run(feed).astype(np.float32)
            if task == "classify":
                probs = np.exp(output - output.max(-1, keepdims=True))
                probs /= probs.sum(-1, keepdims=True)
                lines = [json.dumps({"label": int(p.argmax()), "score": float(p.max())}) for p in probs]
            else:
                mask = feed["attention_mask"][..., None].astype(np.float32)
                vectors = (output * mask).sum(1) / np.clip(mask.sum(1), 1e-9, None)
                vectors /= np.linalg.norm(vectors, axis=-1, keepdims=True)
                lines = [json.dumps({"embedding": v.tolist()}) for v in vectors]
            for i, line in zip(order[start:start + BATCH], lines):
                results[i] = line
        out.write("\n".join(results) + "\n")
        out.flush()
        window.clear()

    for line in sys.stdin:
        if line.strip():
            window.append(line.rstrip("\n"))
            if len(window) == WINDOW:
                flush()
    if window:
        flush()


if __name__ == "__main__":
    main()
