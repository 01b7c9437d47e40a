"""Tiny random-weight checkpoints in Hugging Face Hub format, written with the standard library alone.

The user-environment suite runs in a venv made with exactly the README's install, which has neither
transformers nor pytest, so its models cannot come from tests/factory.py. These are written here by
hand: config.json, a WordPiece vocab.txt with its tokenizer config, model.safetensors under the tensor
names transformers gives each architecture, and for embedding models the sentence-transformers files.
Independent of squeezecli's own name tables, so a mistake in those fails the suite.
"""

from __future__ import annotations

import array
import json
import random
import string
import struct
from pathlib import Path

HIDDEN, HEADS, INTERMEDIATE, LAYERS, POSITIONS = 32, 2, 64, 2, 128
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = ("the a an and of to in is it was for on with as by at this that film plot good bad great love loved "
         "hate terrible movie book ada lovelace london babbage grace hopper navy who where what when why how "
         "reset password account invoice email question answer first program engine").split()
ARCHITECTURES = {  # model_type -> (architectures class prefix, tensor-name prefix of the base model)
    "bert": ("Bert", "bert."),
    "distilbert": ("DistilBert", "distilbert."),
    "squeezebert": ("SqueezeBert", "transformer."),
}
HEAD_CLASSES = {"base": "Model", "sequence": "ForSequenceClassification", "token": "ForTokenClassification",
                "qa": "ForQuestionAnswering"}


def vocabulary(cased: bool) -> list[str]:
    letters = string.ascii_letters if cased else string.ascii_lowercase
    pieces = list(letters + string.digits + string.punctuation)
    words = [w.capitalize() for w in WORDS] + WORDS if cased else WORDS
    return SPECIALS + pieces + ["##" + p for p in letters + string.digits] + list(dict.fromkeys(words))


