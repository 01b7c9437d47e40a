"""How each projection of a model runs in int8, chosen on a text sample (calibration_texts.py): int8
activations (scaled per token), int8 weights with fp32 activations, or fp32 where int8 cannot stay
faithful. Damage is judged on what the head reads from the last hidden states.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import heads
from ..model.encoder import Encoder, Keys
from ..model.runtime import length_batches
from ..model.tokenizer import Tokenizer, collate

TOKEN = "token"  # the plan's name for int8 projections (activations quantized per token)
WEIGHT_ONLY = "weight"  # the plan's name for artifact.py's weight-only projections

# What the head reads from the last hidden states, which is where int8 damage is judged.
METRICS = {
    heads.BASE: "cosine of mean-pooled last hidden states (sentence embeddings)",
    heads.SEQUENCE: "cosine of the first token's last hidden state (what the classifier reads)",
    heads.TOKEN: "cosine of each token's last hidden state, averaged per text",
    heads.QA: "cosine of each token's last hidden state, averaged per text",
}


@dataclass
class Calibration:
    plan: dict[str, str]  # projection -> "token" (int8, activations per token) | "weight" (int8 weights, fp32
    #                       activations) | "fp32"
    cosines: dict[str, float]  # "all_int8", "weight_only" (if measured), "chosen"
    metric: str
    damage: dict[str, float] = field(default_factory=dict)  # fp32 ones: 1 - cosine with only it int8


def batches(tokenizer: Tokenizer, texts: Sequence[str], max_length: int, size: int = 16) -> list[dict[str, torch.Tensor]]:
    """Texts in padded batches of similar length, as squeeze batches them in use."""
    encodings = tokenizer.encode(list(texts), max_length=max_length)
    return [collate([encodings[i] for i in batch], tokenizer.pad_id)
            for batch in length_batches([len(encoding.ids) for encoding in encodings], size)]


def choose(
    encoder: Encoder,
    candidates: dict[str, dict[str, nn.Module]],
    fixed: dict[str, nn.Module],
    batches: list[dict[str, torch.Tensor]],
    target: float,
    floor: float,
) -> Calibration:
    """How each projection should run, as cheaply as the mean cosine between the fp32 and int8 models on
    `batches` allows. `candidates` maps each projection (an encoder submodule name) to its stand-ins by
    mode ("token": int8 activations per token; "weight": int8 weights, fp32 activations); `fixed` modules
    are int8 throughout. The encoder is left as it came.

    All int8 if that reaches `target`; else, if int8 weights with fp32 activations do, that everywhere
    (the model's trouble is its activations: real MiniLM's near-tied neighbours); else int8 as long as it
    stays above `floor`; below it, as few projections as reach the floor go back to fp32, those whose int8
    does the most damage alone first. Measuring one projection alone in block i reruns only blocks i..
    from the fp32 hidden states cached at their input; "as few as" is a bisection over the ranking.
    """
    head = encoder.head_kind
    names = list(candidates)
    with torch.inference_mode():
        references = [_trace(encoder, batch) for batch in batches]

        def cosine(plan: dict[str, str], start: int = 0) -> float:
            """Projections not in `plan`, or planned "fp32", run the encoder's own fp32 modules."""
            int8 = {name: candidates[name][mode] for name, mode in plan.items() if mode != "fp32"}
            scores = []
            with _swapped(encoder, {**fixed, **int8}):
                for batch, (inputs, keys, reference) in zip(batches, references):
                    x = encoder.embed(batch["input_ids"], batch["token_type_ids"]) if start == 0 else inputs[start]
                    for block in encoder.blocks[start:]:
                        x = block(x, keys)
                    scores.append(_agreement(reference, x, batch["attention_mask"], head))
            return torch.cat(scores).mean().item()

        cosines = {"all_int8": cosine(dict.fromkeys(names, TOKEN))}
        result = Calibration(dict.fromkeys(names, TOKEN), cosines, METRICS[head])
        cosines["chosen"] = cosines["all_int8"]
        if cosines["chosen"] >= target:
            return result
        if all(WEIGHT_ONLY in modes for modes in candidates.values()):
            cosines["weight_only"] = cosine(dict.fromkeys(names, WEIGHT_ONLY))
            if cosines["weight_only"] >= target:
                result.plan, cosines["chosen"] = dict.fromkeys(names, WEIGHT_ONLY), cosines["weight_only"]
                return result
        if cosines["all_int8"] >= floor:
            return result
        damage = {name: 1 - cosine({name: TOKEN}, start=_block_of(name)) for name in names}
        ranked = sorted(names, key=damage.__getitem__, reverse=True)
        k, cosines["chosen"] = _fewest(lambda k: cosine(_first(ranked, k, "fp32", TOKEN)), len(names), floor)
        result.plan = _first(ranked, k, "fp32", TOKEN)
        result.damage = {name: damage[name] for name in ranked[:k]}
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


def _block_of(name: str) -> int:
    return int(name.split(".")[1])  # "blocks.<i>.<projection>"


def _trace(encoder: Encoder, batch: dict[str, torch.Tensor]) -> tuple[list[torch.Tensor], Keys, torch.Tensor]:
    """One fp32 pass: the hidden states entering each block, the keys the blocks get (model.encoder.Keys), and
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
    real = attention_mask.unsqueeze(-1).float()  # [B, T, 1]
    if head == heads.BASE:
        return F.cosine_similarity((reference * real).sum(1), (got * real).sum(1), dim=-1)  # [B]
    if head == heads.SEQUENCE:
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
