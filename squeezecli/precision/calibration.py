"""How each projection of a model runs in int8, chosen on a text sample (calibration_texts.py): with
activation ranges per kernel call or per token, int8 weights with fp32 activations, or fp32 where int8
cannot stay faithful. Damage is judged on what the head reads from the last hidden states.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ..model.encoder import Encoder
    from ..model.tokenizer import Tokenizer

# Per token costs about a third more CPU time per projection than per call: it must remove at least
# this share of the all-int8 error (1 - cosine) to be used when the target is out of reach...
PER_TOKEN_MIN_GAIN = 0.25
# ...and then goes on as few projections as leave at most this much more error than all per token.
# (On all-MiniLM-L6-v2 the per-token overhead sits in the feed-forward projections, which need it anyway:
# the rest cost next to nothing, so aiming short of the best saves no time.)
CLOSE_TO_BEST = 0.02
WEIGHT_ONLY = "weight"  # the plan's name for artifact.py's weight-only projections (defined here: no torch)

# What the head reads from the last hidden states, which is where int8 damage is judged.
METRICS = {
    "base": "cosine of mean-pooled last hidden states (sentence embeddings)",
    "sequence": "cosine of the first token's last hidden state (what the classifier reads)",
    "token": "cosine of each token's last hidden state, averaged per text",
    "qa": "cosine of each token's last hidden state, averaged per text",
}


@dataclass
class Calibration:
    plan: dict[str, str]  # projection -> "tensor" | "token" (int8, activation ranges per call or per token)
    #                       | "weight" (int8 weights, fp32 activations) | "fp32"
    cosines: dict[str, float]  # "all_int8_per_tensor", "all_int8_per_token" (if measured), "chosen"
    metric: str
    damage: dict[str, float] = field(default_factory=dict)  # fp32 ones: 1 - cosine with only it int8


def batches(tokenizer: Tokenizer, texts: Sequence[str], max_length: int, size: int = 16) -> list[dict[str, torch.Tensor]]:
    """Texts in padded batches of similar length, as squeeze batches them in use."""
    from ..model.tokenizer import collate

    encodings = sorted(tokenizer.encode(list(texts), max_length=max_length), key=lambda e: len(e.ids))
    return [collate(encodings[i : i + size], tokenizer.pad_id) for i in range(0, len(encodings), size)]


def choose(
    encoder: Encoder,
    candidates: dict[str, dict[str, nn.Module]],
    fixed: dict[str, nn.Module],
    batches: list[dict[str, torch.Tensor]],
    target: float,
    floor: float,
) -> Calibration:
    """How each projection should run, as cheaply as the mean cosine between the fp32 and int8 models on
    `batches` allows. `candidates` maps each projection (an encoder submodule name) to its int8 stand-ins
    by activation granularity ("tensor", "token"); `fixed` modules are int8 throughout. The encoder is
    left as it came.

    Per token where it pays: everything per tensor if that reaches `target`; else as few projections
    per token as reach the target, those whose own output per token corrects most first. If even
    all per token falls short of it, per token is used only if it removes at least PER_TOKEN_MIN_GAIN of
    the per-tensor error (outlier tokens, as in real checkpoints; random weights have none), and then on
    as few as come within CLOSE_TO_BEST of its best. Before that, when neither granularity reaches the
    target but int8 weights with fp32 activations do (candidates[name]["weight"]), that is the plan.
    fp32 only where int8 cannot keep the model faithful:
    if all per token (or all per tensor, whichever is better) stays below `floor`, as few as reach the
    floor go back to fp32, those whose int8 does the most damage alone first.

    Measuring one projection alone in block i reruns only blocks i.. from the fp32 hidden states cached
    at their input; "as few as" is a bisection over the ranking, taking the cosine to rise with every
    step down it. The per-token ranking is by each projection's own output error, one pass for all:
    ranking by damage to the whole model, as fp32 is ranked, costs some 20 passes of the model.
    """
    import torch

    head = encoder.head_kind
    names = list(candidates)
    with torch.inference_mode():
        references = [_trace(encoder, batch) for batch in batches]

        def cosine(plan: dict[str, str], start: int = 0) -> float:
            """Projections not in `plan`, or planned "fp32", run the encoder's own fp32 modules."""
            int8 = {name: candidates[name][mode] for name, mode in plan.items() if mode != "fp32"}
            scores = []
            with _swapped(encoder, {**fixed, **int8}):
                for batch, (inputs, mask, reference) in zip(batches, references):
                    x = encoder.embed(batch["input_ids"], batch["token_type_ids"]) if start == 0 else inputs[start]
                    for block in encoder.blocks[start:]:
                        x = block(x, mask)
                    scores.append(_agreement(reference, x, batch["attention_mask"], head))
            return torch.cat(scores).mean().item()

        cosines = {"all_int8_per_tensor": cosine(dict.fromkeys(names, "tensor"))}
        result = Calibration(dict.fromkeys(names, "tensor"), cosines, METRICS[head])
        cosines["chosen"] = cosines["all_int8_per_tensor"]
        if cosines["chosen"] >= target:
            return result
        cosines["all_int8_per_token"] = cosine(dict.fromkeys(names, "token"))
        best = "token" if cosines["all_int8_per_token"] >= cosines["all_int8_per_tensor"] else "tensor"
        if cosines[f"all_int8_per_{best}"] < target and all(WEIGHT_ONLY in modes for modes in candidates.values()):
            # No int8-activation plan reaches the target; if rounding the weights alone does, the model's
            # trouble is its activations: keep those fp32 everywhere (the artifact stays int8-sized).
            cosines["weight_only"] = cosine(dict.fromkeys(names, WEIGHT_ONLY))
            if cosines["weight_only"] >= target:
                result.plan, cosines["chosen"] = dict.fromkeys(names, WEIGHT_ONLY), cosines["weight_only"]
                return result
        if cosines[f"all_int8_per_{best}"] < floor:
            damage = {name: 1 - cosine({name: best}, start=_block_of(name)) for name in names}
            ranked = sorted(names, key=damage.__getitem__, reverse=True)
            k, cosines["chosen"] = _fewest(lambda k: cosine(_first(ranked, k, "fp32", best)), len(names), floor)
            result.plan = _first(ranked, k, "fp32", best)
            result.damage = {name: damage[name] for name in ranked[:k]}
            return result
        reachable = cosines["all_int8_per_token"]
        if reachable < target and 1 - reachable > (1 - PER_TOKEN_MIN_GAIN) * (1 - cosines["all_int8_per_tensor"]):
            return result  # per token is not the fix: the error is rounding, not outlier tokens
        aim = target if reachable >= target else reachable - CLOSE_TO_BEST * (1 - reachable)
        ranked = _ranked_by_per_token_gain(encoder, candidates, batches)
        k, cosines["chosen"] = _fewest(lambda k: cosine(_first(ranked, k, "token", "tensor")), len(names), aim,
                                       known=cosines["all_int8_per_token"])
        result.plan = _first(ranked, k, "token", "tensor")
        return result


