"""squeeze's model store: each model is downloaded once (into the standard Hugging Face cache), quantized
to int8 once, and kept as a small ready-to-load entry in squeeze's own cache.

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

Fault safety. An entry is built in tmp/, fsynced, and renamed into entries/ in one step, so a reader sees
either no entry or a complete one; a pull killed half-way leaves only a tmp/ directory, which no reader
looks at and a later pull deletes once its owner process is gone. A lock per source makes concurrent
pulls of one model build it once: the second waits, then reuses the first one's entry.

Integrity. Loading checks what is cheap (every file the manifest lists exists with its recorded size and
the safetensors header is well formed, which catches truncation and a damaged header) but not the sha256
of ~60 MB of weights, which would cost more than the rest of start-up; `pull` of an existing entry and
`models info --verify` check every sha256. A failed check is a CacheError naming the fix.

Only the functions that build or run a model import torch; listing, inspecting and removing entries read
JSON and file sizes only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import os
import re
import shlex
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__, catalogue, hub, tensorfile
from .errors import CacheError, ModelError, SqueezeError, notice

if TYPE_CHECKING:
    from .encoder import Encoder
    from .runtime import Runtime

CACHE_ENV = "SQUEEZE_CACHE_DIR"
MANIFEST = "manifest.json"
WEIGHTS = "model.safetensors"
LAST_USED = "last_used"
MANIFEST_FORMAT = 1
# A tmp/ directory whose owner process still runs is left alone unless it is this old (pid reuse).
STALE_TEMP_SECONDS = 24 * 3600

_POOLING_CONFIG = re.compile(r"\d+_Pooling/config\.json")
_COMMIT_SHA = re.compile(r"[0-9a-f]{40}")
_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
# config.json `architectures` suffix -> the head the checkpoint has.
_ARCHITECTURE_HEADS = (
    ("ForSequenceClassification", "sequence"),
    ("ForTokenClassification", "token"),
    ("ForQuestionAnswering", "qa"),
    ("ForMaskedLM", "base"),
    ("ForPreTraining", "base"),
    ("Model", "base"),
)

Notify = Callable[[str], None]


def cache_root() -> Path:
    """squeeze's cache directory, read from the environment on every call."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        root = Path(os.path.expandvars(os.path.expanduser(explicit)))
    else:
        import platformdirs

        root = Path(platformdirs.user_cache_dir("squeeze", appauthor=False))
    if os.path.exists(root) and not os.path.isdir(root):
        named = f"{CACHE_ENV}={explicit}" if explicit else f"squeeze's cache directory {root}"
        raise CacheError(f"{named} is a file, not a directory",
                         hint=f"point {CACHE_ENV} at a directory (it is created if missing)")
    return root


# -- what the user asked for -----------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """Where a model comes from: a Hub repo at a revision, or a local directory in Hub format."""

    kind: str  # "hub" or "dir"
    id: str  # repo id, or the directory's absolute path
    revision: str | None  # hub: the branch, tag or commit asked for; dir: None
    name: str  # what the user typed, for messages and hints
    model: catalogue.CatalogueModel | None  # the catalogue's expectations, when it has this repo

    @property
    def path(self) -> Path:
        return Path(self.id)


def resolve_source(model: str, revision: str | None = None) -> Source:
    """An alias, a local directory or a Hub id -> Source. Aliases win over a directory of the same name
    unless the name is written as a path ("./qa")."""
    if not model:
        raise ModelError("no model given", hint="give a Hub id ('owner/name'), a model alias or a directory")
    looks_like_path = model.startswith((".", "/", "~", os.sep))
    known = None if looks_like_path else catalogue.by_alias(model)
    if known is not None:
        return Source("hub", known.repo_id, hub.validate_revision(revision or hub.DEFAULT_REVISION), model, known)
    directory = Path(os.path.expanduser(model))
    if os.path.isdir(directory):  # not Path.is_dir(): it raises for a name too long to be a path
        if revision is not None:
            raise ModelError(f"--revision applies to Hub models, and {model} is a local directory")
        return Source("dir", str(directory.resolve()), None, model, None)
    if looks_like_path:
        raise ModelError(f"no such model directory: {model}")
    repo_id = hub.validate_repo_id(model)
    return Source("hub", repo_id, hub.validate_revision(revision or hub.DEFAULT_REVISION), model,
                  catalogue.by_repo_id(repo_id))


