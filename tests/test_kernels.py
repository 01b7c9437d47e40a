"""Weights are packed once, at load, in the layout oneDNN's inner product takes: a steady-state forward
re-lays out no weight (oneDNN's verbose log lists every reorder), at fp32 and bf16, dense or grouped (one
inner product per group: the inner product's layout is the same at any number of tokens, where a grouped
convolution's changes with it, so a weight packed for one size was re-laid out on every pass of another:
0.6 s for a one-line pass of full-size SqueezeBERT), and the packed copy is what the model holds (its state
dict still gives the plain weights)."""

import os
import subprocess
import sys

import pytest
import torch

from squeezecli.model import kernels
from squeezecli.model.projection import GroupedProjection
from squeezecli.model.weights import load_encoder

# Two forwards of one batch; the C library's buffer is flushed before the marker, so the log's order holds.
TWO_FORWARDS = """
import ctypes, sys, torch
from squeezecli.model.weights import load_encoder
model = load_encoder(sys.argv[1], "base", getattr(torch, sys.argv[2]), pass_tokens=int(sys.argv[5]))
ids = torch.randint(5, model.cfg.vocab_size, (int(sys.argv[3]), int(sys.argv[4])))
with torch.inference_mode():
    model(ids, torch.ones_like(ids))
    ctypes.CDLL(None).fflush(None)
    print("=== steady state", flush=True)
    model(ids, torch.ones_like(ids))
    ctypes.CDLL(None).fflush(None)
"""


def steady_state_log(model_dir, dtype: str, rows: int, tokens: int, pass_tokens: int) -> list[str]:
    """oneDNN's verbose lines of the second forward of a [rows x tokens] batch, run in a fresh process by a
    model packed for passes of `pass_tokens` tokens."""
    env = {**os.environ, "ONEDNN_VERBOSE": "1"}
    out = subprocess.run([sys.executable, "-c", TWO_FORWARDS, str(model_dir), dtype, str(rows), str(tokens),
                          str(pass_tokens)],
                         capture_output=True, text=True, check=True, env=env).stdout
    assert "=== steady state" in out
    return [line for line in out.split("=== steady state", 1)[1].splitlines() if ",exec," in line]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("arch, rows, tokens, pass_tokens", [
    ("bert", 3, 11, 1024),  # dense
    ("squeezebert", 1, 8, 1024),  # grouped, one short line
    ("squeezebert", 32, 32, 1024),  # grouped, a full pass
    ("squeezebert", 64, 32, 2048),  # the longer passes an AMX CPU runs (runtime.pass_tokens)
])
def test_a_steady_state_forward_reorders_no_weight(checkpoints, arch, dtype, rows, tokens, pass_tokens):
    assert kernels.packed_kernels(), "this torch's packed oneDNN ops failed their probe"
    model_dir = checkpoints(f"{arch}-base", arch, "base", tokenizer=None)
    log = steady_state_log(model_dir, dtype, rows, tokens, pass_tokens)
    groups = load_encoder(model_dir, "base").cfg.groups
    per_block = groups.query + groups.attn_out + groups.ffn_in + groups.ffn_out  # query, key, value stacked
    assert arch == "bert" or per_block > 4
    products = [line for line in log if ",inner_product," in line]
    assert len(products) == 2 * per_block  # two blocks, one inner product per projection (or stack) and group
    assert [line for line in log if ",reorder," in line or ",convolution," in line] == []


def test_packed_weights_replace_the_plain_ones_and_unpack_exactly(checkpoints):
    model_dir = checkpoints("squeezebert-base", "squeezebert", "base", tokenizer=None)
    model = load_encoder(model_dir, "base")
    projections = [m for m in model.modules() if isinstance(m, GroupedProjection)]
    assert any(p.groups > 1 for p in projections) and any(p.groups == 1 for p in projections)
    for block in model.blocks:  # query, key and value stacked into one weight (by group where grouped)
        trio = (block.query, block.key, block.value)
        stack = block.query.stacked[0]
        assert [p.stacked for p in trio] == [(stack, 0), (stack, 1), (stack, 2)]
        assert all(p.weight.numel() == 0 and not p.group_weights for p in trio)
        packed = stack.weight if isinstance(stack.weight, tuple) else (stack.weight,)
        assert len(packed) == block.query.groups and all(w.is_mkldnn for w in packed)
    for p in projections:  # the rest packed whole (dense) or by group, the plain weight released
        if p.stacked is None:
            packed = p.group_weights or (p.weight,)
            assert len(packed) == p.groups and all(w.is_mkldnn for w in packed)
            assert p.groups == 1 or p.weight.numel() == 0
    state = model.state_dict()
    assert not any(t.is_mkldnn for t in state.values())
    assert model.parameter_count() == sum(t.numel() for t in state.values())
    for groups in (1, 4):
        plain = GroupedProjection(64, 128, groups)
        torch.nn.init.normal_(plain.weight)
        kept = plain.weight.detach().clone()
        plain.pack()
        assert torch.equal(plain.plain_weight(), kept) and torch.equal(plain.state_dict()["weight"], kept)


def test_without_the_packed_ops_weights_stay_plain(checkpoints, monkeypatch):
    """A torch whose packed ops fail their probe: the model loads with plain weights, and doctor says so."""
    monkeypatch.setattr(kernels, "packed_kernels", lambda: False)
    for arch in ("bert", "squeezebert"):
        model = load_encoder(checkpoints(f"{arch}-base", arch, "base", tokenizer=None), "base")
        assert not any(p.is_mkldnn for p in model.parameters())
        assert not any(m.group_weights or m.stacked for m in model.modules() if isinstance(m, GroupedProjection))
    assert "re-laid out on every call" in kernels.projection_kernel()


@pytest.mark.parametrize("arch", ["bert", "squeezebert"])
def test_a_stacked_projection_runs_alone_when_a_sibling_is_swapped_out(checkpoints, arch):
    """Calibration swaps query, key or value one at a time: the others then run alone from their stack,
    and the block computes what it did with all three stacked."""
    model = load_encoder(checkpoints(f"{arch}-base", arch, "base", tokenizer=None), "base")
    ids = torch.randint(5, model.cfg.vocab_size, (2, 9))
    block = model.blocks[0]
    with torch.inference_mode():
        stacked = model(ids, torch.ones_like(ids))
        key = GroupedProjection(block.key.in_features, block.key.out_features, block.key.groups)
        key.load_state_dict(block.key.state_dict())
        original, block.key = block.key, key  # plain, not stacked: query and value run alone
        alone = model(ids, torch.ones_like(ids))
        block.key = original
        assert torch.equal(model(ids, torch.ones_like(ids)), stacked)
    torch.testing.assert_close(alone, stacked, atol=1e-5, rtol=1e-5)
