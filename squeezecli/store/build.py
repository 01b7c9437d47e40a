"""Building a cache entry: `pull` fetches a checkpoint (or reads a local directory), has it checked and
quantized, and installs the result atomically. Checking and quantizing are handed in by the caller
(assembly/fetch.py's quantizer), so this package never imports torch.

Fault safety. An entry is built in tmp/, fsynced, and renamed into entries/ in one step, so a reader sees
either no entry or a complete one; a pull killed half-way leaves only a tmp/ directory, which no reader
looks at and a later pull deletes once its owner process is gone. A lock per source makes concurrent
pulls of one model build it once: the second waits, then reuses the first one's entry.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from .._version import __version__
from ..checkpoint import heads, layout, tensorfile
from . import cache, files, hub, refs
from .sources import Source

if TYPE_CHECKING:
    from ..environment import Environment


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint as a build sees it: where it is, what it is, the labels the catalogue checked."""

    source: Source
    directory: Path
    raw_config: dict[str, Any]
    head: str
    id2label: dict[int, str]


class Artifact(NamedTuple):
    """What a quantizer makes of a checkpoint: tensors by name, JSON-able metadata, the parameter count,
    and the checkpoint as it found it."""

    tensors: dict[str, Any]
    meta: dict[str, Any]
    parameters: int
    checkpoint: Checkpoint


# (source, the checkpoint's directory, the head wanted when the checkpoint does not say) -> Artifact
Quantizer = Callable[[Source, Path, "str | None"], Artifact]


def pull(source: Source, quantizer: Quantizer, *, force: bool = False, offline: bool = False, progress: bool = True,
         head_hint: str | None = None, env: Environment, before_weights: Callable[[Path], None] | None = None
         ) -> cache.Entry:
    """Make sure `source` has an intact entry; return it.

    Online, a branch or tag is looked up on the Hub (one request) so that a moved branch is pulled again;
    a commit that is already cached needs no request. Offline (`offline` or HF_HUB_OFFLINE=1) nothing is
    requested: the entry the revision last resolved to is used, or one is built from the HF cache.
    An existing entry is checked in full (sha256) and rebuilt if damaged; `force` always rebuilds.
    `before_weights(directory)` sees the checkpoint's config.json and tokenizer before its weights are
    downloaded (hub.fetch) and again before they are quantized.
    """
    root = cache.cache_root(env)
    with files.writing_cache(root), files.source_lock(root, source.kind, source.id):
        files.remove_stale_temp(root)
        if source.kind == "dir":
            content = refs.content_hash(root, source.path)
            key = cache.dir_key(source.path, content)
            reusable = None if force else cache.intact_entry(root, key)
            if reusable is not None:
                return reusable
            if before_weights is not None:
                before_weights(source.path)
            artifact = quantizer(source, source.path, head_hint)
            return _build(root, key, artifact, content, layout.directory_files(source.path))

        assert source.revision is not None
        offline = offline or env.offline
        if not force and (offline or refs.COMMIT_SHA.fullmatch(source.revision)):
            known = cache.cached_key(root, source)
            if known is not None and (intact := cache.intact_entry(root, known)) is not None:
                return intact
        snapshot = hub.fetch(source.id, source.revision, offline=offline, progress=progress, env=env,
                             before_weights=before_weights)
        key = cache.hub_key(source.id, snapshot.commit)
        entry = None if force else cache.intact_entry(root, key)
        if entry is None:
            if before_weights is not None:
                before_weights(snapshot.path)
            artifact = quantizer(source, snapshot.path, head_hint)
            entry = _build(root, key, artifact, snapshot.commit, list(snapshot.files))
        refs.write_ref(root, source.id, source.revision, snapshot.commit)
        return entry


def _build(root: Path, key: str, artifact: Artifact, commit: str, names: list[str]) -> cache.Entry:
    """Install the quantized checkpoint as entry `key`, atomically."""
    checkpoint = artifact.checkpoint
    source, source_dir, raw, id2label = checkpoint.source, checkpoint.directory, checkpoint.raw_config, checkpoint.id2label
    temp = files.new_temp_dir(root, key)
    try:
        for relative in (name for name in names if not layout.is_weights(name)):
            target = temp / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            if relative == layout.CONFIG_FILE:
                # The labels the catalogue checked (or supplied, for LABEL_<n> placeholders) travel with the
                # entry, so the int8 model never needs the source's config.json.
                patched = dict(raw, id2label={str(i): label for i, label in id2label.items()},
                               label2id={label: i for i, label in id2label.items()}) if id2label else raw
                target.write_text(json.dumps(patched, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            else:
                shutil.copyfile(source_dir / relative, target)
        tensorfile.write(temp / cache.WEIGHTS, artifact.tensors, metadata={"format": "pt", "squeezecli": __version__})
        manifest = {
            "format": cache.MANIFEST_FORMAT,
            "source": {
                "kind": source.kind,
                "id": source.id,
                "alias": source.model.alias if source.model else None,
                "revision": source.revision,
                "commit": commit,
            },
            "architecture": raw.get("model_type"),
            "heads": heads.served(checkpoint.head),
            "parameters": artifact.parameters,
            "quantization": {"scheme": str(artifact.meta.get("scheme", "int8")), "meta": artifact.meta},
            "files": {relative: files.file_record(temp / relative) for relative in files.files_under(temp)},
            "size": {
                "int8": sum(p.stat().st_size for p in temp.rglob("*") if p.is_file()),
                "source": sum((source_dir / relative).stat().st_size for relative in names),
            },
            "squeezecli": __version__,
            "created": cache.iso(time.time()),
        }
        files.write_durably(temp / cache.MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
        (temp / cache.LAST_USED).touch()
        files.fsync_tree(temp)
        final = root / "entries" / key
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            # Only a forced or damaged rebuild gets here, under the source lock. Moved aside first: a
            # directory cannot be renamed over a non-empty one.
            files.delete_dir(root, final)
        os.replace(temp, final)
        files.fsync_dir(final.parent)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return cache.read_entry(final)
