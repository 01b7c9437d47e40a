"""Download side of the model store: fetch the few files squeeze needs from the Hugging Face Hub.

Files land in the standard Hugging Face cache (`$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
`~/.cache/huggingface/hub`), so a model a transformers user already downloaded is reused, and the
other way round. Only what squeeze runs on is fetched (checkpoint/layout.py says which): config.json, the
tokenizer files, one weight format and the sentence-transformers pooling files.

The endpoint, token, offline mode and cache come from the `Environment` and are passed to
huggingface_hub explicitly, because the library freezes its own copy of the environment at import time.
Every failure leaves as a `SqueezeError`; messages never contain the token.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..checkpoint import layout
from ..environment import Environment
from ..errors import CacheError, ModelError, NetworkError
from .refs import COMMIT_SHA, read_commit, repo_folder, write_commit

DEFAULT_REVISION = "main"

MAX_REPO_NAME_LENGTH = 96
MAX_REVISION_LENGTH = 255
_REPO_NAME = re.compile(r"[A-Za-z0-9._-]+")
_REVISION_PART = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class Snapshot:
    """A complete local copy of the files squeeze needs from one commit of a Hub model."""

    repo_id: str
    commit: str
    path: Path  # the commit's snapshot directory in the HF cache
    files: tuple[str, ...]  # '/'-separated paths relative to `path`, sorted


def validate_repo_id(repo_id: object) -> str:
    """Return `repo_id` if it is a well-formed `name` or `owner/name`; it becomes a cache path, so be strict."""
    if not isinstance(repo_id, str) or not repo_id:
        raise ModelError("the model id is empty", hint="give a Hub id such as 'owner/name'")
    parts = repo_id.split("/")
    if len(parts) > 2 or not all(_is_valid_repo_name(part) for part in parts):
        raise ModelError(
            f"invalid model id {repo_id!r}",
            hint=f"use 'name' or 'owner/name': letters, digits, '.', '_' and '-', at most {MAX_REPO_NAME_LENGTH}"
            " characters each, not starting or ending with '.' or '-', no '..' or '--'",
        )
    return repo_id


def validate_revision(revision: object) -> str:
    """Return `revision` if it is a plausible branch, tag or commit; it becomes a path under refs/."""
    if (
        not isinstance(revision, str)
        or not 0 < len(revision) <= MAX_REVISION_LENGTH
        or ".." in revision
        or not all(_REVISION_PART.fullmatch(part) for part in revision.split("/"))
    ):
        raise ModelError(f"invalid revision {revision!r}", hint="give a branch, a tag or a full commit sha")
    return revision


def fetch(
    repo_id: str,
    revision: str | None = None,
    *,
    offline: bool = False,
    token: str | None = None,
    progress: bool = True,
    env: Environment | None = None,
    before_weights: Callable[[Path], None] | None = None,
) -> Snapshot:
    """Make sure the files squeeze needs from `repo_id` at `revision` are cached, and return them.

    Offline (`offline=True` or HF_HUB_OFFLINE=1) makes no request at all and only accepts a complete
    cached snapshot. Online, a pinned commit that is fully cached is returned without a request; a
    branch or tag costs one metadata request (to learn its current commit) plus the missing files.
    If the Hub cannot be reached, a complete cached snapshot of the revision is used instead. Where files
    are downloaded, `before_weights(directory)` is called once config.json and the tokenizer files are in
    the snapshot's directory and before any weight file is requested: whatever it raises ends the fetch.
    """
    env = env or Environment.from_os()
    repo_id = validate_repo_id(repo_id)
    revision = validate_revision(revision if revision is not None else DEFAULT_REVISION)
    if offline or env.offline:
        return _cached_or_unreachable(repo_id, revision, env, "offline mode is on")
    if COMMIT_SHA.fullmatch(revision):
        cached = cached_snapshot(repo_id, revision, env)
        if cached is not None:
            return cached
    try:
        with _progress_bars(progress):
            return _download(repo_id, revision, env, token or env.token, before_weights)
    except _HubUnreachable as unreachable:
        return _cached_or_unreachable(repo_id, revision, env, unreachable.reason, cause=unreachable.cause)
    except _DownloadInterrupted as interrupted:
        cached = cached_snapshot(repo_id, revision, env)
        if cached is not None:
            return cached
        raise NetworkError(
            f"the download of model '{repo_id}' was interrupted ({interrupted.reason})",
            hint="run the command again: finished files are kept and the rest is downloaded again",
        ) from interrupted.cause


def cached_snapshot(repo_id: str, revision: str = DEFAULT_REVISION, env: Environment | None = None) -> Snapshot | None:
    """The complete cached snapshot of `repo_id` at `revision`, or None; reads the disk only.

    "Complete" means the files `fetch` would download are all there: config.json, a tokenizer vocabulary,
    and a weight format with every shard its index names, which `fetch` downloads last so that an
    interrupted download never looks complete.
    """
    repo_id = validate_repo_id(repo_id)
    revision = validate_revision(revision)
    storage = (env or Environment.from_os()).hf_cache_dir / _repo_folder_name(repo_id)
    commit = revision if COMMIT_SHA.fullmatch(revision) else read_commit(storage / "refs" / revision)
    if commit is None:
        return None
    snapshot = storage / "snapshots" / commit
    if not snapshot.is_dir():
        return None
    files = layout.selection(_files_under(snapshot),
                             lambda index: layout.shard_names(snapshot / index, CacheError, repo_id))
    if files is None:
        return None
    return Snapshot(repo_id, commit, snapshot, tuple(sorted(files)))


# -- downloading ----------------------------------------------------------------------------------


class _HubUnreachable(Exception):
    def __init__(self, reason: str, cause: BaseException | None = None) -> None:
        super().__init__(reason)
        self.reason, self.cause = reason, cause


class _DownloadInterrupted(Exception):
    def __init__(self, reason: str, cause: BaseException) -> None:
        super().__init__(reason)
        self.reason, self.cause = reason, cause


def _download(repo_id: str, revision: str, env: Environment, token: str | None,
              before_weights: Callable[[Path], None] | None = None) -> Snapshot:
    from huggingface_hub import HfApi, hf_hub_download

    # A token of None lets huggingface_hub fall back to the one `hf auth login` saved.
    endpoint, cache_dir = env.endpoint, env.hf_cache_dir
    api = HfApi(endpoint=endpoint, token=token)
    with _translated_errors(repo_id, revision, token, env, downloading=False):
        info = api.model_info(repo_id, revision=revision)
        commit = info.sha
        available = {sibling.rfilename for sibling in info.siblings or []}
        if not available:  # the Hub leaves `siblings` empty for very large repos
            available = set(api.list_repo_files(repo_id, revision=commit))
    if commit is None or not COMMIT_SHA.fullmatch(commit):
        raise NetworkError(f"the Hub at {endpoint} did not say which commit '{revision}' of model '{repo_id}' is")

    weights, companions = _required_files(repo_id, available)
    fetched: list[str] = []

    def download(filename: str) -> Path:
        with _translated_errors(repo_id, revision, token, env, downloading=True):
            local = hf_hub_download(
                repo_id, filename, revision=commit, cache_dir=str(cache_dir), endpoint=endpoint, token=token
            )
        fetched.append(filename)
        return Path(local)

    # The weights last: `cached_snapshot` treats a snapshot without them (or one of their shards) as
    # unfinished, so a download cut off anywhere before the end is never mistaken for a complete one; and
    # a run sees config.json and the tokenizer (`before_weights`) before the large files come.
    for filename in companions:
        download(filename)
    snapshot = download(layout.CONFIG_FILE).parent
    if before_weights is not None:
        before_weights(snapshot)
    index = download(weights)
    if weights.endswith(".index.json"):
        shards = layout.shard_names(index, ModelError, repo_id)
        missing = [shard for shard in shards if shard not in available]
        if missing:
            raise ModelError(f"model '{repo_id}' is missing the weight shard {missing[0]} named in {weights}")
        for shard in shards:
            download(shard)

    storage = cache_dir / _repo_folder_name(repo_id)
    try:
        write_commit(storage / "refs" / revision, revision, commit)  # as huggingface_hub does, for offline runs
    except OSError as exc:
        raise CacheError(f"cannot write to the Hugging Face cache at {cache_dir}: {exc.strerror}") from exc
    return Snapshot(repo_id, commit, snapshot, tuple(sorted(fetched)))


def _required_files(repo_id: str, available: set[str]) -> tuple[str, list[str]]:
    if layout.CONFIG_FILE not in available:
        raise ModelError(
            f"model '{repo_id}' has no config.json",
            hint="squeeze runs transformers encoder checkpoints (BERT, DistilBERT, RoBERTa, SqueezeBERT, MiniLM)",
        )
    weights = layout.weights_entry(available)
    if weights is None:
        raise ModelError(
            f"model '{repo_id}' has no model.safetensors or pytorch_model.bin weights",
            hint="squeeze reads PyTorch checkpoints; ONNX, TensorFlow or Flax-only repos are not supported",
        )
    if not any(name in available for name in layout.TOKENIZER_VOCABULARIES):
        raise ModelError(f"model '{repo_id}' has no tokenizer (tokenizer.json, vocab.txt or vocab.json)")
    return weights, layout.companion_files(available)


def _cached_or_unreachable(
    repo_id: str, revision: str, env: Environment, reason: str, cause: BaseException | None = None
) -> Snapshot:
    cache_dir = env.hf_cache_dir
    cached = cached_snapshot(repo_id, revision, env)
    if cached is not None:
        return cached
    where = f"model '{repo_id}'" if revision == DEFAULT_REVISION else f"revision '{revision}' of model '{repo_id}'"
    if cause is None:  # offline mode: say which switch turned it on
        switch = "with HF_HUB_OFFLINE unset" if env.offline else "without --offline"
        hint = f"run it once online ({switch}) to download it into {cache_dir}"
    else:
        hint = f"check the network connection to {env.endpoint} (HF_ENDPOINT); once downloaded, it runs offline"
    raise NetworkError(f"{where} is not cached and the Hub is unreachable ({reason})", hint=hint) from cause


@contextmanager
def _translated_errors(repo_id: str, revision: str, token: str | None, env: Environment, *,
                       downloading: bool) -> Iterator[None]:
    """Turn huggingface_hub / HTTP-client exceptions into SqueezeErrors, or into the internal
    _HubUnreachable / _DownloadInterrupted that `fetch` answers from the cache when it can."""
    from huggingface_hub import errors as hf

    try:
        yield
    except hf.GatedRepoError as exc:
        raise _access_refused(repo_id, exc.response.status_code, token) from exc
    except hf.RepositoryNotFoundError as exc:
        raise ModelError(
            f"model '{repo_id}' was not found on the Hub",
            hint="check the spelling of the 'owner/name' id or use a squeeze model alias;"
            " a private model also needs HF_TOKEN",
        ) from exc
    except hf.RevisionNotFoundError as exc:
        raise ModelError(
            f"revision '{revision}' of model '{repo_id}' was not found on the Hub",
            hint="give a branch, tag or full commit sha that exists for this model",
        ) from exc
    except (hf.LocalEntryNotFoundError, hf.OfflineModeIsEnabled) as exc:
        # Raised by hf_hub_download when it could not reach the Hub for a file it does not have.
        raise _HubUnreachable("no connection", exc) from exc
    except hf.EntryNotFoundError as exc:
        raise ModelError(f"model '{repo_id}' lists a file the Hub then could not find") from exc
    except hf.HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status in (401, 403):
            raise _access_refused(repo_id, status, token) from exc
        raise _HubUnreachable(f"HTTP {status}", exc) from exc
    except Exception as exc:
        if _is_transport_error(exc):
            if downloading:
                raise _DownloadInterrupted(f"connection lost: {type(exc).__name__}", exc) from exc
            raise _HubUnreachable(f"no connection: {type(exc).__name__}", exc) from exc
        if not isinstance(exc, OSError):
            raise
        if exc.errno is None:  # huggingface_hub's size check: the body was shorter than announced
            raise _DownloadInterrupted("the file arrived incomplete", exc) from exc
        raise CacheError(f"cannot write to the Hugging Face cache at {env.hf_cache_dir}: {exc.strerror}",
                         hint=_WRITABLE_HINT) from exc


_WRITABLE_HINT = "free some space or make it writable, or point HF_HUB_CACHE at a writable directory"


def _access_refused(repo_id: str, status: int | None, token: str | None) -> NetworkError:
    if token:
        return NetworkError(
            f"the Hub refused access to model '{repo_id}' (HTTP {status}) with the token given in HF_TOKEN",
            hint="check the token is valid and that its account accepted the model's conditions on its Hub page",
        )
    return NetworkError(
        f"model '{repo_id}' is gated or private (HTTP {status}); set HF_TOKEN to an access token",
        hint="accept the model's conditions on its Hub page, then export HF_TOKEN=<your token>",
    )


# The HTTP clients huggingface_hub has used: requests (0.x), httpx (1.x), httpx2 (2.x). Their connection
# errors share no base class; a client not listed yet is recognised by the module its errors come from.
_HTTP_CLIENTS = (("requests", "RequestException"), ("httpx", "RequestError"), ("httpx2", "RequestError"))
_HTTP_CLIENT_MODULES = ("requests", "urllib3", "httpx", "httpx2", "httpcore", "httpcore2", "h11")


def _is_transport_error(exc: BaseException) -> bool:
    """Whether `exc` is an HTTP client's connection failure (refused, reset, timed out, cut off)."""
    for module_name, class_name in _HTTP_CLIENTS:
        module = sys.modules.get(module_name)
        kind = getattr(module, class_name, None) if module is not None else None
        if isinstance(kind, type) and isinstance(exc, kind):
            return True
    return any(klass.__module__.split(".")[0] in _HTTP_CLIENT_MODULES for klass in type(exc).__mro__)


@contextmanager
def _progress_bars(enabled: bool) -> Iterator[None]:
    from huggingface_hub.utils import (
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
    )

    if enabled or are_progress_bars_disabled():
        yield
        return
    disable_progress_bars()
    try:
        yield
    finally:
        enable_progress_bars()


# -- the cache layout -----------------------------------------------------------------------------


def _repo_folder_name(repo_id: str) -> str:
    return "models--" + repo_folder(repo_id)


def _files_under(snapshot: Path) -> Iterable[str]:
    """'/'-separated paths of the files in a snapshot whose blob is really there."""
    for directory, _, filenames in os.walk(snapshot):
        for filename in filenames:
            path = Path(directory, filename)
            if path.is_file():  # follows the symlink: a dangling link to a missing blob does not count
                yield path.relative_to(snapshot).as_posix()


# -- small helpers --------------------------------------------------------------------------------


def _is_valid_repo_name(name: str) -> bool:
    return (
        len(name) <= MAX_REPO_NAME_LENGTH
        and _REPO_NAME.fullmatch(name) is not None
        and name[0] not in ".-"
        and name[-1] not in ".-"
        and ".." not in name
        and "--" not in name  # would make the cache folder name models--a--b ambiguous
    )
