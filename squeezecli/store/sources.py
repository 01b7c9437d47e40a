"""What the user typed as a model -> a `Source`: a catalogue alias, a local directory in Hub format, or a
Hub repository at a revision. Aliases win over a directory of the same name unless the name is written
as a path ("./qa"). Repository ids and revisions are validated here, before they become paths.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelError
from . import catalogue, hub


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
    """An alias, a local directory or a Hub id -> Source."""
    if not model:
        raise ModelError("no model given", hint="give a Hub id ('owner/name'), a model alias or a directory")
    kind, source_id, known = _identify(model)
    if kind == "hub":
        repo_id = source_id if known is not None else hub.validate_repo_id(source_id)
        return Source("hub", repo_id, hub.validate_revision(revision or hub.DEFAULT_REVISION), model,
                      known or catalogue.by_repo_id(repo_id))
    if not os.path.isdir(source_id):  # not Path.is_dir(): it raises for a name too long to be a path
        raise ModelError(f"no such model directory: {model}")
    if revision is not None:
        raise ModelError(f"--revision applies to Hub models, and {model} is a local directory")
    return Source("dir", source_id, None, model, None)


def identity(model: str) -> tuple[str, str]:
    """(kind, id) of a model named as for `resolve_source`, also a directory that no longer exists and an
    id never validated: what cached entries of it are recorded under."""
    kind, source_id, _ = _identify(model)
    return kind, source_id


def _identify(model: str) -> tuple[str, str, catalogue.CatalogueModel | None]:
    looks_like_path = model.startswith((".", "/", "~", os.sep))
    known = None if looks_like_path else catalogue.by_alias(model)
    if known is not None:
        return "hub", known.repo_id, known
    directory = Path(os.path.expanduser(model))
    if looks_like_path or os.path.isdir(directory):
        return "dir", str(directory.resolve()), None
    return "hub", model, None
