"""squeeze's cache of ready-to-load models, as a small database of directories. No torch: listing,
inspecting and removing entries read JSON and file sizes only.

Layout of the cache directory ($SQUEEZE_CACHE_DIR, else the platform's user cache dir + "squeeze"):

    entries/<key>/      one model at one commit: model.safetensors (int8 tensors), config.json, tokenizer
                        and sentence-transformers files, manifest.json (written last), last_used (touched)
    refs/hub/<owner--name>/<revision>   the commit a branch or tag resolved to when it was pulled, so that
                        a cached model is found with no network request (offline mode, or every run)
    refs/dir/<hash>.json    a local directory's last content hash and the file stats it was computed from
    tmp/                entries being built, and removed entries being deleted
    locks/              one lock file per model source

Keys. A Hub model's entry is keyed by (repo id, resolved commit); a local directory's by a hash of the
content of the files squeeze reads from it, so editing the directory makes a new entry.

Integrity, one rule: every load checks each file's size, the weights' header and, for a file whose
mtime changed since the build, its sha256; `verify` checks every sha256. A damaged entry is a
CacheError naming the fix; a run never uses or quietly replaces one, `pull` rebuilds it (build.py).
"""

from __future__ import annotations

import contextlib
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..checkpoint import tensorfile
from ..environment import CACHE_ENV, Environment
from ..errors import CacheError, ModelError, SqueezeError
from . import files, refs
from .sources import Source, identity, resolve_source

MANIFEST = "manifest.json"
WEIGHTS = "model.safetensors"
LAST_USED = "last_used"
MANIFEST_FORMAT = 1

_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


def cache_root(env: Environment | None = None) -> Path:
    """squeeze's cache directory; a CacheError if it is a file."""
    env = env or Environment.from_os()
    root = env.cache_dir
    if root.exists() and not root.is_dir():
        named = f"{CACHE_ENV}={env.cache_dir_setting}" if env.cache_dir_setting else f"squeeze's cache directory {root}"
        raise CacheError(f"{named} is a file, not a directory",
                         hint=f"point {CACHE_ENV} at a directory (it is created if missing)")
    return root


@dataclass(frozen=True)
class Entry:
    """One cached int8 model, as its manifest describes it."""

    key: str
    path: Path
    manifest: dict[str, Any]

    @property
    def source_id(self) -> str:
        return self.manifest["source"]["id"]

    @property
    def kind(self) -> str:
        return self.manifest["source"]["kind"]

    @property
    def alias(self) -> str | None:
        return self.manifest["source"].get("alias")

    @property
    def commit(self) -> str:
        """The Hub commit, or for a local directory the hash of its content."""
        return self.manifest["source"]["commit"]

    @property
    def heads(self) -> list[str]:
        return list(self.manifest["heads"])

    @property
    def head(self) -> str:
        """The head the checkpoint has (the first of `heads`)."""
        return self.manifest["heads"][0]

    @property
    def last_used(self) -> float:
        try:
            return (self.path / LAST_USED).stat().st_mtime
        except OSError:
            return 0.0

    def summary(self) -> dict[str, Any]:
        """The flat record `models list --json` prints."""
        m = self.manifest
        return {
            "key": self.key,
            "id": self.source_id,
            "alias": self.alias,
            "kind": self.kind,
            "revision": m["source"].get("revision"),
            "commit": self.commit,
            "architecture": m["architecture"],
            "heads": self.heads,
            "parameters": m["parameters"],
            "size_int8": m["size"]["int8"],
            "size_source": m["size"]["source"],
            "quantization": m["quantization"]["scheme"],
            "created": m["created"],
            "last_used": iso(self.last_used) if self.last_used else None,
            "path": str(self.path),
            "state": self.state(),
        }

    def state(self) -> str:
        """What the file sizes and times say without reading the files (what `models list` shows):
        "damaged" (a file is missing or not its recorded size: a run refuses it), "modified" (a file's
        mtime changed since the build: a run checks its sha256) or "ok"."""
        modified = False
        for relative, recorded in self.manifest["files"].items():
            try:
                stat = (self.path / relative).stat()
            except OSError:
                return "damaged"
            if stat.st_size != recorded["size"]:
                return "damaged"
            modified = modified or recorded.get("mtime_ns") not in (None, stat.st_mtime_ns)
        return "modified" if modified else "ok"


def list_entries(env: Environment | None = None) -> list[Entry]:
    """Every entry in the cache, most recently used first. Unreadable ones are skipped (see `damaged_entries`)."""
    return list_entries_in(cache_root(env))


