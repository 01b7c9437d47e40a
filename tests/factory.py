"""Random-weight models in Hub format, built with transformers (the reference) for parity tests.

Every parameter is randomised (biases and LayerNorm included, not just transformers' init), so a
swapped or dropped tensor in our name tables changes the outputs.
"""

from __future__ import annotations

from pathlib import Path

import torch
import transformers as tf

CLASSES = {
    "bert": ("BertConfig", "BertModel", "BertForSequenceClassification", "BertForTokenClassification", "BertForQuestionAnswering"),
    "squeezebert": ("SqueezeBertConfig", "SqueezeBertModel", "SqueezeBertForSequenceClassification", "SqueezeBertForTokenClassification", "SqueezeBertForQuestionAnswering"),
    "distilbert": ("DistilBertConfig", "DistilBertModel", "DistilBertForSequenceClassification", "DistilBertForTokenClassification", "DistilBertForQuestionAnswering"),
    "roberta": ("RobertaConfig", "RobertaModel", "RobertaForSequenceClassification", "RobertaForTokenClassification", "RobertaForQuestionAnswering"),
}
HEAD_INDEX = {"base": 1, "sequence": 2, "token": 3, "qa": 4}

TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, max_position_embeddings=128)

# squeezebert/squeezebert-uncased's config.json.
SQUEEZEBERT_UNCASED = dict(
    vocab_size=30528, hidden_size=768, embedding_size=768, num_hidden_layers=12, num_attention_heads=12,
    intermediate_size=3072, max_position_embeddings=512, q_groups=4, k_groups=4, v_groups=4,
    post_attention_groups=1, intermediate_groups=4, output_groups=4, hidden_act="gelu", layer_norm_eps=1e-12,
)
BERT_BASE = dict(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)
DISTILBERT_BASE = dict(vocab_size=30522, dim=768, n_layers=6, n_heads=12, hidden_dim=3072)


def make_config(arch: str, head: str = "base", *, vocab_size: int = 1000, labels: list[str] | None = None, **overrides):
    config_cls = getattr(tf, CLASSES[arch][0])
    kw: dict = dict(TINY, vocab_size=vocab_size)
    if arch == "distilbert":
        kw = dict(vocab_size=vocab_size, dim=64, n_layers=2, n_heads=4, hidden_dim=128, max_position_embeddings=128)
    if arch == "roberta":
        kw.update(pad_token_id=1, bos_token_id=0, eos_token_id=2, type_vocab_size=1, max_position_embeddings=130)
    kw.update(overrides)
    if arch == "squeezebert":
        kw["embedding_size"] = kw["hidden_size"]
    if head in ("sequence", "token"):
        labels = labels or (["NEGATIVE", "POSITIVE"] if head == "sequence" else ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"])
        kw.update(id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)})
    return config_cls(**kw)


def make_model(arch: str, head: str = "base", *, seed: int = 0, scale: float = 0.05, **config_kw):
    config = make_config(arch, head, **config_kw)
    model_cls = getattr(tf, CLASSES[arch][HEAD_INDEX[head]])
    torch.manual_seed(seed)
    model = model_cls(config).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)
    return model


def save(model, directory: Path, *, safe: bool = True, max_shard_size: str | None = None, tokenizer: str | None = None) -> Path:
    """Write the model as a Hub checkpoint; `tokenizer` names a vocab builder from tests/vocabs.py."""
    directory = Path(directory)
    kw = {"safe_serialization": safe}
    if max_shard_size:
        kw["max_shard_size"] = max_shard_size
    model.save_pretrained(directory, **kw)
    if tokenizer:
        import vocabs

        getattr(vocabs, f"write_{tokenizer}")(directory)
    return directory


def hf_outputs(model, head: str, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
    """The reference output in the layout our Encoder returns for `head`."""
    kw = {"input_ids": input_ids, "attention_mask": attention_mask}
    if token_type_ids is not None:
        kw["token_type_ids"] = token_type_ids
    with torch.no_grad():
        out = model(**kw)
    if head == "base":
        return out.last_hidden_state
    if head == "qa":
        return torch.stack([out.start_logits, out.end_logits], dim=-1)
    return out.logits


DEFAULT_TOKENIZER = {"bert": "wordpiece_uncased", "squeezebert": "wordpiece_uncased",
                     "distilbert": "wordpiece_uncased", "roberta": "bpe"}


def build(directory: Path, arch: str, head: str = "base", *, tokenizer: str | None = None, seed: int = 0, **config_kw):
    """A complete random-weight Hub checkpoint (config, weights, tokenizer files) in `directory`.

    Returns the transformers model, which is the reference to compare against.
    """
    import vocabs
    from transformers import AutoTokenizer

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    getattr(vocabs, f"write_{tokenizer or DEFAULT_TOKENIZER[arch]}")(directory)
    vocab_size = len(AutoTokenizer.from_pretrained(directory))
    model = make_model(arch, head, seed=seed, vocab_size=vocab_size, **config_kw)
    model.save_pretrained(directory)
    return model
