"""Refs, which find a commit with no network request: the commit a Hub branch or tag resolved to when it
was pulled (squeeze's cache: refs/hub/<owner--name>/<revision>; the Hugging Face cache keeps its own,
models--<owner>--<name>/refs/<revision>, read and written here too), and a local directory's content hash
with the file stats it was computed from (refs/dir/<hash>.json).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from pathlib import Path

from ..checkpoint import layout
from . import files

COMMIT_SHA = re.compile(r"[0-9a-f]{40}")


def repo_folder(repo_id: str) -> str:
    return repo_id.replace("/", "--")  # hub.validate_repo_id forbids "--" inside names, so this is reversible


def _ref_path(root: Path, repo_id: str, revision: str) -> Path:
    return root / "refs" / "hub" / repo_folder(repo_id) / revision


def read_ref(root: Path, repo_id: str, revision: str) -> str | None:
    return read_commit(_ref_path(root, repo_id, revision))


def write_ref(root: Path, repo_id: str, revision: str, commit: str) -> None:
    write_commit(_ref_path(root, repo_id, revision), revision, commit)


def read_commit(ref: Path) -> str | None:
    """The commit the ref file `ref` names, or None where it is missing, unreadable or names no full sha."""
    try:
        commit = ref.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return commit if COMMIT_SHA.fullmatch(commit) else None


def write_commit(ref: Path, revision: str, commit: str) -> None:
    """Record that `revision` (a branch or tag) is `commit`, atomically; a commit needs no ref."""
    if revision != commit:
        files.write_atomically(ref, commit)


def drop_dangling_refs(root: Path) -> None:
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


def remembered_content_hash(root: Path, directory: Path) -> str | None:
    """content_hash where it is remembered for the files as they are now; None where it would have to be
    computed (a directory never pulled, or changed since): for a look that must stay cheap."""
    _, stats, memo_path = _stats(root, directory)
    return _remembered(memo_path, directory, stats)


def _stats(root: Path, directory: Path) -> tuple[list[str], list[list], Path]:
    names = layout.directory_files(directory)
    stats = [[relative, (directory / relative).stat().st_size, (directory / relative).stat().st_mtime_ns]
             for relative in names]
    return names, stats, root / "refs" / "dir" / (hashlib.sha256(str(directory).encode()).hexdigest()[:32] + ".json")


def _remembered(memo_path: Path, directory: Path, stats: list[list]) -> str | None:
    try:
        memo = json.loads(memo_path.read_text(encoding="utf-8"))
        if memo.get("path") == str(directory) and memo.get("stats") == stats:
            return str(memo["content"])
    except (OSError, ValueError, KeyError, AttributeError):
        pass
    return None


def content_hash(root: Path, directory: Path) -> str:
    """sha256 over the files squeeze reads from a local model directory.

    Hashing a few hundred MB on every run would cost seconds, so the hash is remembered together with the
    files' sizes and modification times, and recomputed only when one of those changes.
    """
    names, stats, memo_path = _stats(root, directory)
    remembered = _remembered(memo_path, directory, stats)
    if remembered is not None:
        return remembered
    digest = hashlib.sha256()
    for relative in names:
        digest.update(f"{relative}\0{files.sha256(directory / relative)}\0".encode())
    content = digest.hexdigest()
    with contextlib.suppress(OSError):  # a read-only cache only costs the re-hash next time
        files.write_atomically(memo_path, json.dumps({"path": str(directory), "stats": stats, "content": content}))
    return content
