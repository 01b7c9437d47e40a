"""A checkpoint or a cached int8 entry made into a `Runtime` with the head a task asks for (after its
`Preview`, the model before its weights are read, has been checked), and a checkpoint quantized into the
int8 artifact a cache entry holds. The torch side of the assembly: imported only when a model is about to
run or be built.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import torch

from ..checkpoint import heads, layout
from ..checkpoint.config import EncoderConfig, labels_of, read_config
from ..checkpoint.layout import CONFIG_FILE
from ..environment import Environment
from ..errors import CacheError, ModelError, SqueezeError
from ..model.encoder import Encoder
from ..model.runtime import Preview, Runtime, pass_tokens
from ..model.tokenizer import Tokenizer
from ..model.weights import architecture_head, checkpoint_head, load_encoder
from ..precision import cpu
from ..precision.names import BF16, FP32, INT8
from ..store import build, cache, catalogue, files
from ..store.sources import Source


def inspect_checkpoint(source: Source, directory: Path, head_hint: str | None = None) -> build.Checkpoint:
    """The head a checkpoint has and the labels it gets, after the catalogue's checks for catalogued models."""
    raw = files.read_json(directory / CONFIG_FILE, ModelError)
    head = checkpoint_head(directory, raw, source.model.head if source.model else head_hint)
    id2label = labels_of(raw)  # checked for every head: a broken config.json is refused here
    if head not in heads.LABELLED:
        id2label = {}
    if source.model is not None:
        id2label = catalogue.checked_labels(source.model, str(raw.get("model_type") or ""), head, id2label)
    return build.Checkpoint(source, directory, raw, head, id2label)


def quantize(source: Source, directory: Path, head_hint: str | None, *, env: Environment,
             first_use: bool) -> build.Artifact:
    """The int8 artifact of the checkpoint in `directory` (store/build.py's quantizer)."""
    from . import artifact  # with calibration and its texts: only where int8 is built or loaded
    checkpoint = inspect_checkpoint(source, directory, head_hint)
    runtime = Runtime.from_dir(directory, checkpoint.head, name=source.name)
    if first_use:  # told only once the checkpoint loaded: a failure is reported by its error alone
        env.notice(f"{source.name} is used for the first time: quantizing it to int8 (once; it is cached for "
                   "next time)")
    tensors, meta = artifact.quantize(runtime, kernel=env.kernel)
    return build.Artifact(tensors, meta, runtime.encoder.parameter_count(), checkpoint)


Check = Callable[[Preview], None]
"""What a load runs on the model's `Preview` before its weights are read (a task refusing its options)."""


def preview(source: Source, directory: Path, head: str) -> Preview | None:
    """The checkpoint in `directory` as its files describe it, refused unless it serves `head`, before any
    weight is read; None where its head is known only from its weights and they are not there yet (a
    download under way, of a checkpoint whose config.json names no architecture)."""
    raw = files.read_json(directory / CONFIG_FILE, ModelError)
    if architecture_head(raw) is None and layout.weights_entry(path.name for path in directory.iterdir()) is None:
        return None
    return _inspected(source, directory, head)[1]


def _inspected(source: Source, directory: Path, head: str) -> tuple[build.Checkpoint, Preview]:
    checkpoint = inspect_checkpoint(source, directory, head)
    require_head(heads.served(checkpoint.head), head, source)
    cfg, _ = read_config(directory)
    if checkpoint.id2label and checkpoint.id2label != cfg.id2label:
        cfg = dataclasses.replace(cfg, id2label=checkpoint.id2label)
    return checkpoint, Preview(cfg, Tokenizer.from_dir(directory), directory, source.name)


def load_checkpoint(source: Source, model_dir: Path, commit: str | None, head: str, precision: str,
                    check: Check | None = None) -> Runtime:
    """The original checkpoint in `model_dir` at fp32 or bf16, serving `head`; `check` sees its preview
    before the weights are read."""
    checkpoint, seen = _inspected(source, model_dir, head)
    if check is not None:
        check(seen)
    dtype = torch.bfloat16 if precision == BF16 else torch.float32
    tokens = pass_size(seen.config)
    encoder = load_encoder(model_dir, checkpoint.head, dtype, pass_tokens=tokens)  # packed for the passes it runs
    if seen.config.id2label != encoder.cfg.id2label:
        encoder.cfg = dataclasses.replace(encoder.cfg, id2label=seen.config.id2label)
    encoder.use_fused_bf16_attention(precision == BF16 and cpu.fused_bf16_attention())  # the CPU's bf16 attention
    return Runtime(with_head(encoder, head), seen.tokenizer, Path(model_dir), source.name,
                   model_id=source.id, commit=commit, precision=BF16 if dtype == torch.bfloat16 else FP32,
                   tokens_per_pass=tokens)


def load_entry(entry: cache.Entry, head: str, backend: str, source: Source, check: Check | None = None) -> Runtime:
    """The int8 model of a cache entry, its products run by `backend`, serving `head`; `check` sees its
    preview before the weights are read."""
    from safetensors.torch import load_file

    from . import artifact
    require_head(entry.heads, head, source)
    cache.check_entry(entry, name=source.name)
    try:
        cfg, _ = read_config(entry.path)
        tokenizer = Tokenizer.from_dir(entry.path)
    except Exception as exc:  # whatever a damaged or outdated entry makes the loaders raise
        raise _damaged_entry(entry, source, exc) from exc
    if check is not None:
        check(Preview(cfg, tokenizer, entry.path, source.name))
    try:
        tensors = load_file(entry.path / cache.WEIGHTS)
        encoder = artifact.load_quantized(cfg, entry.head, tensors, entry.manifest["quantization"]["meta"], backend)
    except Exception as exc:  # whatever a damaged or outdated entry makes the loaders raise
        raise _damaged_entry(entry, source, exc) from exc
    files.touch(entry.path / cache.LAST_USED)
    return Runtime(with_head(encoder, head), tokenizer, entry.path, source.name, model_id=entry.source_id,
                   commit=entry.commit, precision=INT8, tokens_per_pass=pass_size(cfg))


def _damaged_entry(entry: cache.Entry, source: Source, exc: Exception) -> CacheError:
    problem = exc.message if isinstance(exc, SqueezeError) else f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    return CacheError(f"cannot load the cached int8 model for '{source.name}': {problem} ({entry.path})",
                      hint=cache.fix_hint(source.name))


def pass_size(cfg: EncoderConfig) -> int:
    """Tokens a pass of this model runs on this CPU (runtime.pass_tokens; AMX tiles from precision/cpu.py)."""
    return pass_tokens(cfg, "amx_tile" in cpu.cpu_flags())


def with_head(encoder: Encoder, head: str) -> Encoder:
    """The encoder itself, or for "base" from a task checkpoint the same encoder without its task head:
    the body's weights are shared, only the final layer differs."""
    if head == encoder.head_kind:
        return encoder
    encoder.head = torch.nn.Identity()
    encoder.head_kind = heads.BASE
    return encoder


def require_head(available: list[str], head: str, source: Source) -> None:
    if head in available:
        return
    raise ModelError(
        f"model '{source.name}' is {heads.describe(available[0])}, not {heads.describe(head)}",
        hint="pick a model made for this task; `squeeze models list` shows each model's heads",
    )
