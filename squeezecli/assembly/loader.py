"""A model at a precision: `load_runtime`, the one way a task gets a ready `Runtime`, and `pull`.

fp32 and bf16 run the original checkpoint (fetch.checkpoint_dir), bf16 with its projections cast as they
load; int8 runs squeeze's cache entry, pulled and quantized on first use (fetch.pull_source); auto is
what this CPU runs best (precisions.choose). Imports torch: only a run that is about to load a model
imports this module; a pull alone goes through fetch.py, which loads no torch.
"""

from __future__ import annotations

from ..environment import Environment
from ..model.runtime import Runtime
from ..precision.names import AUTO
from ..store import cache
from ..store.sources import resolve_source
from . import checkpoints, fetch, precisions
from .fetch import pull

__all__ = ["load_runtime", "pull"]


def load_runtime(model: str, head: str, *, precision: str = AUTO, revision: str | None = None,
                 offline: bool = False, progress: bool = True, env: Environment | None = None) -> Runtime:
    """A ready model for `head` ("base", "sequence", "token" or "qa": checkpoint/heads.py).

    auto (the default) is bf16 on a CPU with native bf16 products and fp32 elsewhere (precision/cpu.py);
    int8 loads the cached int8 entry, pulling it first if this is the model's first use; fp32 and bf16
    run the original checkpoint. A classifier, token or QA checkpoint also serves "base" (its encoder
    without the task head, e.g. embeddings of a sentiment model). Where a precision's kernels do not run
    here, fp32 is used with a one-line notice.
    """
    env = env or Environment.from_os()
    source = resolve_source(model, revision)
    precision, backend = precisions.choose(precision, env)
    if backend is None:  # fp32 or bf16: the original checkpoint
        model_dir, commit = fetch.checkpoint_dir(source, offline=offline, progress=progress, env=env)
        return checkpoints.load_checkpoint(source, model_dir, commit, head, precision)
    entry = cache.cached_entry(cache.cache_root(env), source)
    if entry is None:
        entry = fetch.pull_source(source, offline=offline, progress=progress, head_hint=head, env=env, first_use=True)
    return checkpoints.load_entry(entry, head, backend, source)
