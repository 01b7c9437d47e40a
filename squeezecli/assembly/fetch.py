"""Where a model's files come from: the original checkpoint's directory (fp32 and bf16 run it: a local
directory, or the Hugging Face cache at the commit that was pulled) and squeeze's int8 cache entry,
pulled and quantized on first use.

No torch at import: a pull whose entry is already cached (`squeeze models pull` run twice) answers from
the cache's manifest; only building an entry imports the network (checkpoints.py), in the quantizer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

from ..environment import Environment
from ..errors import CacheError
from ..precision.names import INT8
from ..store import build, cache, hub, refs
from ..store.sources import Source, resolve_source


def pull(model: str, revision: str | None = None, *, force: bool = False, offline: bool = False,
         progress: bool = True, env: Environment | None = None) -> cache.Entry:
    """Make sure `model` (Hub id, alias or local directory) has an intact int8 entry; return it (see
    store/build.py's `pull`: a branch is looked up, a damaged entry rebuilt, `force` always rebuilds)."""
    return pull_source(resolve_source(model, revision), force=force, offline=offline, progress=progress,
                       env=env or Environment.from_os())


def pull_source(source: Source, *, force: bool = False, offline: bool, progress: bool, head_hint: str | None = None,
                env: Environment, first_use: bool = False, before_weights: BeforeWeights | None = None
                ) -> cache.Entry:
    """`pull` of a resolved source; `first_use` (a run asked for int8 and found no entry) says so on stderr;
    `before_weights` sees the checkpoint's directory before its weights are downloaded or quantized."""

    def quantizer(source: Source, directory: Path, hint: str | None) -> build.Artifact:
        from . import checkpoints  # torch: only a build loads the network (see the module docstring)

        return checkpoints.quantize(source, directory, hint, env=env, first_use=first_use)

    return build.pull(source, quantizer, force=force, offline=offline, progress=progress, head_hint=head_hint, env=env,
                      before_weights=before_weights)


def auto_precision(source: Source, env: Environment) -> str:
    """What `--precision auto` runs for `source` here: its cached int8 entry where the entry's record says
    int8 wins on this CPU (auto.py), else what the CPU runs best (precision/cpu.py)."""
    from ..precision import cpu
    from . import auto

    try:  # a cheap look: a local directory is never hashed for it, a damaged entry is int8's to report
        entry = cache.cached_entry(cache.cache_root(env), source, hash_directory=False)
    except (CacheError, OSError):
        entry = None
    if entry is not None and auto.picks_int8(entry.manifest["quantization"].get("meta")):
        return INT8
    return cpu.auto_precision().precision


def checkpoint_dir(source: Source, *, offline: bool, progress: bool, env: Environment,
                   before_weights: BeforeWeights | None = None) -> tuple[Path, str | None]:
    """The directory of the original checkpoint fp32 and bf16 run, and its Hub commit (None: a local
    directory). A Hub model runs at the commit its revision was pulled (or first run) at: every precision
    runs the same weights, and later runs need no request; `squeeze models pull` moves it on when the
    branch moves. A download calls `before_weights` before it fetches the weights (hub.fetch)."""
    if source.kind == "dir":
        return source.path, None
    assert source.revision is not None
    root = cache.cache_root(env)
    recorded = refs.read_ref(root, source.id, source.revision)
    revision = recorded or source.revision
    downloaded_before = hub.cached_snapshot(source.id, revision, env) is not None
    snapshot = hub.fetch(source.id, revision, offline=offline, progress=progress, env=env, before_weights=before_weights)
    if recorded is None:
        with contextlib.suppress(OSError):  # a read-only cache: the next run asks the Hub again, no harm
            refs.write_ref(root, source.id, source.revision, snapshot.commit)
    if not downloaded_before:
        env.notice(f"{source.name} is used for the first time: downloaded it into the Hugging Face cache")
    return snapshot.path, snapshot.commit
