"""The speed and memory paths compute what the plain ones do: fused projection epilogues, attention keys
worked out once per forward (Keys), batches run in slices of tokens_per_pass tokens; and loading a
model never imports torch._dynamo (over a second of start-up)."""

import dataclasses
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from squeezecli.model import encoder, runtime
from squeezecli.model import kernels as kernel_ops
from squeezecli.model.projection import GroupedProjection
from squeezecli.model.kernels import ACTIVATIONS
from squeezecli.model.runtime import Runtime


def projection(groups: int, seed: int = 0, kernels: str = "plain") -> GroupedProjection:
    gen = torch.Generator().manual_seed(seed)
    proj = GroupedProjection(64, 128, groups)
    with torch.no_grad():
        proj.weight.copy_(torch.randn(proj.weight.shape, generator=gen) * 0.1)
        proj.bias.copy_(torch.randn(128, generator=gen))
    if kernels == "packed":
        proj.pack()
        assert all(w.is_mkldnn for w in proj.group_weights or (proj.weight,))  # by group where grouped
    return proj


def dense(proj: GroupedProjection, x: torch.Tensor) -> torch.Tensor:
    """The reference product: groups as one block-diagonal dense weight."""
    weight = proj.plain_weight()
    weight = torch.block_diag(*weight) if proj.groups > 1 else weight  # [out, in]
    return F.linear(x, weight, proj.bias)


@pytest.fixture(params=["packed", "fused", "plain"])
def kernels(request, monkeypatch):
    """Every test runs with the kernels a load picks (oneDNN's inner product on packed weights, one per
    group where grouped), with oneDNN's fused convolution on plain weights (a torch whose packed ops fail
    their probe), and with the F.conv2d fallback used without either."""
    if request.param != "packed":
        monkeypatch.setattr(kernel_ops, "packed_kernels", lambda: False)
    if request.param == "plain":
        monkeypatch.setattr(kernel_ops, "_fused_convolution", lambda: None)
    elif kernel_ops._fused_convolution() is None:
        pytest.skip("this torch has no fused oneDNN convolution")
    return request.param


