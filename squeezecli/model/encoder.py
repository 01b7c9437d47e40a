"""One encoder for SqueezeBERT, BERT, DistilBERT and RoBERTa, in plain PyTorch.

All four are the same post-LayerNorm transformer encoder:

    x = Embed(tokens)                                   word + position (+ token type), LayerNorm
    for each block:
        x = LN(x + AttnOut(Attention(Query x, Key x, Value x)))
        x = LN(x + FfnOut(act(FfnIn x)))

They differ only in their checkpoints' tensor names (weights.py maps them), small embedding details
(RoBERTa numbers positions from the padding index, DistilBERT has no token types) and the head.
SqueezeBERT (Iandola et al., 2020) makes the six position-wise projections grouped 1x1 convolutions;
one `GroupedProjection` covers both (groups=1 is BERT's dense layer). Activations stay [batch, seq,
hidden] throughout; how a projection runs on this CPU (oneDNN's kernels, the residual or activation
fused into the product) is kernels.py's business, behind `kernels.project`.

A projection (projection.py) is anything with `forward(x, residual=None, activation=None, in_place=False,
pieces=False)` and `prepare(x)` (precision/ holds the int8 ones), so a block never asks what kind of
projection it holds: it hands each the block input as that projection `prepare`s it, made once for all
that take the same form (a bf16 cast or split, or int8 values with per-token scales, shared by query, key
and value). Where the packed kernels run, a block's float query, key and value are one `Stack`: one
product (per group) for all three.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint.config import EncoderConfig
from ..checkpoint.heads import HEADS
from ..errors import ModelError
from . import kernels
from .kernels import ACTIVATIONS, Pieces, whole
from .projection import GroupedProjection, Stack, prepared


# Attention runs over keys padded to a multiple of this (Keys says why).
KEY_BLOCK = 16


def _table(rows: int, dim: int) -> nn.Embedding:
    """An embedding table left uninitialized, like GroupedProjection: its weights are always loaded.

    nn.Embedding's own random init (normal_) on the meta device runs through torch._refs, which imports
    torch._dynamo: 1.2 s of every start-up, for numbers that are overwritten at once.
    """
    return nn.Embedding(rows, dim, _weight=torch.empty(rows, dim))


class Embeddings(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.cfg = cfg
        self.word = _table(cfg.vocab_size, cfg.hidden_size)
        self.position = _table(cfg.max_positions, cfg.hidden_size)
        self.token_type = _table(cfg.type_vocab_size, cfg.hidden_size) if cfg.type_vocab_size else None
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
        x = self.word(input_ids).float() + self.position(positions)  # [B, T, H] (a bf16 table is looked up as fp32)
        if self.token_type is not None:
            if token_type_ids is None:
                token_type_ids = torch.zeros_like(input_ids)
            x = x + self.token_type(token_type_ids)
        return self.norm(x)


class Keys:
    """The keys each query may see, worked out once per forward from the attention mask [B, T] and shared
    by every block.

    A right-padded batch (what the tokenizer makes) attends over keys padded to `width`, a multiple of
    KEY_BLOCK, with a -inf bias on the padding: every reduction over keys (the softmax's, the product
    with v) then runs in whole vector-width blocks, where the masked keys add exact zeros, so a row gets
    the same bits alone and padded beside longer rows (a bare padded call sums a ragged tail in another
    order, which bf16's rounding, or int8's downstream, magnifies). Any other mask is `ragged` [B, 1, 1, T]
    and goes to SDPA as it is.
    """

    def __init__(self, attention_mask: torch.Tensor):
        b, t = attention_mask.shape
        real = attention_mask.bool()  # [B, T]
        lengths = real.sum(1)  # [B]
        right_padded = torch.equal(real, torch.arange(t)[None, :] < lengths[:, None])
        self.ragged = None if right_padded else real.view(b, 1, 1, t)
        self.width = (t + KEY_BLOCK - 1) // KEY_BLOCK * KEY_BLOCK  # keys per row
        self._padding = (torch.arange(self.width)[None, :] >= lengths[:, None]).view(b, 1, 1, self.width)
        self._bias: dict[torch.dtype, torch.Tensor] = {}

    def bias(self, dtype: torch.dtype) -> torch.Tensor:
        """[B, 1, 1, width] added to the scores: 0 on real keys, -inf on padding (one per dtype)."""
        if dtype not in self._bias:
            bias = torch.zeros(self._padding.shape, dtype=dtype)
            self._bias[dtype] = bias.masked_fill_(self._padding, float("-inf"))
        return self._bias[dtype]


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
        if cfg.activation not in ACTIVATIONS:
            raise ModelError(f"squeeze does not know the activation {cfg.activation!r} of this model's config.json",
                             hint=f"known: {', '.join(ACTIVATIONS)}")
        self.activation = cfg.activation
        self.fused_bf16_attention = False  # the CPU decides (Encoder.use_fused_bf16_attention)
        self.attention_dtype: torch.dtype | None = None  # None: q's own (Encoder.use_attention_dtype)

    def heads(self, x: torch.Tensor | Pieces, dtype: torch.dtype, width: int) -> torch.Tensor:
        """x [B, T, H] (or its groups' pieces [B, T, H/G], each whole heads) -> [B, nh, width, hd] in
        `dtype`, zero past T: a view where x is one tensor of that dtype and width, else one copy."""
        nh = self.num_heads
        parts = x if isinstance(x, list) else [x]
        b, t, w = parts[0].shape
        hd = w * len(parts) // nh
        if w % hd:  # pieces that split a head: glued first
            return self.heads(whole(x), dtype, width)
        if len(parts) == 1 and width == t and parts[0].dtype == dtype:
            return parts[0].view(b, t, nh, hd).transpose(1, 2)
        out = parts[0].new_empty((b, nh, width, hd), dtype=dtype)
        out[:, :, t:].zero_()
        per = w // hd  # heads per piece
        for i, part in enumerate(parts):
            out[:, i * per:(i + 1) * per, :t].copy_(part.view(b, t, per, hd).transpose(1, 2))
        return out

    def forward(self, x: torch.Tensor, keys: Keys) -> torch.Tensor:
        """x [B, T, H] fp32 (the residual stream and LayerNorms stay fp32 at every precision) -> [B, T, H]."""
        trio = (self.query, self.key, self.value)
        stack = getattr(self.query, "stacked", None)
        if stack is not None and all(getattr(p, "stacked", None) == (stack[0], i) for i, p in enumerate(trio)):
            q, k, v = stack[0].run(self.query.prepare(x))  # one product (per group) for all three
        else:
            xq, xk, xv = prepared(x, trio)  # one cast, split or quantization for all three
            q, k, v = (p(xp, pieces=True) for p, xp in zip(trio, (xq, xk, xv)))
        a = self.attention(q, k, v, keys)  # [B, T, H]
        x = self.attn_norm(self.attn_out(a, residual=x))  # [B, T, H]
        inner = self.ffn_in(self.ffn_in.prepare(x), activation=self.activation, pieces=True)  # [B, T, I], or G x [B, T, I/G]
        # x is this block's own tensor now (attn_norm's output), so the sum may overwrite it.
        return self.ffn_norm(self.ffn_out(inner, residual=x, in_place=True))  # [B, T, H]

    def attention(self, q: torch.Tensor | Pieces, k: torch.Tensor | Pieces, v: torch.Tensor | Pieces,
                  keys: Keys) -> torch.Tensor:
        """Softmax(q k^T / sqrt(hd)) v over `num_heads` heads, over the keys `keys` lets each row see; q, k,
        v [B, T, H] or their groups' pieces, the result [B, T, H]; padding positions' results are undefined."""
        dtype = self.attention_dtype or (q[0] if isinstance(q, list) else q).dtype  # a projection kept apart may differ
        t = (q[0] if isinstance(q, list) else q).shape[1]
        width = t if keys.ragged is not None else keys.width
        qh, kh, vh = self.heads(q, dtype, t), self.heads(k, dtype, width), self.heads(v, dtype, width)
        b, nh, _, hd = qh.shape
        if keys.ragged is not None:
            a = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=keys.ragged)
            return a.transpose(1, 2).reshape(b, t, nh * hd)  # not right padding: batch-independence not promised
        return self._attend(qh, kh, vh, keys.bias(dtype))

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """q [B, nh, T, hd], k and v [B, nh, S, hd], bias [B, 1, 1, S] added to the scores -> [B, T, H]. fp32
        runs torch's fused kernel; bf16 too where it is the faster (AMX), else batched products and a softmax."""
        (b, nh, t, hd), s = q.shape, k.shape[2]
        if q.dtype == torch.float32 or self.fused_bf16_attention:
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
            return a.transpose(1, 2).reshape(b, t, nh * hd)  # a view: SDPA's output is [B, T, nh, hd] in memory
        qh, kh, vh = (x.reshape(b * nh, -1, hd) for x in (q, k, v))  # views where x is contiguous
        scores = torch.baddbmm(bias.expand(b, nh, 1, s).reshape(b * nh, 1, s), qh, kh.transpose(1, 2),
                               alpha=hd ** -0.5)  # [B*nh, T, S]
        out = torch.bmm(torch.softmax(scores, dim=-1), vh)  # [B*nh, T, hd]
        return out.view(b, nh, t, hd).transpose(1, 2).reshape(b, t, nh * hd)


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
        keys = Keys(attention_mask)  # once for every block
        for block in self.blocks:
            x = block(x, keys)
        return self.head(x)

    def use_fused_bf16_attention(self, fused: bool) -> Encoder:
        """bf16 attention as torch's fused kernel (SDPA) rather than batched products and a softmax: the
        faster of the two depends on the CPU (precision/cpu.py decides); both are batch-independent."""
        for block in self.blocks:
            block.fused_bf16_attention = fused
        return self

    def use_attention_dtype(self, dtype: torch.dtype | None) -> Encoder:
        """Attention in `dtype` whatever its projections compute in (None: the query's dtype). An int8
        model runs it in bf16 where the CPU has native bf16 products: its projections then write q, k
        and v in bf16 directly (Projection.output_dtype)."""
        for block in self.blocks:
            block.attention_dtype = dtype
            for proj in (block.query, block.key, block.value):
                proj.output_dtype = dtype
        return self

    def pack(self, tokens: int = kernels.TOKENS_PER_PASS) -> Encoder:
        """Every float projection's weight laid out for this CPU's inner product (told to expect passes of
        `tokens` tokens), once, after loading; each block's query, key and value stacked where they fit."""
        for block in self.blocks:
            trio = (block.query, block.key, block.value)
            if Stack.fits(trio):
                Stack(trio, tokens).stack(trio)  # type: ignore[arg-type]
        for module in self.modules():
            if type(module) is GroupedProjection:
                module.pack(tokens)
        return self

    def parameter_count(self) -> int:
        """Weights and biases, counted in their plain layout whatever `pack` made of them."""
        projections = [m for m in self.modules() if isinstance(m, GroupedProjection)]
        held = {id(p) for m in projections for p in m.parameters(recurse=False)}
        return (sum(m.parameter_count() for m in projections)
                + sum(p.numel() for p in self.parameters() if id(p) not in held))


def flops_per_token(cfg: EncoderConfig, seq_len: int) -> float:
    """Multiply-adds x 2 of one token through the encoder (projections + attention), for GFLOP/s figures."""
    h, i, g = cfg.hidden_size, cfg.intermediate_size, cfg.groups
    proj = h * h * (1 / g.query + 1 / g.key + 1 / g.value + 1 / g.attn_out) + h * i * (1 / g.ffn_in + 1 / g.ffn_out)
    attn = 2 * seq_len * h  # scores and weighted sum
    return 2 * cfg.num_layers * (proj + attn)
