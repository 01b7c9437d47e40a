"""Full-size random-weight sequence classifiers in Hub format, built once and cached under benchmarks/out/.

Speed does not depend on what the weights are, only on their shapes, so random weights in the real
configurations (tests/factory.py) measure what the real checkpoints would, without the network. Each
directory holds config.json (2 labels), model.safetensors and the real uncased BERT vocabulary.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"
MODELS_DIR = OUT / "models"

# name -> (architecture, factory config attribute). All three are 512-position models, as on the Hub.
MODELS = {
    "squeezebert": ("squeezebert", "SQUEEZEBERT_UNCASED"),
    "bert-base": ("bert", "BERT_BASE"),
    "distilbert": ("distilbert", "DISTILBERT_BASE"),
}


def model_dir(name: str) -> Path:
    return MODELS_DIR / name


def build_missing(names: list[str]) -> None:
    """Build the checkpoints of `names` that are not yet on disk (a minute each, once)."""
    for name in names:
        directory = model_dir(name)
        if (directory / "config.json").is_file() and (directory / "model.safetensors").is_file():
            continue
        sys.path.insert(0, str(ROOT / "tests"))
        import factory  # tests/factory.py, which needs the test extra (transformers)

        arch, attribute = MODELS[name]
        config = dict(getattr(factory, attribute), max_position_embeddings=512)
        config.pop("vocab_size")  # build() sizes the vocabulary to the tokenizer files it writes
        print(f"building {name} in {directory} ...", file=sys.stderr, flush=True)
        factory.build(directory, arch, "sequence", **config)
    for name in names:
        _tokenizer_class_as_on_the_hub(model_dir(name), MODELS[name][0])


def _tokenizer_class_as_on_the_hub(directory: Path, arch: str) -> None:
    """DistilBERT's checkpoints name DistilBertTokenizer, which gives no token_type_ids: its model takes none,
    and the transformers pipeline passes on whatever the tokenizer gives."""
    path = directory / "tokenizer_config.json"
    settings = json.loads(path.read_text(encoding="utf-8"))
    wanted = "DistilBertTokenizer" if arch == "distilbert" else settings["tokenizer_class"]
    if settings["tokenizer_class"] != wanted:
        path.write_text(json.dumps({**settings, "tokenizer_class": wanted}, indent=2), encoding="utf-8")


if __name__ == "__main__":  # run.py builds in a child, so that its own memory stays small (see processes.py)
    build_missing(sys.argv[1:])
