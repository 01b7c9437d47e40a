"""One encoder for SqueezeBERT, BERT, DistilBERT and RoBERTa, in plain PyTorch.

Design. All four architectures are the same post-LayerNorm transformer encoder:

    x = Embed(tokens)                                   word + position (+ token type), LayerNorm
    for each block:
        x = LN(x + AttnOut(Attention(Query x, Key x, Value x)))
        x = LN(x + FfnOut(act(FfnIn x)))

They differ only in (a) what the tensors are called in the checkpoint, which `weights.py` maps onto
the names here with one table per architecture, (b) small embedding details (RoBERTa numbers
positions from the padding index, DistilBERT has no token types), and (c) the classification head.

SqueezeBERT's contribution (Iandola et al., 2020) is that the six position-wise projections
(query, key, value, post-attention, intermediate, output) become grouped 1x1 convolutions. A 1x1
convolution over a sequence is a matrix product at every position, so the whole family fits one
`GroupedProjection`: groups=1 is BERT's dense layer, groups=4 splits the channels into four
independent blocks, each a smaller dense layer, which is 4x fewer FLOPs.

We keep activations channels-last ([batch, seq, hidden]) and run the groups as one batched matrix
product ([groups, tokens, in/groups] @ [groups, in/groups, out/groups]) rather than as `nn.Conv1d` in
its [batch, channels, seq] layout: on a 2-core CPU the grouped Conv1d reaches about half of the fp32
matmul peak, the batched product nearly all of it, and channels-last needs no permutes around
LayerNorm and attention.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import EncoderConfig

HEADS = ("base", "sequence", "token", "qa")

ACTIVATIONS = {
    "gelu": F.gelu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_fast": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
    "quick_gelu": lambda x: x * torch.sigmoid(1.702 * x),
}


class GroupedProjection(nn.Module):
    """y = x W^T + b applied at every position, with the channels split into `groups` blocks.

    weight: [out, in] when groups == 1 (an nn.Linear), else [groups, out/groups, in/groups],
    which is a Conv1d weight [out, in/groups, 1] viewed by group.
    """

    def __init__(self, in_features: int, out_features: int, groups: int = 1):
        super().__init__()
        assert in_features % groups == 0 and out_features % groups == 0, (in_features, out_features, groups)
        self.in_features, self.out_features, self.groups = in_features, out_features, groups
        shape = (out_features, in_features) if groups == 1 else (groups, out_features // groups, in_features // groups)
        self.weight = nn.Parameter(torch.empty(shape))
        self.bias = nn.Parameter(torch.zeros(out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.groups == 1:
            return F.linear(x, self.weight, self.bias)
        *lead, c = x.shape
        g = self.groups
        x2 = x.reshape(-1, c)  # [N, in]
        y = x.new_empty(x2.shape[0], g, self.out_features // g)  # [N, G, out/G]: the output's final layout
        # Writing through a transposed view of y saves the copy back to channels-last; inference only
        # (out= does not record autograd).
        torch.baddbmm(
            self.bias.view(g, 1, -1),  # [G, 1, out/G]
            x2.view(-1, g, c // g).transpose(0, 1),  # [G, N, in/G]
            self.weight.transpose(1, 2),  # [G, in/G, out/G]
            out=y.transpose(0, 1),  # [G, N, out/G]
        )
        return y.view(*lead, self.out_features)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, groups={self.groups}"


class Embeddings(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.cfg = cfg
        self.word = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.position = nn.Embedding(cfg.max_positions, cfg.hidden_size)
        self.token_type = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size) if cfg.type_vocab_size else None
        self.norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None) -> torch.Tensor:
        cfg = self.cfg
        if cfg.position_offset:
            # RoBERTa: padding keeps the padding index, real tokens count up from it (transformers'
            # create_position_ids_from_input_ids).
            real = input_ids.ne(cfg.pad_token_id).long()  # [B, T]
            positions = torch.cumsum(real, dim=1) * real + cfg.pad_token_id  # [B, T]
        else:
            positions = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)  # [1, T]
        x = self.word(input_ids) + self.position(positions)  # [B, T, H]
        if self.token_type is not None:
            if token_type_ids is None:
                token_type_ids = torch.zeros_like(input_ids)
            x = x + self.token_type(token_type_ids)
        return self.norm(x)


class Block(nn.Module):
    """One encoder layer: self-attention and feed-forward, each followed by residual + LayerNorm."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        h, g = cfg.hidden_size, cfg.groups
        self.num_heads = cfg.num_heads
        self.query = GroupedProjection(h, h, g.query)
        self.key = GroupedProjection(h, h, g.key)
        self.value = GroupedProjection(h, h, g.value)
        self.attn_out = GroupedProjection(h, h, g.attn_out)
        self.attn_norm = nn.LayerNorm(h, eps=cfg.layer_norm_eps)
        self.ffn_in = GroupedProjection(h, cfg.intermediate_size, g.ffn_in)
        self.ffn_out = GroupedProjection(cfg.intermediate_size, h, g.ffn_out)
        self.ffn_norm = nn.LayerNorm(h, eps=cfg.layer_norm_eps)
        self.act = ACTIVATIONS[cfg.activation]

    def heads(self, x: torch.Tensor) -> torch.Tensor:
        b, t, h = x.shape
        return x.view(b, t, self.num_heads, h // self.num_heads).transpose(1, 2)  # [B, nh, T, hd]

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, t, h = x.shape
        q, k, v = self.heads(self.query(x)), self.heads(self.key(x)), self.heads(self.value(x))
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # [B, nh, T, hd]
        a = a.transpose(1, 2).reshape(b, t, h)  # [B, T, H]
        x = self.attn_norm(x + self.attn_out(a))
        return self.ffn_norm(x + self.ffn_out(self.act(self.ffn_in(x))))


class SequenceHead(nn.Module):
    """[CLS] vector -> pre-projection + activation -> labels.

    The same shape serves BERT/SqueezeBERT (pooler dense + tanh, then classifier), RoBERTa
    (classifier.dense + tanh, then out_proj) and DistilBERT (pre_classifier + ReLU, then classifier).
    """

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.pre = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.out = nn.Linear(cfg.hidden_size, cfg.num_labels)
        self.act = torch.relu if cfg.arch == "distilbert" else torch.tanh

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.act(self.pre(x[:, 0])))  # [B, labels]