def damaged_entries(env: Environment | None = None) -> list[Path]:
    """Entry directories whose manifest cannot be read; `models rm --all` clears them."""
    damaged = []
    for path in _entry_dirs(cache_root(env)):
        try:
            read_entry(path)
        except CacheError:
            damaged.append(path)
    return damaged


def info(model: str, revision: str | None = None, *, verify: bool = False, env: Environment | None = None) -> Entry:
    """The cached entry for `model` (at `revision`, else the one most recently used). No network.

    `verify` checks the sha256 of every file, not just sizes and headers.
    """
    source = resolve_source(model, revision)
    root = cache_root(env)
    entry = cached_entry(root, source) or _latest_entry_of(root, source, explicit_revision=revision is not None)
    if entry is None:
        raise not_cached(source.name)
    check_entry(entry, full=verify, name=source.name)
    return entry


def remove(models: Sequence[str], all: bool = False, env: Environment | None = None) -> list[Entry]:
    """Delete the entries of `models` (every cached commit of each), or every entry with `all`.

    A model is named as for `pull` (alias, Hub id, directory, also one that no longer exists) or by an
    entry's key from `models list`. Nothing is deleted unless every model named is in the cache. The
    Hugging Face download cache, which transformers shares, is left alone.
    """
    env = env or Environment.from_os()
    root = cache_root(env)
    entries = list_entries(env)
    with files.writing_cache(root):
        if all:
            doomed = entries
            for path in damaged_entries(env):
                files.delete_dir(root, path)
        else:
            doomed, missing, damaged = [], [], []
            for model in models:
                matches = _entries_named(model, entries)
                broken = [] if matches else _damaged_named(root, model, damaged_entries(env))
                if not matches and not broken:
                    missing.append(model)
                doomed += [entry for entry in matches if entry not in doomed]
                damaged += broken
            if missing:
                raise not_cached(missing[0], others=len(missing) - 1)
            for path in damaged:
                files.delete_dir(root, path)
                env.notice(f"removed the damaged cache entry {path}")
        for entry in doomed:
            with files.source_lock(root, entry.kind, entry.source_id):
                files.delete_dir(root, entry.path)
        refs.drop_dangling_refs(root)
    return doomed


def check_entry(entry: Entry, *, full: bool = False, name: str | None = None) -> None:
    """Raise CacheError unless the entry's files are all there, readable, with their recorded sizes, the
    weights file has a valid safetensors header, and every file whose modification time changed since
    the build still has its recorded sha256; with `full`, every sha256 is checked."""
    name = name or entry.alias or entry.source_id
    for relative, recorded in entry.manifest["files"].items():
        path = entry.path / relative
        try:
            stat = path.stat()
            if stat.st_size != recorded["size"]:
                raise damaged(entry, name, f"{relative} is {stat.st_size} bytes, expected {recorded['size']}")
            if relative.endswith(".safetensors"):
                tensorfile.read_header(path)
            changed = recorded.get("mtime_ns") not in (None, stat.st_mtime_ns)
            if (full or changed) and files.sha256(path) != recorded["sha256"]:
                raise damaged(entry, name, f"{relative} does not match its checksum")
        except tensorfile.HeaderError as problem:
            raise damaged(entry, name, f"{relative} {problem}") from None
        except FileNotFoundError:
            raise damaged(entry, name, f"{relative} is missing") from None
        except OSError as exc:
            raise CacheError(
                f"cannot read {path}: {exc.strerror or exc}",
                hint=f"make squeeze's cache readable (e.g. chmod -R u+rwX {shlex.quote(str(entry.path))}), "
                f"or remove the entry: squeeze models rm {shlex.quote(name)}",
            ) from None


# -- finding entries without the network -------------------------------------------------------------


def cached_key(root: Path, source: Source, *, hash_directory: bool = True) -> str | None:
    """The key this source resolves to locally (a Hub revision's ref, a directory's content), or None; with
    `hash_directory` False, a directory whose content hash is not remembered is None (never hashed)."""
    if source.kind == "dir":
        content = (refs.content_hash if hash_directory else refs.remembered_content_hash)(root, source.path)
        return None if content is None else dir_key(source.path, content)
    assert source.revision is not None
    pinned = refs.COMMIT_SHA.fullmatch(source.revision)
    commit = source.revision if pinned else refs.read_ref(root, source.id, source.revision)
    return None if commit is None else hub_key(source.id, commit)


def cached_entry(root: Path, source: Source, *, hash_directory: bool = True) -> Entry | None:
    """The entry this source resolves to locally, or None if there is none (`hash_directory`: cached_key's).
    An entry directory that is there but damaged (no manifest, or an unreadable one) is a CacheError: a
    run never uses or quietly replaces a damaged entry; `pull` rebuilds it."""
    key = cached_key(root, source, hash_directory=hash_directory)
    if key is None:
        return None
    path = root / "entries" / key
    if not path.exists():
        return None
    try:
        return read_entry(path)
    except CacheError as exc:
        raise CacheError(exc.message, hint=fix_hint(source.name)) from None


