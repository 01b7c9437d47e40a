"""A model at a precision: where its files come from and how they become a `Runtime`.

fp32 and bf16 run the original checkpoint (a local directory, or the Hugging Face cache at the commit
that was pulled), bf16 with its projections cast as they load; int8 runs squeeze's cache entry, pulled
and quantized on first use; auto is what precision/cpu.py says this CPU runs best. The one module of
`model/` that reaches up to `store/` (where the files are) and `precision/` (how int8 runs); nothing
below it imports it.
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from ..environment import Environment
from ..errors import CacheError, ModelError, SqueezeError
from ..precision.cpu import PRECISIONS
from ..store import build, cache, hub, refs
from ..store.sources import Source, resolve_source

if TYPE_CHECKING:
    from .config import EncoderConfig
    from .encoder import Encoder
    from .runtime import Runtime

HEAD_KINDS = {"base": "a base encoder", "sequence": "a sequence classifier", "token": "a token classifier",
              "qa": "a question-answering model"}


def load_runtime(model: str, head: str, *, precision: str = "auto", revision: str | None = None,
                 offline: bool = False, progress: bool = True, env: Environment | None = None) -> Runtime:
    """A ready model for `head` ("base", "sequence", "token" or "qa").

    auto (the default) is bf16 on a CPU with native bf16 products and fp32 elsewhere (precision/cpu.py);
    int8 loads the cached int8 entry, pulling it first if this is the model's first use; fp32 and bf16
    run the original checkpoint. A classifier, token or QA checkpoint also serves "base" (its encoder
    without the task head, e.g. embeddings of a sentiment model). Where a precision's kernels do not run
    here, fp32 is used with a one-line notice.
    """
    from ..precision import cpu

    env = env or Environment.from_os()
    source = resolve_source(model, revision)
    if precision not in PRECISIONS:
        raise ModelError(f"unknown precision {precision!r}", hint=f"use {', '.join(PRECISIONS)}")
    if precision == "auto":
        precision = cpu.auto_precision().precision
    if precision == "bf16" and not cpu.bf16_kernels_work():
        env.notice("torch's bf16 kernels do not run right on this machine: running in fp32")
        precision = "fp32"
    if precision in ("fp32", "bf16"):
        return _load_checkpoint(source, head, precision, offline=offline, progress=progress, env=env)
    from ..precision.int8 import int8_backend  # only here: fp32 and bf16 runs never need it

    backend = int8_backend(env.kernel)
    if backend is None:
        env.notice("no int8 kernel on this machine (or SQUEEZE_INT8_KERNEL=none): running in fp32")
        return _load_checkpoint(source, head, "fp32", offline=offline, progress=progress, env=env)
    entry = cache.cached_entry(cache.cache_root(env), source)
    if entry is None:
        entry = _pull(source, offline=offline, progress=progress, head_hint=head, env=env, first_use=True)
    return _load_int8(entry, head, backend, source)


def pull(model: str, revision: str | None = None, *, force: bool = False, offline: bool = False,
         progress: bool = True, env: Environment | None = None) -> cache.Entry:
    """Make sure `model` (Hub id, alias or local directory) has an intact int8 entry; return it (see
    store/build.py's `pull`: a branch is looked up, a damaged entry rebuilt, `force` always rebuilds)."""
    return _pull(resolve_source(model, revision), force=force, offline=offline, progress=progress,
                 env=env or Environment.from_os())


def _pull(source: Source, *, force: bool = False, offline: bool, progress: bool, head_hint: str | None = None,
          env: Environment, first_use: bool = False) -> cache.Entry:
    def quantizer(source: Source, directory: Path, hint: str | None) -> build.Artifact:
        from ..precision import artifact
        from .runtime import Runtime

        checkpoint = inspect_checkpoint(source, directory, hint)
        runtime = Runtime.from_dir(directory, checkpoint.head, name=source.name)
        if first_use:  # told only once the checkpoint loaded: a failure is reported by its error alone
            env.notice(f"{source.name} is used for the first time: quantizing it to int8 (once; it is cached for "
                       "next time)")
        tensors, meta = artifact.quantize(runtime, kernel=env.kernel)
        return build.Artifact(tensors, meta, sum(p.numel() for p in runtime.encoder.parameters()), checkpoint)

    return build.pull(source, quantizer, force=force, offline=offline, progress=progress, head_hint=head_hint, env=env)


def inspect_checkpoint(source: Source, directory: Path, head_hint: str | None = None) -> build.Checkpoint:
    """The head a checkpoint has and the labels it gets, after the catalogue's checks for catalogued models."""
    from ..store import catalogue, files
    from .layout import CONFIG_FILE
    from .weights import checkpoint_head

    raw = files.read_json(directory / CONFIG_FILE, ModelError)
    head = checkpoint_head(directory, raw, source.model.head if source.model else head_hint)
    try:
        id2label = {int(k): str(v) for k, v in (raw.get("id2label") or {}).items()}
    except (TypeError, ValueError, AttributeError):
        raise ModelError("config.json's id2label is not a map from class ids to names") from None
    if head not in ("sequence", "token"):
        id2label = {}
    if source.model is not None:
        id2label = catalogue.checked_labels(source.model, str(raw.get("model_type") or ""), head, id2label)
    return build.Checkpoint(source, directory, raw, head, id2label)


def _load_int8(entry: cache.Entry, head: str, backend: str, source: Source) -> Runtime:
    from safetensors.torch import load_file

    from ..precision import artifact
    from .config import read_config
    from .runtime import Runtime
    from .tokenizer import Tokenizer

    _require_head(entry.heads, head, source)
    cache.check_entry(entry, name=source.name)
    try:
        cfg, _ = read_config(entry.path)
        tensors = load_file(entry.path / cache.WEIGHTS)
        encoder = artifact.load_quantized(cfg, entry.head, tensors, entry.manifest["quantization"]["meta"], backend)
        tokenizer = Tokenizer.from_dir(entry.path)
    except Exception as exc:  # whatever a damaged or outdated entry makes the loaders raise
        problem = exc.message if isinstance(exc, SqueezeError) else f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
        raise CacheError(f"cannot load the cached int8 model for '{source.name}': {problem} ({entry.path})",
                         hint=cache.fix_hint(source.name)) from exc
    from ..store import files

    files.touch(entry.path / cache.LAST_USED)
    return Runtime(_with_head(encoder, head), tokenizer, entry.path, source.name, model_id=entry.source_id,
                   commit=entry.commit, precision="int8", tokens_per_pass=_pass_tokens(cfg))


def _load_checkpoint(source: Source, head: str, precision: str, *, offline: bool, progress: bool,
                     env: Environment) -> Runtime:
    import torch

    from .runtime import Runtime
    from .tokenizer import Tokenizer
    from .weights import load_encoder

    commit = None
    if source.kind == "dir":
        model_dir = source.path
    else:
        assert source.revision is not None
        # The commit this revision was pulled (or first run) at: every precision runs the same weights,
        # and later runs need no request; `squeeze models pull` moves it on when the branch moves.
        root = cache.cache_root(env)
        recorded = refs.read_ref(root, source.id, source.revision)
        revision = recorded or source.revision
        downloaded_before = hub.cached_snapshot(source.id, revision, env) is not None
        snapshot = hub.fetch(source.id, revision, offline=offline, progress=progress, env=env)
        model_dir, commit = snapshot.path, snapshot.commit
        if recorded is None:
            with contextlib.suppress(OSError):  # a read-only cache: the next run asks the Hub again, no harm
                refs.write_ref(root, source.id, source.revision, snapshot.commit)
        if not downloaded_before:
            env.notice(f"{source.name} is used for the first time: downloaded it into the Hugging Face cache")
    checkpoint = inspect_checkpoint(source, model_dir, head)
    _require_head([checkpoint.head] + (["base"] if checkpoint.head != "base" else []), head, source)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    encoder = load_encoder(model_dir, checkpoint.head, dtype)
    if checkpoint.id2label and checkpoint.id2label != encoder.cfg.id2label:
        encoder.cfg = dataclasses.replace(encoder.cfg, id2label=checkpoint.id2label)
    return Runtime(_with_head(encoder, head), Tokenizer.from_dir(model_dir), Path(model_dir), source.name,
                   model_id=source.id, commit=commit, precision="bf16" if dtype == torch.bfloat16 else "fp32",
                   tokens_per_pass=_pass_tokens(encoder.cfg))


def _pass_tokens(cfg: EncoderConfig) -> int:
    """The pass size for this model on this CPU (runtime.pass_tokens; AMX tiles from precision/cpu.py)."""
    from ..precision import cpu
    from .runtime import pass_tokens

    return pass_tokens(cfg, "amx_tile" in cpu.cpu_flags())


def _with_head(encoder: Encoder, head: str) -> Encoder:
    """The encoder itself, or for "base" from a task checkpoint the same encoder without its task head:
    the body's weights are shared, only the final layer differs."""
    if head == encoder.head_kind:
        return encoder
    import torch

    encoder.head = torch.nn.Identity()
    encoder.head_kind = "base"
    return encoder


def _require_head(available: list[str], head: str, source: Source) -> None:
    if head in available:
        return
    raise ModelError(
        f"model '{source.name}' is {HEAD_KINDS.get(available[0], available[0])}, not {HEAD_KINDS.get(head, head)}",
        hint="pick a model made for this task; `squeeze models list` shows each model's heads",
    )