def _first(ranked: list[str], k: int, mode: str, rest: str) -> dict[str, str]:
    """The plan with the first k of `ranked` in `mode`, the others in `rest`."""
    return {name: mode if i < k else rest for i, name in enumerate(ranked)}


def _fewest(score: Callable[[int], float], n: int, target: float, known: float | None = None) -> tuple[int, float]:
    """The smallest k in 1..n with score(k) >= target, and that score, by bisection (score(0) < target
    is known; `known` is score(n) if it is); (n, score(n)) if even n falls short."""
    best = score(n) if known is None else known
    if best < target:
        return n, best
    low, high = 0, n
    while high - low > 1:
        middle = (low + high) // 2
        reached = score(middle)
        if reached >= target:
            high, best = middle, reached
        else:
            low = middle
    return high, best


def _ranked_by_per_token_gain(
    encoder: Encoder, candidates: dict[str, dict[str, nn.Module]], batches: list[dict[str, torch.Tensor]]
) -> list[str]:
    """The projections by how much per-token activation ranges cut their own output error against fp32
    on `batches` (relative squared error, per call minus per token), most first."""
    from ..model.encoder import whole

    errors = {name: dict.fromkeys(candidates[name], 0.0) for name in candidates}
    energy = dict.fromkeys(candidates, 0.0)

    def measure(name: str):
        def hook(module: nn.Module, args: tuple) -> None:
            x = whole(args[0])  # an int8 projection upstream may hand on its groups' pieces
            # forward, not the call: no hooks again, and the plain product, where the encoder's call may
            # fuse a residual or an activation into it.
            reference = module.forward(x)
            energy[name] += reference.square().sum().item()
            for mode, candidate in candidates[name].items():
                errors[name][mode] += (candidate(x) - reference).square().sum().item()
        return hook

    hooks = [encoder.get_submodule(name).register_forward_pre_hook(measure(name)) for name in candidates]
    try:
        for batch in batches:
            encoder(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    finally:
        for hook in hooks:
            hook.remove()
    gain = {name: (e["tensor"] - e["token"]) / max(energy[name], 1e-30) for name, e in errors.items()}
    return sorted(candidates, key=gain.__getitem__, reverse=True)


def _block_of(name: str) -> int:
    return int(name.split(".")[1])  # "blocks.<i>.<projection>"


def _trace(encoder: Encoder, batch: dict[str, torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """One fp32 pass: the hidden states entering each block, the attention mask the blocks get, and
    the last hidden states."""
    inputs: list[tuple] = []
    outputs: list[torch.Tensor] = []
    hooks = [block.register_forward_pre_hook(lambda _, args: inputs.append(args)) for block in encoder.blocks]
    hooks.append(encoder.blocks[-1].register_forward_hook(lambda _, args, out: outputs.append(out)))
    try:
        encoder(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    finally:
        for hook in hooks:
            hook.remove()
    return [args[0] for args in inputs], inputs[0][1], outputs[0]


def _agreement(reference: torch.Tensor, got: torch.Tensor, attention_mask: torch.Tensor, head: str) -> torch.Tensor:
    """Per-text cosine [B] between two last-hidden-state tensors [B, T, H], as the head reads them."""
    import torch.nn.functional as F

    real = attention_mask.unsqueeze(-1).float()  # [B, T, 1]
    if head == "base":
        return F.cosine_similarity((reference * real).sum(1), (got * real).sum(1), dim=-1)  # [B]
    if head == "sequence":
        return F.cosine_similarity(reference[:, 0], got[:, 0], dim=-1)  # [B]
    per_token = F.cosine_similarity(reference, got, dim=-1)  # [B, T]
    return (per_token * real[..., 0]).sum(1) / real[..., 0].sum(1)  # [B]


@contextmanager
def _swapped(model: nn.Module, replacements: dict[str, nn.Module]) -> Iterator[None]:
    """`model` with the named submodules replaced, restored on exit."""
    originals = {}
    try:
        for name, module in replacements.items():
            parent, attr = name.rsplit(".", 1)
            owner = model.get_submodule(parent)
            originals[name] = getattr(owner, attr)
            setattr(owner, attr, module)
        yield
    finally:
        for name, module in originals.items():
            parent, attr = name.rsplit(".", 1)
            setattr(model.get_submodule(parent), attr, module)
