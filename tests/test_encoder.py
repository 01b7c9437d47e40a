"""Our encoder against transformers' own models on the same random weights."""

import json
import pickle

import factory
import pytest
import torch
from safetensors.torch import load_file, save_file

from squeezecli.errors import ModelError
from squeezecli.model.weights import load_encoder

ARCHS = ["bert", "squeezebert", "distilbert", "roberta"]
HEADS = ["base", "sequence", "token", "qa"]


def batch(vocab_size: int, pad: int, lengths=(17, 5, 30, 1), seed: int = 0):
    """Mixed-length inputs padded to the longest, as the runtime builds them."""
    gen = torch.Generator().manual_seed(seed)
    t = max(lengths)
    ids = torch.full((len(lengths), t), pad, dtype=torch.long)
    mask = torch.zeros((len(lengths), t), dtype=torch.long)
    for row, n in enumerate(lengths):
        ids[row, :n] = torch.randint(3, vocab_size, (n,), generator=gen)
        mask[row, :n] = 1
    return ids, mask


def assert_close_on_real_tokens(ours, theirs, mask, head, atol=1e-4):
    assert ours.shape == theirs.shape
    if head in ("sequence",):
        torch.testing.assert_close(ours, theirs, atol=atol, rtol=1e-4)
    else:
        keep = mask.bool()
        torch.testing.assert_close(ours[keep], theirs[keep], atol=atol, rtol=1e-4)


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("arch", ARCHS)
def test_parity_with_transformers(tmp_path, arch, head):
    ref = factory.make_model(arch, head, seed=hash((arch, head)) % 1000)
    factory.save(ref, tmp_path)
    ours = load_encoder(tmp_path, head)
    ids, mask = batch(ref.config.vocab_size, ref.config.pad_token_id)
    types = None
    if arch in ("bert", "squeezebert"):  # pairs: second segment gets type 1
        types = torch.zeros_like(ids)
        types[:, 3:] = 1
        types *= mask
    with torch.no_grad():
        got = ours(ids, mask, types)
    assert_close_on_real_tokens(got, factory.hf_outputs(ref, head, ids, mask, types), mask, head)


def test_full_size_squeezebert(tmp_path):
    """The real squeezebert-uncased shape: grouped q/k/v/ffn (4), dense post-attention (1)."""
    ref = factory.make_model("squeezebert", "sequence", scale=0.02, **factory.SQUEEZEBERT_UNCASED)
    factory.save(ref, tmp_path)
    ours = load_encoder(tmp_path, "sequence")
    block = ours.blocks[0]
    assert (block.query.groups, block.attn_out.groups, block.ffn_in.groups, block.ffn_out.groups) == (4, 1, 4, 4)
    assert ours.parameter_count() > 50_000_000
    ids, mask = batch(30528, 0, lengths=(64, 9, 128, 33))
    with torch.no_grad():
        got = ours(ids, mask)
    torch.testing.assert_close(got, factory.hf_outputs(ref, "sequence", ids, mask), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("variant", ["sharded", "bin", "bin-sharded", "fp16"])
def test_checkpoint_formats(tmp_path, variant):
    ref = factory.make_model("bert", "sequence")
    if variant == "fp16":
        ref = ref.half()
    factory.save(ref, tmp_path, safe=not variant.startswith("bin"),
                 max_shard_size="100KB" if variant.endswith("sharded") else None)
    names = {p.name for p in tmp_path.iterdir()}
    if variant.endswith("sharded"):
        assert any(n.endswith(".index.json") for n in names)
    ours = load_encoder(tmp_path, "sequence")
    assert all(p.dtype == torch.float32 for p in ours.parameters())
    ids, mask = batch(1000, 0)
    with torch.no_grad():
        got = ours(ids, mask)
    expected = factory.hf_outputs(ref.float(), "sequence", ids, mask)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_missing_and_unexpected_tensors_are_named(tmp_path):
    factory.save(factory.make_model("bert", "sequence"), tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    del tensors["bert.encoder.layer.1.output.dense.weight"]
    save_file(tensors, tmp_path / "model.safetensors")
    with pytest.raises(ModelError, match=r"lacks .*: bert\.encoder\.layer\.1\.output\.dense\.weight$"):
        load_encoder(tmp_path, "sequence")

    tensors["bert.encoder.layer.1.output.dense.weight"] = torch.zeros(64, 128)
    tensors["bert.encoder.layer.0.mystery.weight"] = torch.zeros(3)
    save_file(tensors, tmp_path / "model.safetensors")
    with pytest.raises(ModelError, match=r"does not know: bert\.encoder\.layer\.0\.mystery\.weight"):
        load_encoder(tmp_path, "sequence")


def test_wrong_shape_is_an_error(tmp_path):
    factory.save(factory.make_model("distilbert", "base"), tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["hidden_dim"] = 256
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="wrong shape"):
        load_encoder(tmp_path, "base")


def test_head_absent_from_checkpoint(tmp_path):
    factory.save(factory.make_model("roberta", "base"), tmp_path)
    with pytest.raises(ModelError, match="qa model"):
        load_encoder(tmp_path, "qa")


class _Exploit:
    def __reduce__(self):
        return (print, ("pwned",))


def test_code_executing_pickle_is_refused(tmp_path, capsys):
    factory.save(factory.make_model("bert", "base"), tmp_path, safe=False)
    with open(tmp_path / "pytorch_model.bin", "wb") as f:
        pickle.dump({"embeddings.word_embeddings.weight": _Exploit()}, f, protocol=2)
    with pytest.raises(ModelError, match="refusing to load pytorch_model.bin"):
        load_encoder(tmp_path, "base")
    assert "pwned" not in capsys.readouterr().out


def test_tensors_are_read_out_of_the_file_not_left_mapped(tmp_path):
    """Each tensor is converted (or copied) out of the file's memory map: the results are what the file
    held, in memory of their own, still right after the file is overwritten and removed; a failing
    conversion ends the read with its own error."""
    from squeezecli.checkpoint import tensorfile

    path = tmp_path / "model.safetensors"
    stored = {"a": torch.randn(300, 70), "b": torch.arange(5, dtype=torch.int64), "c": torch.zeros(0, 4),
              "d": torch.randn(3).to(torch.bfloat16)}
    tensorfile.write(path, stored)
    plain = dict(tensorfile.tensors(path))
    cast = dict(tensorfile.tensors(path, lambda name, t: t.to(torch.bfloat16) if t.is_floating_point() else t))
    path.write_bytes(b"\0" * path.stat().st_size)
    path.unlink()
    for name, tensor in stored.items():
        assert torch.equal(plain[name], tensor) and plain[name].shape == tensor.shape
        expected = tensor.to(torch.bfloat16) if tensor.is_floating_point() else tensor
        assert torch.equal(cast[name], expected)
    tensorfile.write(path, stored)

    def refuses(name, tensor):
        if name == "b":
            raise ModelError("refused b")
        return tensor

    with pytest.raises(ModelError, match="refused b"):
        dict(tensorfile.tensors(path, refuses))
