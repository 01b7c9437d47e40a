"""The peers' models: each benchmark checkpoint exported to ONNX from the same weights squeeze runs, as a
user of ONNX Runtime or OpenVINO would make it, and its dynamic int8 version for ONNX Runtime.

    python benchmarks/export.py DIR head OUT.onnx   # head: sequence (logits) or base (last hidden state)

transformers' model of the checkpoint goes through `torch.onnx.export` (the TorchScript exporter, opset
17, dynamic batch and sequence axes); `onnxruntime.quantization.quantize_dynamic` makes OUT.int8.onnx
(int8 weights per channel, activations quantized per call: what `optimum`'s dynamic quantization does).
Run in a child process by peers.py (the `bench` extra), so that its memory is not the runner's.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def export(model_dir: Path, head: str, out: Path) -> None:
    import torch
    import transformers

    auto = transformers.AutoModelForSequenceClassification if head == "sequence" else transformers.AutoModel
    model = auto.from_pretrained(model_dir).eval()
    ids = torch.randint(1000, 2000, (2, 16))
    example = (ids, torch.ones_like(ids), torch.zeros_like(ids))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, example, str(out), input_names=list(INPUTS), output_names=["output"],
                          dynamic_axes={name: {0: "batch", 1: "sequence"} for name in INPUTS},
                          opset_version=17, dynamo=False)


def quantize(model: Path, out: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(model), str(out), per_channel=True, weight_type=QuantType.QInt8)


if __name__ == "__main__":
    directory, head, target = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    if not target.is_file():
        export(directory, head, target)
    int8 = target.with_suffix(".int8.onnx")
    if not int8.is_file():
        quantize(target, int8)