class Encoder(nn.Module):
    """Embeddings, blocks, and one head.

    forward returns, by head: base -> hidden states [B, T, H]; sequence -> logits [B, labels];
    token -> logits [B, T, labels]; qa -> start/end logits [B, T, 2].
    """

    def __init__(self, cfg: EncoderConfig, head: str = "base"):
        super().__init__()
        assert head in HEADS, head
        self.cfg, self.head_kind = cfg, head
        self.embed = Embeddings(cfg)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))
        if head == "sequence":
            self.head = SequenceHead(cfg)
        elif head == "token":
            self.head = nn.Linear(cfg.hidden_size, cfg.num_labels)
        elif head == "qa":
            self.head = nn.Linear(cfg.hidden_size, 2)
        else:
            self.head = nn.Identity()

    def forward(
        self,
        input_ids: torch.Tensor,  # [B, T]
        attention_mask: torch.Tensor,  # [B, T], 1 for real tokens
        token_type_ids: torch.Tensor | None = None,  # [B, T]
    ) -> torch.Tensor:
        x = self.embed(input_ids, token_type_ids)  # [B, T, H]
        mask = attention_mask.bool()[:, None, None, :]  # [B, 1, 1, T]: which keys each query may see
        for block in self.blocks:
            x = block(x, mask)
        return self.head(x)


def flops_per_token(cfg: EncoderConfig, seq_len: int) -> float:
    """Multiply-adds x 2 of one token through the encoder (projections + attention), for GFLOP/s figures."""
    h, i, g = cfg.hidden_size, cfg.intermediate_size, cfg.groups
    proj = h * h * (1 / g.query + 1 / g.key + 1 / g.value + 1 / g.attn_out) + h * i * (1 / g.ffn_in + 1 / g.ffn_out)
    attn = 2 * seq_len * h  # scores and weighted sum
    return 2 * cfg.num_layers * (proj + attn)