@pytest.mark.parametrize("groups", [1, 4])
@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_activation_epilogue(kernels, groups, activation):
    proj, x = projection(groups, kernels=kernels), torch.randn(3, 7, 64)
    with torch.inference_mode():
        expected = ACTIVATIONS[activation](dense(proj, x))
        torch.testing.assert_close(proj(x, activation=activation), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("groups", [1, 4])
@pytest.mark.parametrize("in_place", [False, True])
def test_residual_epilogue(kernels, groups, in_place):
    proj, x, residual = projection(groups, kernels=kernels), torch.randn(3, 7, 64), torch.randn(3, 7, 128)
    kept = residual.clone()
    with torch.inference_mode():
        expected = dense(proj, x) + residual
        got = proj(x, residual=residual, in_place=in_place)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    if not in_place:
        assert torch.equal(residual, kept), "an out-of-place residual must not be touched"


@pytest.mark.parametrize("activation", [None, "gelu", "quick_gelu"])
def test_pieces_in_and_out_compute_the_whole(kernels, activation):
    """A grouped projection takes its input as `prepare` makes it (its groups' pieces where each group runs
    apart) or as the previous projection's pieces, and hands on pieces where asked: glued, the same."""
    first, second = projection(4, seed=1, kernels=kernels), GroupedProjection(128, 64, 4)
    with torch.no_grad():
        second.weight.copy_(torch.randn(second.weight.shape) * 0.1)
        second.bias.copy_(torch.randn(64))
    if kernels == "packed":
        second.pack()
    x, residual = torch.randn(3, 7, 64), torch.randn(3, 7, 64)
    with torch.inference_mode():
        prepared = first.prepare(x)
        assert isinstance(prepared, list) == (kernels == "packed")
        inner = first(prepared, activation=activation, pieces=True)
        expected = dense(first, x) if activation is None else ACTIVATIONS[activation](dense(first, x))
        torch.testing.assert_close(kernel_ops.whole(inner), expected, atol=1e-5, rtol=1e-5)
        out = second(inner, residual=residual.clone(), in_place=True)
        torch.testing.assert_close(out, dense(second, expected) + residual, atol=1e-4, rtol=1e-4)


def test_in_place_residual_that_is_not_contiguous_still_adds(kernels):
    proj, x = projection(4, kernels=kernels), torch.randn(3, 7, 64)
    residual = torch.randn(7, 3, 128).transpose(0, 1)  # [3, 7, 128], not contiguous
    with torch.inference_mode():
        expected = dense(proj, x) + residual
        torch.testing.assert_close(proj(x, residual=residual, in_place=True), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("groups", [1, 4])
@pytest.mark.parametrize("epilogue", ["none", "activation", "residual", "in-place residual"])
def test_empty_input(groups, epilogue):
    """No tokens at all (an empty batch): an empty output of the right width, whatever the epilogue, before
    any kernel is asked (oneDNN refuses zero-width images), so the fused and plain paths are one here."""
    residual = torch.randn(2, 0, 128)
    kwargs = {"none": {}, "activation": {"activation": "gelu"}, "residual": {"residual": residual},
              "in-place residual": {"residual": residual, "in_place": True}}[epilogue]
    with torch.inference_mode():
        for kernels in ("plain", "packed"):
            assert projection(groups, kernels=kernels)(torch.randn(2, 0, 64), **kwargs).shape == (2, 0, 128)


@pytest.fixture(scope="module")
def squeezebert_dir(checkpoints):
    return checkpoints("squeezebert-sequence", "squeezebert", "sequence", tokenizer=None)  # factory's default


@pytest.fixture(scope="module")
def squeezebert_base_dir(checkpoints):
    return checkpoints("squeezebert-base", "squeezebert", "base", tokenizer=None)


def test_keys_are_worked_out_once_per_forward_and_mask_exactly_the_padding(squeezebert_dir, monkeypatch):
    """Every block of one forward gets the same Keys; a right-padded batch pads keys to a multiple of
    KEY_BLOCK with -inf exactly on the padding; any other mask goes to SDPA as it is."""
    lengths = torch.tensor([9, 4, 1])
    right = (torch.arange(9)[None, :] < lengths[:, None]).long()  # [3, 9]
    keys = encoder.Keys(right)
    assert keys.ragged is None and keys.width == 16
    bias = keys.bias(torch.float32)
    assert bias.shape == (3, 1, 1, 16) and keys.bias(torch.float32) is bias
    assert torch.equal(torch.isinf(bias.view(3, 16)), torch.arange(16)[None, :] >= lengths[:, None])
    assert keys.bias(torch.bfloat16).dtype == torch.bfloat16
    left = right.flip(1)
    assert torch.equal(encoder.Keys(left).ragged, left.bool().view(3, 1, 1, 9))

    model = Runtime.from_dir(squeezebert_dir, "sequence").encoder
    seen = []
    forward = encoder.Block.forward
    monkeypatch.setattr(encoder.Block, "forward", lambda self, x, keys: seen.append(keys) or forward(self, x, keys))
    ids = torch.randint(5, model.cfg.vocab_size, (3, 9))  # [B, T]
    with torch.inference_mode():
        batch = model(ids, right)
        alone = model(ids[1:2, :4], right[1:2, :4])
    assert len(seen) == 2 * len(model.blocks) and len({id(k) for k in seen[:len(model.blocks)]}) == 1
    torch.testing.assert_close(batch[1:2], alone)  # row 1 padded beside longer rows is what it is alone


def test_runtime_runs_a_batch_in_passes_of_similar_length_with_the_same_output(squeezebert_base_dir, monkeypatch):
    """Rows sorted by length into passes that hold at most tokens_per_pass tokens (a longer row alone),
    each padded only to its own longest row; the output is what one pass over the padded batch gives."""
    model = Runtime.from_dir(squeezebert_base_dir, "base")
    texts = [" ".join(["word"] * n) + " end" for n in (3, 40, 17, 25, 8, 1, 33)]
    encodings = model.tokenizer.encode(texts, max_length=64)
    lengths = [len(e.ids) for e in encodings]
    whole = dataclasses.replace(model, tokens_per_pass=10 ** 6).forward(encodings)  # [7, T, H], one pass
    passes = []
    model = dataclasses.replace(model, tokens_per_pass=2 * max(lengths))  # two of the longest rows a pass
    monkeypatch.setattr(runtime, "MIN_PASS_TOKENS", 0)

    class Spy:
        head_kind = model.encoder.head_kind

        def __call__(self, ids, mask, types):
            passes.append([int(n) for n in mask.sum(1)])  # each pass's rows, by their lengths
            return real(ids, mask, types)

    real, model = model.encoder, dataclasses.replace(model, encoder=Spy())
    sliced = model.forward(encodings)
    assert sorted(n for p in passes for n in p) == sorted(lengths)
    for lengths_of_pass in passes:
        assert len(lengths_of_pass) == 1 or max(lengths_of_pass) * len(lengths_of_pass) <= 2 * max(lengths)
        assert lengths_of_pass == sorted(lengths_of_pass)
    assert len(passes) > 1
    for row, n in enumerate(lengths):
        torch.testing.assert_close(sliced[row, :n], whole[row, :n], rtol=1e-5, atol=1e-5)  # padding: undefined


def test_loading_a_model_does_not_import_dynamo(squeezebert_dir):
    code = (
        "import sys; from squeezecli.model.weights import load_encoder; load_encoder(sys.argv[1], 'sequence'); "
        "print('torch._dynamo' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(squeezebert_dir)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_passes_are_bigger_only_on_a_cpu_with_amx_tiles_and_within_the_activation_bound(squeezebert_dir, monkeypatch):
    """1,024 tokens a pass without AMX; with it, more, as the widest fp32 activation allows; the loader
    takes the CPU's flags from precision/cpu.py."""
    from squeezecli.assembly import loader
    from squeezecli.checkpoint.config import read_config
    from squeezecli.precision import cpu

    cfg, _ = read_config(squeezebert_dir)
    assert runtime.pass_tokens(cfg, matrix_tiles=False) == runtime.TOKENS_PER_PASS
    for width in (384, 1536, 3072, 4096, 65536):
        cfg_wide = dataclasses.replace(cfg, intermediate_size=width)
        tokens = runtime.pass_tokens(cfg_wide, matrix_tiles=True)
        assert runtime.TOKENS_PER_PASS <= tokens <= runtime.AMX_TOKENS_PER_PASS
        assert tokens == runtime.TOKENS_PER_PASS or tokens * width * 4 <= runtime.PASS_ACTIVATION_BYTES
    assert runtime.pass_tokens(dataclasses.replace(cfg, intermediate_size=1536), matrix_tiles=True) > 2048
    for flags, expected in ((frozenset({"avx512f"}), runtime.TOKENS_PER_PASS),
                            (frozenset({"avx512f", "amx_tile", "amx_bf16"}), runtime.pass_tokens(cfg, True))):
        monkeypatch.setattr(cpu, "cpu_flags", lambda flags=flags: flags)
        assert loader.load_runtime(str(squeezebert_dir), "sequence", precision="fp32").tokens_per_pass == expected


def test_freed_memory_goes_back_to_the_os_only_once_enough_of_it_stays_resident():
    """After a batch that left more than RELEASE_FREE_ABOVE resident and free, malloc_trim runs and the
    resident size drops; after one that left little, it does not run."""
    from squeezecli.model import process

    process.reuse_freed_memory()
    process.release_free_memory()  # where the count starts
    assert not process.release_free_memory()
    blocks = [b"x" * (1 << 20) for _ in range(2 * process.RELEASE_FREE_ABOVE >> 20)]  # written: resident
    del blocks
    before = process.resident_bytes()
    assert process.release_free_memory()
    assert before - process.resident_bytes() > process.RELEASE_FREE_ABOVE
    assert not process.release_free_memory()