# -- entries ---------------------------------------------------------------------------------------


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
            "last_used": _iso(self.last_used) if self.last_used else None,
            "path": str(self.path),
        }


def list_entries() -> list[Entry]:
    """Every entry in the cache, most recently used first. Unreadable ones are skipped (see `damaged_entries`)."""
    entries = []
    for path in _entry_dirs():
        try:
            entries.append(_read_entry(path))
        except CacheError:
            continue
    return sorted(entries, key=lambda entry: entry.last_used, reverse=True)


def damaged_entries() -> list[Path]:
    """Entry directories whose manifest cannot be read; `models rm --all` clears them."""
    damaged = []
    for path in _entry_dirs():
        try:
            _read_entry(path)
        except CacheError:
            damaged.append(path)
    return damaged


def info(model: str, revision: str | None = None, *, verify: bool = False) -> Entry:
    """The cached entry for `model` (at `revision`, else the one most recently used). No network.

    `verify` checks the sha256 of every file, not just sizes and headers.
    """
    source = resolve_source(model, revision)
    entry = _cached_entry(source) or _latest_entry_of(source, explicit_revision=revision is not None)
    if entry is None:
        raise _not_cached(source.name)
    check_entry(entry, full=verify, name=source.name)
    return entry


def remove(models: Sequence[str], all: bool = False) -> list[Entry]:
    """Delete the entries of `models` (every cached commit of each), or every entry with `all`.

    A model is named as for `pull` (alias, Hub id, directory, also one that no longer exists) or by an
    entry's key from `models list`. Nothing is deleted unless every model named is in the cache. The
    Hugging Face download cache, which transformers shares, is left alone.
    """
    root = cache_root()
    entries = list_entries()
    with _writing_cache(root):
        return _remove(root, entries, models, all)


def _remove(root: Path, entries: list[Entry], models: Sequence[str], all: bool) -> list[Entry]:
    if all:
        doomed = entries
        for path in damaged_entries():
            _delete_dir(root, path)
    else:
        doomed, missing, damaged = [], [], []
        for model in models:
            matches = _entries_named(model, entries)
            broken = [] if matches else _damaged_named(root, model)
            if not matches and not broken:
                missing.append(model)
            doomed += [entry for entry in matches if entry not in doomed]
            damaged += broken
        if missing:
            raise _not_cached(missing[0], others=len(missing) - 1)
        for path in damaged:
            _delete_dir(root, path)
            notice(f"removed the damaged cache entry {path}")
    for entry in doomed:
        with _source_lock(root, entry.kind, entry.source_id):
            _delete_dir(root, entry.path)
    _drop_dangling_refs(root)
    return doomed


def _damaged_named(root: Path, model: str) -> list[Path]:
    """Damaged entry directories (see `damaged_entries`) of the model named as for `remove`."""
    damaged = damaged_entries()
    if not damaged:
        return []
    keys, prefix = {model}, None
    try:
        source = resolve_source(model)
    except SqueezeError:
        source = None
    if source is not None and source.kind == "hub":
        prefix = f"hub--{_repo_folder(source.id)}--".lower()
    elif source is not None:
        keys.add(_cached_key(root, source) or "")
    return [path for path in damaged if path.name in keys or (prefix and path.name.lower().startswith(prefix))]


def _entries_named(model: str, entries: list[Entry]) -> list[Entry]:
    by_key = [entry for entry in entries if entry.key == model]
    if by_key:
        return by_key
    looks_like_path = model.startswith((".", "/", "~", os.sep))
    known = None if looks_like_path else catalogue.by_alias(model)
    directory = Path(os.path.expanduser(model))
    if known is not None:
        kind, source_id = "hub", known.repo_id
    elif looks_like_path or os.path.isdir(directory):
        kind, source_id = "dir", str(directory.resolve())
    else:
        kind, source_id = "hub", model
    return _entries_of(kind, source_id, entries)