def build(directory: Path, arch: str, head: str, *, labels: list[str] | None = None, seed: int = 0,
          cased: bool = False, sentence_transformers: bool = False) -> Path:
    """A complete checkpoint of `arch` ("bert", "distilbert", "squeezebert") with `head` in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    vocab = vocabulary(cased)
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    (directory / "tokenizer_config.json").write_text(json.dumps(
        {"do_lower_case": not cased, "model_max_length": POSITIONS, "tokenizer_class": "BertTokenizer"}))
    (directory / "special_tokens_map.json").write_text(json.dumps(
        {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]", "mask_token": "[MASK]"}))
    if head in ("sequence", "token") and not labels:
        raise ValueError(f"a {head} head needs labels")
    (directory / "config.json").write_text(json.dumps(_config(arch, head, len(vocab), labels or []), indent=2))
    _write_safetensors(directory / "model.safetensors", _tensors(arch, head, len(vocab), len(labels or []), seed))
    if sentence_transformers:
        _write_sentence_transformers(directory)
    return directory


def _config(arch: str, head: str, vocab_size: int, labels: list[str]) -> dict:
    class_prefix, _ = ARCHITECTURES[arch]
    config: dict = {"model_type": arch, "architectures": [class_prefix + HEAD_CLASSES[head]], "vocab_size": vocab_size,
                    "max_position_embeddings": POSITIONS, "pad_token_id": 0}
    if arch == "distilbert":
        config.update(dim=HIDDEN, n_layers=LAYERS, n_heads=HEADS, hidden_dim=INTERMEDIATE, activation="gelu")
    else:
        config.update(hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                      intermediate_size=INTERMEDIATE, type_vocab_size=2, hidden_act="gelu", layer_norm_eps=1e-12)
    if arch == "squeezebert":
        config.update(embedding_size=HIDDEN, q_groups=4, k_groups=4, v_groups=4, post_attention_groups=1,
                      intermediate_groups=4, output_groups=4)
    if labels:
        config["id2label"] = {str(i): label for i, label in enumerate(labels)}
        config["label2id"] = {label: i for i, label in enumerate(labels)}
    return config


def _tensors(arch: str, head: str, vocab_size: int, num_labels: int, seed: int) -> dict[str, tuple[list[int], str, float]]:
    """Tensor name -> (shape, initialiser, its seed): "w" random normal, "one" LayerNorm weights near 1."""
    h, i = HIDDEN, INTERMEDIATE
    _, prefix = ARCHITECTURES[arch]
    base = prefix if head != "base" else ""
    t: dict[str, tuple[list[int], str]] = {}

    def linear(name: str, out: int, inp: int, conv_groups: int = 0) -> None:
        t[f"{name}.weight"] = ([out, inp // conv_groups, 1] if conv_groups else [out, inp], "w")
        t[f"{name}.bias"] = ([out], "w")

    def norm(name: str) -> None:
        t[f"{name}.weight"], t[f"{name}.bias"] = ([h], "one"), ([h], "w")

    t[f"{base}embeddings.word_embeddings.weight"] = ([vocab_size, h], "w")
    t[f"{base}embeddings.position_embeddings.weight"] = ([POSITIONS, h], "w")
    if arch != "distilbert":
        t[f"{base}embeddings.token_type_embeddings.weight"] = ([2, h], "w")
    norm(f"{base}embeddings.LayerNorm")
    for n in range(LAYERS):
        if arch == "bert":
            layer = f"{base}encoder.layer.{n}"
            for part in ("query", "key", "value"):
                linear(f"{layer}.attention.self.{part}", h, h)
            linear(f"{layer}.attention.output.dense", h, h)
            norm(f"{layer}.attention.output.LayerNorm")
            linear(f"{layer}.intermediate.dense", i, h)
            linear(f"{layer}.output.dense", h, i)
            norm(f"{layer}.output.LayerNorm")
        elif arch == "distilbert":
            layer = f"{base}transformer.layer.{n}"
            for part in ("q_lin", "k_lin", "v_lin", "out_lin"):
                linear(f"{layer}.attention.{part}", h, h)
            norm(f"{layer}.sa_layer_norm")
            linear(f"{layer}.ffn.lin1", i, h)
            linear(f"{layer}.ffn.lin2", h, i)
            norm(f"{layer}.output_layer_norm")
        else:  # squeezebert: grouped 1x1 convolutions
            layer = f"{base}encoder.layers.{n}"
            for part in ("query", "key", "value"):
                linear(f"{layer}.attention.{part}", h, h, conv_groups=4)
            linear(f"{layer}.post_attention.conv1d", h, h, conv_groups=1)
            norm(f"{layer}.post_attention.layernorm")
            linear(f"{layer}.intermediate.conv1d", i, h, conv_groups=4)
            linear(f"{layer}.output.conv1d", h, i, conv_groups=4)
            norm(f"{layer}.output.layernorm")
    if head == "sequence":
        if arch == "distilbert":
            linear("pre_classifier", h, h)
        else:
            linear(f"{prefix}pooler.dense", h, h)
        linear("classifier", num_labels, h)
    elif head == "token":
        linear("classifier", num_labels, h)
    elif head == "qa":
        linear("qa_outputs", 2, h)
    elif arch != "distilbert":
        linear("pooler.dense", h, h)
    rng = random.Random(seed)
    return {name: (shape, kind, rng.random()) for name, (shape, kind) in t.items()}


def _write_safetensors(path: Path, tensors: dict) -> None:
    header: dict = {}
    blobs: list[bytes] = []
    offset = 0
    for name, (shape, kind, tensor_seed) in tensors.items():
        count = 1
        for dim in shape:
            count *= dim
        rng = random.Random(tensor_seed)
        if kind == "one":
            values = array.array("f", (1.0 + rng.gauss(0, 0.05) for _ in range(count)))
        else:
            values = array.array("f", (rng.gauss(0, 0.3) for _ in range(count)))
        blob = values.tobytes()  # little-endian on the x86 and ARM machines this runs on
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    encoded = json.dumps(header).encode()
    encoded += b" " * (-len(encoded) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)) + encoded)
        for blob in blobs:
            f.write(blob)


def _write_sentence_transformers(directory: Path) -> None:
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    (directory / "modules.json").write_text(json.dumps(modules))
    (directory / "1_Pooling").mkdir(exist_ok=True)
    (directory / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": HIDDEN, "pooling_mode_mean_tokens": True}))
    (directory / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 64, "do_lower_case": False}))


NER_LABELS = ["O", "B-MISC", "I-MISC", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]
# The catalogue's models (squeezecli/catalogue.py) by Hub id, each as its checks expect it.
CATALOGUE = {
    "distilbert/distilbert-base-uncased-finetuned-sst-2-english":
        dict(arch="distilbert", head="sequence", labels=["NEGATIVE", "POSITIVE"]),
    "squeezebert/squeezebert-mnli": dict(arch="squeezebert", head="sequence", labels=["LABEL_0", "LABEL_1", "LABEL_2"]),
    "deepset/minilm-uncased-squad2": dict(arch="bert", head="qa"),
    "mrm8488/squeezebert-finetuned-squadv1": dict(arch="squeezebert", head="qa"),
    "dslim/bert-base-NER": dict(arch="bert", head="token", labels=NER_LABELS, cased=True),
    "sentence-transformers/all-MiniLM-L6-v2": dict(arch="bert", head="base", sentence_transformers=True),
    "cross-encoder/ms-marco-MiniLM-L-6-v2": dict(arch="bert", head="sequence", labels=["LABEL_0"]),
}


def build_catalogue(root: Path) -> dict[str, Path]:
    """A stand-in directory for each catalogue model, by Hub id."""
    return {repo_id: build(root / repo_id.replace("/", "--"), seed=seed, **spec)
            for seed, (repo_id, spec) in enumerate(CATALOGUE.items())}