def intact_entry(root: Path, key: str) -> Entry | None:
    """The entry `key` if it exists and passes the full check; a damaged one is removed."""
    path = root / "entries" / key
    if not path.exists():
        return None
    try:
        entry = read_entry(path)
        check_entry(entry, full=True)
    except CacheError:
        files.delete_dir(root, path)
        return None
    return entry


def read_entry(path: Path) -> Entry:
    if not (path / MANIFEST).exists():
        raise CacheError(f"the cache entry {path} has no manifest",
                         hint=f"remove it with `squeeze models rm --all` or delete {path}")
    manifest = files.read_json(path / MANIFEST, CacheError)
    if manifest.get("format") != MANIFEST_FORMAT:
        raise CacheError(
            f"the cache entry {path} was written by another version of squeeze",
            hint=f"remove it with `squeeze models rm --all` or delete {path}",
        )
    try:
        manifest["source"]["id"], manifest["files"], manifest["heads"][0], manifest["quantization"]["meta"]
    except (KeyError, IndexError, TypeError):
        raise CacheError(f"the manifest of cache entry {path} is incomplete",
                         hint=f"remove it with `squeeze models rm --all` or delete {path}") from None
    return Entry(path.name, path, manifest)


def _latest_entry_of(root: Path, source: Source, *, explicit_revision: bool) -> Entry | None:
    if explicit_revision and source.kind == "hub":
        return None  # a revision that was never pulled is not "the latest other one"
    entries = _entries_of(source.kind, source.id, list_entries_in(root))
    return entries[0] if entries else None


def list_entries_in(root: Path) -> list[Entry]:
    """`list_entries` of the cache at `root`."""
    entries = []
    for path in _entry_dirs(root):
        with contextlib.suppress(CacheError):
            entries.append(read_entry(path))
    return sorted(entries, key=lambda entry: entry.last_used, reverse=True)


def _entry_dirs(root: Path) -> list[Path]:
    try:
        return sorted(path for path in (root / "entries").iterdir() if path.is_dir())
    except FileNotFoundError:
        return []


def _entries_named(model: str, entries: list[Entry]) -> list[Entry]:
    by_key = [entry for entry in entries if entry.key == model]
    return by_key or _entries_of(*identity(model), entries)


def _entries_of(kind: str, source_id: str, entries: list[Entry]) -> list[Entry]:
    """Entries of one source, most recently used first. Hub ids are case-insensitive."""
    def same(entry_id: str) -> bool:
        return entry_id.lower() == source_id.lower() if kind == "hub" else entry_id == source_id

    return [entry for entry in entries if entry.kind == kind and same(entry.source_id)]


def _damaged_named(root: Path, model: str, damaged_dirs: list[Path]) -> list[Path]:
    """Damaged entry directories of the model named as for `remove`."""
    if not damaged_dirs:
        return []
    keys, prefix = {model}, None
    try:
        source = resolve_source(model)
    except SqueezeError:
        source = None
    if source is not None and source.kind == "hub":
        prefix = f"hub--{refs.repo_folder(source.id)}--".lower()
    elif source is not None:
        keys.add(cached_key(root, source) or "")
    return [path for path in damaged_dirs if path.name in keys or (prefix and path.name.lower().startswith(prefix))]


# -- keys and messages ------------------------------------------------------------------------------


def hub_key(repo_id: str, commit: str) -> str:
    return f"hub--{refs.repo_folder(repo_id)}--{commit}"


def dir_key(directory: Path, content: str) -> str:
    name = _UNSAFE_NAME_CHARS.sub("_", directory.name)[:40] or "model"
    return f"dir--{name}--{content[:32]}"


def fix_hint(name: str) -> str:
    quoted = shlex.quote(name)
    return f"run `squeeze models pull --force {quoted}` to rebuild it, or `squeeze models rm {quoted}`"


def damaged(entry: Entry, name: str, problem: str) -> CacheError:
    return CacheError(f"the cached int8 model for '{name}' is damaged: {problem} ({entry.path})", hint=fix_hint(name))


def not_cached(name: str, others: int = 0) -> ModelError:
    more = f" (and {others} more)" if others else ""
    return ModelError(f"'{name}' is not in squeeze's model cache{more}",
                      hint="`squeeze models list` shows the cached models; `squeeze models pull MODEL` adds one")


def iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).isoformat(timespec="seconds")