def _entries_of(kind: str, source_id: str, entries: list[Entry] | None = None) -> list[Entry]:
    """Entries of one source, most recently used first. Hub ids are case-insensitive."""
    def same(entry_id: str) -> bool:
        return entry_id.lower() == source_id.lower() if kind == "hub" else entry_id == source_id

    return [entry for entry in (list_entries() if entries is None else entries)
            if entry.kind == kind and same(entry.source_id)]


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
                raise _damaged(entry, name, f"{relative} is {stat.st_size} bytes, expected {recorded['size']}")
            if relative.endswith(".safetensors"):
                tensorfile.read_header(path)
            changed = recorded.get("mtime_ns") not in (None, stat.st_mtime_ns)
            if (full or changed) and _sha256(path) != recorded["sha256"]:
                raise _damaged(entry, name, f"{relative} does not match its checksum")
        except tensorfile.HeaderError as problem:
            raise _damaged(entry, name, f"{relative} {problem}") from None
        except FileNotFoundError:
            raise _damaged(entry, name, f"{relative} is missing") from None
        except OSError as exc:
            raise CacheError(
                f"cannot read {path}: {exc.strerror or exc}",
                hint=f"make squeeze's cache readable (e.g. chmod -R u+rwX {shlex.quote(str(entry.path))}), "
                f"or remove the entry: squeeze models rm {shlex.quote(name)}",
            ) from None


# -- pulling ---------------------------------------------------------------------------------------


def pull(
    model: str,
    revision: str | None = None,
    *,
    force: bool = False,
    offline: bool = False,
    progress: bool = True,
) -> Entry:
    """Make sure `model` (Hub id, alias or local directory) has an int8 entry; return it.

    Online, a branch or tag is looked up on the Hub (one request) so that a moved branch is pulled again;
    a commit that is already cached needs no request. Offline (`offline` or HF_HUB_OFFLINE=1) nothing is
    requested: the entry the revision last resolved to is used, or one is built from the HF cache.
    An existing entry is checked in full (sha256) and rebuilt if damaged; `force` always rebuilds.
    """
    return _pull(resolve_source(model, revision), force=force, offline=offline, progress=progress)


def _pull(
    source: Source, *, force: bool, offline: bool, progress: bool, head_hint: str | None = None,
    notify: Notify | None = None,
) -> Entry:
    """`pull`; `notify` (from first use in `load_runtime`) hears when a model is about to be quantized.
    It is told only once the checkpoint has loaded, so a download or a checkpoint that fails is reported
    by its error alone."""
    root = cache_root()
    with _writing_cache(root), _source_lock(root, source.kind, source.id):
        _remove_stale_temp(root)
        if source.kind == "dir":
            content = _content_hash(root, source.path)
            key = _dir_key(source.path, content)
            reusable = None if force else _intact_entry(root, key)
            if reusable is not None:
                return reusable
            return _build(root, key, source, source.path, content, _dir_files(source.path), head_hint, notify)

        assert source.revision is not None
        offline = offline or hub.offline_from_env()
        if not force and (offline or _COMMIT_SHA.fullmatch(source.revision)):
            known = _cached_key(root, source)
            if known is not None and (intact := _intact_entry(root, known)) is not None:
                return intact
        snapshot = hub.fetch(source.id, source.revision, offline=offline, progress=progress)
        key = _hub_key(source.id, snapshot.commit)
        entry = None if force else _intact_entry(root, key)
        if entry is None:
            entry = _build(root, key, source, snapshot.path, snapshot.commit, list(snapshot.files), head_hint, notify)
        _write_ref(root, source.id, source.revision, snapshot.commit)
        return entry


