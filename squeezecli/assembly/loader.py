"""A model at a precision: `load_runtime`, the one way a task gets a ready `Runtime`, and `pull`.

fp32 and bf16 run the original checkpoint (fetch.checkpoint_dir), bf16 with its projections cast as they
load; int8 runs squeeze's cache entry, pulled and quantized on first use (fetch.pull_source); auto is
what this CPU runs best (precisions.choose), or a cached int8 entry that measured itself faster here
(fetch.auto_precision). Before any weight is downloaded, quantized or read, the
caller's `check` sees the model's `Preview` (config.json and tokenizer): a task refuses options that do
not fit the model there. Imports torch: only a run that is about to load a model imports this module; a
pull alone goes through fetch.py, which loads no torch.
"""

from __future__ import annotations

from pathlib import Path

from ..environment import Environment
from ..model.runtime import Preview, Runtime
from ..precision.names import AUTO
from ..store import cache
from ..store.sources import resolve_source
from . import checkpoints, fetch, precisions
from .fetch import pull

__all__ = ["load_runtime", "pull"]


def load_runtime(model: str, head: str, *, precision: str = AUTO, revision: str | None = None,
                 offline: bool = False, progress: bool = True, env: Environment | None = None,
                 check: checkpoints.Check | None = None) -> Runtime:
    """A ready model for `head` ("base", "sequence", "token" or "qa": checkpoint/heads.py).

    auto (the default) is bf16 on a CPU with native bf16 products and fp32 elsewhere (precision/cpu.py),
    or the model's cached int8 entry where that entry measured int8 faster here and faithful (auto.py); int8 loads the cached int8 entry, pulling it first if this is the model's first use; fp32 and bf16
    run the original checkpoint. A classifier, token or QA checkpoint also serves "base" (its encoder
    without the task head, e.g. embeddings of a sentiment model). Where a precision's kernels do not run
    here, fp32 is used with a one-line notice.

    `check` sees the model's `Preview` (config.json, tokenizer, window) once, before any weight is
    downloaded, quantized or read: a task refuses its options there. A checkpoint whose config.json names
    no architecture is known to serve `head` only from its weights' names: downloading, it is checked once
    they are in, still before they are read.
    """
    env = env or Environment.from_os()
    source = resolve_source(model, revision)
    if precision == AUTO:  # the CPU's choice, or the cached int8 entry where it measured faster here
        precision = fetch.auto_precision(source, env)
    precision, backend = precisions.choose(precision, env)
    once = _Once(check)

    def before_weights(directory: Path) -> None:
        if once.pending:
            once(checkpoints.preview(source, directory, head))

    if backend is None:  # fp32 or bf16: the original checkpoint
        model_dir, commit = fetch.checkpoint_dir(source, offline=offline, progress=progress, env=env,
                                                 before_weights=before_weights)
        return checkpoints.load_checkpoint(source, model_dir, commit, head, precision, once)
    entry = cache.cached_entry(cache.cache_root(env), source)
    if entry is None:
        entry = fetch.pull_source(source, offline=offline, progress=progress, head_hint=head, env=env, first_use=True,
                                  before_weights=before_weights)
    return checkpoints.load_entry(entry, head, backend, source, once)


class _Once:
    """`check` of the first preview it is given (None: not known yet, the next one is)."""

    def __init__(self, check: checkpoints.Check | None) -> None:
        self.check = check
        self.pending = check is not None

    def __call__(self, preview: Preview | None) -> None:
        if self.pending and preview is not None and self.check is not None:
            self.check(preview)
            self.pending = False