def _build(
    root: Path, key: str, source: Source, source_dir: Path, commit: str, files: list[str], head_hint: str | None,
    notify: Notify | None = None,
) -> Entry:
    """Quantize the checkpoint in `source_dir` and install it as entry `key`, atomically."""
    from . import quantize
    from .runtime import Runtime

    raw = _read_json(source_dir / hub.CONFIG_FILE, ModelError)
    head = checkpoint_head(source_dir, raw, source.model.head if source.model else head_hint)
    id2label = _checked_labels(source, raw, head)
    runtime = Runtime.from_dir(source_dir, head, name=source.name)
    if notify is not None:
        notify(f"{source.name} is used for the first time: quantizing it to int8 (once; it is cached for next time)")
    parameters = sum(p.numel() for p in runtime.encoder.parameters())
    tensors, meta = quantize.quantize(runtime)

    temp = _new_temp_dir(root, key)
    try:
        for relative in _companion_files(files):
            target = temp / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            if relative == hub.CONFIG_FILE:
                # The labels the catalogue checked (or supplied, for LABEL_<n> placeholders) travel with the
                # entry, so the int8 model never needs the source's config.json.
                patched = dict(raw, id2label={str(i): label for i, label in id2label.items()},
                               label2id={label: i for i, label in id2label.items()}) if id2label else raw
                target.write_text(json.dumps(patched, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            else:
                shutil.copyfile(source_dir / relative, target)
        tensorfile.write(temp / WEIGHTS, tensors, metadata={"format": "pt", "squeezecli": __version__})
        manifest = {
            "format": MANIFEST_FORMAT,
            "source": {
                "kind": source.kind,
                "id": source.id,
                "alias": source.model.alias if source.model else None,
                "revision": source.revision,
                "commit": commit,
            },
            "architecture": raw.get("model_type"),
            "heads": [head] + (["base"] if head != "base" else []),
            "parameters": parameters,
            "quantization": {"scheme": str(meta.get("scheme", "int8")), "meta": meta},
            "files": {relative: _file_record(temp / relative) for relative in _files_under(temp)},
            "size": {
                "int8": sum(p.stat().st_size for p in temp.rglob("*") if p.is_file()),
                "source": sum((source_dir / relative).stat().st_size for relative in files),
            },
            "squeezecli": __version__,
            "created": _iso(time.time()),
        }
        _write_durably(temp / MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
        (temp / LAST_USED).touch()
        _fsync_tree(temp)
        final = root / "entries" / key
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            # Only a forced or damaged rebuild gets here, under the source lock. Moved aside first: a
            # directory cannot be renamed over a non-empty one.
            _delete_dir(root, final)
        os.replace(temp, final)
        _fsync_dir(final.parent)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return _read_entry(final)


def _checked_labels(source: Source, raw: dict[str, Any], head: str) -> dict[int, str]:
    """The id2label the entry gets, after the catalogue's checks for catalogued models."""
    try:
        id2label = {int(k): str(v) for k, v in (raw.get("id2label") or {}).items()}
    except (TypeError, ValueError, AttributeError):
        raise ModelError("config.json's id2label is not a map from class ids to names") from None
    if head not in ("sequence", "token"):
        id2label = {}
    if source.model is None:
        return id2label
    return catalogue.checked_labels(source.model, str(raw.get("model_type") or ""), head, id2label)


def checkpoint_head(model_dir: Path, raw_config: dict[str, Any], hint: str | None = None) -> str:
    """Which head a Hub-format checkpoint has: from config.json's `architectures`, else from the names of
    its tensors. A bare `classifier` is a sequence or a token head; `hint` decides, else sequence."""
    for architecture in raw_config.get("architectures") or []:
        for suffix, head in _ARCHITECTURE_HEADS:
            if isinstance(architecture, str) and architecture.endswith(suffix):
                return head
    roots = {name.split(".")[0] for name in _tensor_names(model_dir)}
    if "qa_outputs" in roots:
        return "qa"
    if "pre_classifier" in roots:
        return "sequence"
    if "classifier" in roots:
        return hint if hint in ("sequence", "token") else "sequence"
    return "base"


# -- loading ---------------------------------------------------------------------------------------


def load_runtime(
    model: str,
    head: str,
    *,
    precision: str = "int8",
    revision: str | None = None,
    offline: bool = False,
    progress: bool = True,
    notify: Notify | None = None,
) -> Runtime:
    """A ready model for `head` ("base", "sequence", "token" or "qa").

    int8 (the default) loads the cached int8 entry, pulling it first if this is the model's first use;
    fp32 runs the original checkpoint from the Hugging Face cache. A classifier, token or QA checkpoint
    also serves "base" (its encoder without the task head, e.g. embeddings of a sentiment model).
    Where this machine has no int8 kernel, fp32 is used with a one-line notice.
    """
    notify = notify or _notice
    source = resolve_source(model, revision)
    if precision not in ("int8", "fp32"):
        raise ModelError(f"unknown precision {precision!r}", hint="use int8 or fp32")
    if precision == "fp32":
        return _load_fp32(source, head, offline=offline, progress=progress, notify=notify)
    from . import quantize

    backend = quantize.int8_backend()
    if backend is None:
        notify("no int8 kernel on this machine (or SQUEEZE_INT8_KERNEL=none): running in fp32")
        return _load_fp32(source, head, offline=offline, progress=progress, notify=notify)
    entry = _cached_entry(source)
    if entry is None:
        entry = _pull(source, force=False, offline=offline, progress=progress, head_hint=head, notify=notify)
    return _load_int8(entry, head, backend, source)


def _load_int8(entry: Entry, head: str, backend: Any, source: Source) -> Runtime:
    from . import quantize
    from .config import read_config
    from .runtime import Runtime
    from .tokenizer import Tokenizer

    _require_head(entry.heads, head, source)
    check_entry(entry, name=source.name)
    try:
        from safetensors.torch import load_file

        cfg, _ = read_config(entry.path)
        tensors = load_file(entry.path / WEIGHTS)
        encoder = quantize.load_quantized(cfg, entry.head, tensors, entry.manifest["quantization"]["meta"], backend)
        tokenizer = Tokenizer.from_dir(entry.path)
    except Exception as exc:  # whatever a damaged or outdated entry makes the loaders raise
        problem = exc.message if isinstance(exc, SqueezeError) else f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
        raise CacheError(f"cannot load the cached int8 model for '{source.name}': {problem} ({entry.path})",
                         hint=_fix_hint(source.name)) from exc
    _touch(entry.path / LAST_USED)
    return Runtime(_with_head(encoder, head), tokenizer, entry.path, source.name)


def _load_fp32(source: Source, head: str, *, offline: bool, progress: bool, notify: Notify) -> Runtime:
    from .runtime import Runtime

    if source.kind == "dir":
        model_dir = source.path
    else:
        assert source.revision is not None
        # The commit this revision was pulled at, so fp32 and int8 run the same weights, with no request.
        pulled = _read_ref(cache_root(), source.id, source.revision)
        revision = pulled or source.revision
        downloaded_before = hub.cached_snapshot(source.id, revision) is not None
        model_dir = hub.fetch(source.id, revision, offline=offline, progress=progress).path
        if not downloaded_before:
            notify(f"{source.name} is used for the first time: downloaded it into the Hugging Face cache")
    raw = _read_json(model_dir / hub.CONFIG_FILE, ModelError)
    native = checkpoint_head(model_dir, raw, source.model.head if source.model else head)
    id2label = _checked_labels(source, raw, native)
    _require_head([native] + (["base"] if native != "base" else []), head, source)
    runtime = Runtime.from_dir(model_dir, native, name=source.name)
    if id2label and id2label != runtime.config.id2label:
        runtime.encoder.cfg = dataclasses.replace(runtime.config, id2label=id2label)
    runtime.encoder = _with_head(runtime.encoder, head)
    return runtime


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
    kinds = {"base": "a base encoder", "sequence": "a sequence classifier", "token": "a token classifier",
             "qa": "a question-answering model"}
    raise ModelError(
        f"model '{source.name}' is {kinds.get(available[0], available[0])}, not {kinds.get(head, head)}",
        hint="pick a model made for this task; `squeeze models list` shows each model's heads",
    )


# -- finding entries without the network -------------------------------------------------------------


def _cached_key(root: Path, source: Source) -> str | None:
    """The key this source resolves to locally (a Hub revision's ref, a directory's content), or None."""
    if source.kind == "dir":
        return _dir_key(source.path, _content_hash(root, source.path))
    assert source.revision is not None
    commit = source.revision if _COMMIT_SHA.fullmatch(source.revision) else _read_ref(root, source.id, source.revision)
    return None if commit is None else _hub_key(source.id, commit)


def _cached_entry(source: Source) -> Entry | None:
    """The entry this source resolves to locally, or None if there is none. An entry directory that is
    there but damaged (no manifest, or an unreadable one) is a CacheError: a run never uses or quietly
    replaces a damaged entry; `pull` rebuilds it."""
    root = cache_root()
    key = _cached_key(root, source)
    if key is None:
        return None
    path = root / "entries" / key
    if not path.exists():
        return None
    try:
        return _read_entry(path)
    except CacheError as exc:
        raise CacheError(exc.message, hint=_fix_hint(source.name)) from None


def _latest_entry_of(source: Source, *, explicit_revision: bool) -> Entry | None:
    if explicit_revision and source.kind == "hub":
        return None  # a revision that was never pulled is not "the latest other one"
    entries = _entries_of(source.kind, source.id)
    return entries[0] if entries else None


def _intact_entry(root: Path, key: str) -> Entry | None:
    """The entry `key` if it exists and passes the full check; a damaged one is removed."""
    path = root / "entries" / key
    if not path.exists():
        return None
    try:
        entry = _read_entry(path)
        check_entry(entry, full=True)
    except CacheError:
        _delete_dir(root, path)
        return None
    return entry


def _read_entry(path: Path) -> Entry:
    if not (path / MANIFEST).exists():
        raise CacheError(f"the cache entry {path} has no manifest",
                         hint=f"remove it with `squeeze models rm --all` or delete {path}")
    manifest = _read_json(path / MANIFEST, CacheError)
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


def _entry_dirs() -> list[Path]:
    entries = cache_root() / "entries"
    try:
        return sorted(path for path in entries.iterdir() if path.is_dir())
    except FileNotFoundError:
        return []


# -- refs: revision -> commit, directory -> content hash -------------------------------------------------


def _ref_path(root: Path, repo_id: str, revision: str) -> Path:
    return root / "refs" / "hub" / _repo_folder(repo_id) / revision


def _read_ref(root: Path, repo_id: str, revision: str) -> str | None:
    try:
        commit = _ref_path(root, repo_id, revision).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return commit if _COMMIT_SHA.fullmatch(commit) else None


def _write_ref(root: Path, repo_id: str, revision: str, commit: str) -> None:
    if revision == commit:
        return
    _write_atomically(_ref_path(root, repo_id, revision), commit)


def _drop_dangling_refs(root: Path) -> None:
    """Refs whose entry is gone; the next use of that revision pulls again."""
    for ref in (root / "refs" / "hub").glob("*/**/*"):
        if not ref.is_file():
            continue
        folder = ref.relative_to(root / "refs" / "hub").parts[0]
        try:
            commit = ref.read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            commit = ""  # unreadable: it points nowhere squeeze can use
        if not (root / "entries" / f"hub--{folder}--{commit}").is_dir():
            ref.unlink(missing_ok=True)


def _content_hash(root: Path, directory: Path) -> str:
    """sha256 over the files squeeze reads from a local model directory.

    Hashing a few hundred MB on every run would cost seconds, so the hash is remembered together with the
    files' sizes and modification times, and recomputed only when one of those changes.
    """
    files = _dir_files(directory)
    stats = [[relative, *_stat_signature(directory / relative)] for relative in files]
    memo_path = root / "refs" / "dir" / (hashlib.sha256(str(directory).encode()).hexdigest()[:32] + ".json")
    try:
        memo = json.loads(memo_path.read_text(encoding="utf-8"))
        if memo.get("path") == str(directory) and memo.get("stats") == stats:
            return str(memo["content"])
    except (OSError, ValueError, KeyError, AttributeError):
        pass
    digest = hashlib.sha256()
    for relative in files:
        digest.update(f"{relative}\0{_sha256(directory / relative)}\0".encode())
    content = digest.hexdigest()
    with contextlib.suppress(OSError):  # a read-only cache only costs the re-hash next time
        _write_atomically(memo_path, json.dumps({"path": str(directory), "stats": stats, "content": content}))
    return content


def _stat_signature(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def _dir_files(directory: Path) -> list[str]:
    """The files of a local Hub-format directory that squeeze reads, the same selection `hub.fetch` makes."""
    # Checked before the walk below: `--model /` or `--model ~` must fail at once, not walk the disk.
    if not (directory / hub.CONFIG_FILE).is_file():
        raise ModelError(f"{directory} has no config.json", hint="a model directory is in Hugging Face Hub format")
    present = set(_files_under(directory))
    weights: list[str] = []
    for single, index in hub.WEIGHT_FORMATS:
        if single in present:
            weights = [single]
        elif index in present:
            weights = [index, *hub.shard_names(directory / index, ModelError, str(directory))]
        if weights:
            break
    if not weights:
        raise ModelError(f"{directory} has no model.safetensors or pytorch_model.bin")
    missing = [name for name in weights if name not in present]
    if missing:
        raise ModelError(f"{directory} lacks the weight shard {missing[0]}")
    companions = [name for name in (*hub.TOKENIZER_FILES, *hub.SENTENCE_TRANSFORMERS_FILES) if name in present]
    companions += sorted(name for name in present if _POOLING_CONFIG.fullmatch(name))
    return sorted({hub.CONFIG_FILE, *weights, *companions})


def _companion_files(files: Iterable[str]) -> list[str]:
    """Everything but the weights: config, tokenizer and sentence-transformers files."""
    weight_names = {name for pair in hub.WEIGHT_FORMATS for name in pair}
    return sorted(f for f in files if f not in weight_names and not f.endswith((".safetensors", ".bin")))


# -- keys and names --------------------------------------------------------------------------------


def _repo_folder(repo_id: str) -> str:
    return repo_id.replace("/", "--")  # hub.validate_repo_id forbids "--" inside names, so this is reversible


def _hub_key(repo_id: str, commit: str) -> str:
    return f"hub--{_repo_folder(repo_id)}--{commit}"


def _dir_key(directory: Path, content: str) -> str:
    name = _UNSAFE_NAME_CHARS.sub("_", directory.name)[:40] or "model"
    return f"dir--{name}--{content[:32]}"


def _fix_hint(name: str) -> str:
    quoted = shlex.quote(name)
    return f"run `squeeze models pull --force {quoted}` to rebuild it, or `squeeze models rm {quoted}`"


def _damaged(entry: Entry, name: str, problem: str) -> CacheError:
    return CacheError(f"the cached int8 model for '{name}' is damaged: {problem} ({entry.path})", hint=_fix_hint(name))


def _not_cached(name: str, others: int = 0) -> ModelError:
    more = f" (and {others} more)" if others else ""
    return ModelError(f"'{name}' is not in squeeze's model cache{more}",
                      hint="`squeeze models list` shows the cached models; `squeeze models pull MODEL` adds one")


# -- files -----------------------------------------------------------------------------------------


def _read_json(path: Path, error: type[ModelError | CacheError]) -> dict[str, Any]:
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{path} is missing") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise error(f"{path} is not readable JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise error(f"{path} is not a JSON object")
    return payload


def _files_under(directory: Path) -> list[str]:
    return sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file())


def _file_record(path: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": _sha256(path)}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_durably(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}")
    try:
        _write_durably(temp, text)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _fsync_tree(directory: Path) -> None:
    for path in sorted(directory.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        elif path.is_dir():
            _fsync_dir(path)
    _fsync_dir(directory)


def _fsync_dir(directory: Path) -> None:
    if os.name != "posix":  # directories cannot be opened for fsync on Windows
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _touch(path: Path) -> None:
    with contextlib.suppress(OSError):  # a read-only cache still runs; it just cannot record use
        path.touch()


def _tensor_names(model_dir: Path) -> list[str]:
    """Tensor names of a checkpoint, read from safetensors headers or shard indexes where possible."""
    for single, index in hub.WEIGHT_FORMATS:
        if (model_dir / index).is_file() and not (model_dir / single).is_file():
            return list((_read_json(model_dir / index, ModelError).get("weight_map") or {}).keys())
        path = model_dir / single
        if not path.is_file():
            continue
        if single.endswith(".safetensors"):
            try:
                return list(tensorfile.read_header(path))
            except (OSError, tensorfile.HeaderError) as exc:
                raise ModelError(f"{path} is not a readable safetensors file: {exc}") from None
        from .weights import read_checkpoint

        return list(read_checkpoint(model_dir).keys())
    return []


# -- writing the cache -------------------------------------------------------------------------------------


@contextlib.contextmanager
def _writing_cache(root: Path) -> Iterator[None]:
    """OSErrors of writing the cache as CacheErrors naming the cache and the fix: a read-only or full disk
    is the user's to mend. An OSError about a file outside the cache is a model file that cannot be read."""
    try:
        yield
    except SqueezeError:
        raise
    except OSError as exc:
        named = [str(name) for name in (exc.filename, exc.filename2) if name]
        reading_elsewhere = named and not any(name.startswith(str(root)) for name in named)
        if reading_elsewhere and exc.errno not in _FULL_OR_READ_ONLY:
            raise ModelError(f"cannot read {named[0]}: {exc.strerror or exc}") from exc
        raise _unwritable(root, exc) from exc


# A copy from a model directory into the cache fails with these, naming the source (shutil sets it).
_FULL_OR_READ_ONLY = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)


def _unwritable(root: Path, exc: OSError) -> CacheError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        hint = f"free some space there, or point {CACHE_ENV} at a directory with room"
    elif exc.errno in (errno.ENOTDIR, errno.EEXIST):
        hint = f"something in squeeze's cache is a file where a directory belongs; point {CACHE_ENV} elsewhere"
    else:
        hint = (f"make it writable, or point {CACHE_ENV} at a writable directory; --precision fp32 runs a model "
                "from the Hugging Face cache without squeeze's")
    return CacheError(f"cannot write to squeeze's cache at {root}: {exc.strerror or exc}", hint=hint)


# -- temp dirs, trash and locks -------------------------------------------------------------------------


def _new_temp_dir(root: Path, key: str) -> Path:
    path = root / "tmp" / f"{key}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    path.mkdir(parents=True)
    return path


def _delete_dir(root: Path, path: Path) -> None:
    """Remove a directory so that it disappears at once: renamed into tmp/ (atomic), then deleted."""
    trash = root / "tmp" / f"trash.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    trash.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(path, trash)
    except FileNotFoundError:
        return
    shutil.rmtree(trash, ignore_errors=True)


def _remove_stale_temp(root: Path) -> None:
    """Delete tmp/ directories left by pulls that were killed: their process is gone (or they are old)."""
    try:
        candidates = list((root / "tmp").iterdir())
    except FileNotFoundError:
        return
    now = time.time()
    for path in candidates:
        parts = path.name.rsplit(".", 2)
        pid = int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None
        try:
            old = now - path.stat().st_mtime > STALE_TEMP_SECONDS
        except FileNotFoundError:
            continue
        if old or pid is None or (pid != os.getpid() and not _process_alive(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


@contextlib.contextmanager
def _source_lock(root: Path, kind: str, source_id: str) -> Iterator[None]:
    """Serialise pulls and removals of one model source across threads and processes. The lock is an OS
    file lock, so a killed process releases it."""
    from filelock import FileLock

    locks = root / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    name = hashlib.sha256(f"{kind}\0{source_id.lower() if kind == 'hub' else source_id}".encode()).hexdigest()[:32]
    with FileLock(str(locks / f"{name}.lock")):
        yield


# -- small helpers ---------------------------------------------------------------------------------


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).isoformat(timespec="seconds")


def _notice(message: str) -> None:
    notice(message)
