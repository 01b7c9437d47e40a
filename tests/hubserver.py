"""A loopback stand-in for the Hugging Face Hub, good enough for the real huggingface_hub download code.

The tests start it themselves (the `hub` fixture) and point `HF_ENDPOINT` at it. It serves model repos
from local directories, speaking the subset of the Hub protocol that huggingface_hub 0.36 and 1.x use
to download (model info, tree listing, HEAD/GET `/resolve/`, CDN redirects for LFS files, Range
requests, `X-Error-Code` errors, gated repos), records every request so a test can assert that
offline mode makes none, and can cut a download off mid-body.

Two host names reach the same socket: the Hub is `127.0.0.1` and the "CDN" that LFS files redirect to
is `localhost`. huggingface_hub decides "this redirect leaves the Hub, drop the Authorization header
and do not follow it on HEAD" by comparing host names (0.36: netloc, 1.x: hostname), so the CDN must
look like another host for the library to take the same code path as against huggingface.co.

Env vs. import-time constants: huggingface_hub copies HF_ENDPOINT, HF_HUB_CACHE, HF_HUB_OFFLINE and the
token path into `huggingface_hub.constants` when it is imported, so setting the environment in a test is
not enough for code that relies on the library's defaults. squeezecli.hub reads the environment at call
time and passes `endpoint=` / `cache_dir=` / `token=` explicitly, so for our code the env is the source
of truth; the fixture also patches the library constants so that any other caller (e.g. transformers'
`from_pretrained` in a parity test) sees the same server and cache and never a real token on disk.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

HUB_HOST = "127.0.0.1"
CDN_HOST = "localhost"

# Files the Hub's default .gitattributes sends to LFS; those are served through a CDN redirect.
LFS_SUFFIXES = (".safetensors", ".bin", ".onnx", ".h5", ".msgpack", ".pt", ".pth", ".ckpt", ".ot", ".model", ".gguf")
LFS_MIN_SIZE = 10 * 1024 * 1024
LFS_POINTER_SIZE = 134

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


@dataclass(frozen=True)
class StoredFile:
    path: str  # repo-relative, '/'-separated
    data: bytes
    git_oid: str  # git blob sha1: the ETag of a regular file
    sha256: str  # the ETag of an LFS file (X-Linked-Etag) and its CDN address

    @property
    def is_lfs(self) -> bool:
        return self.path.endswith(LFS_SUFFIXES) or len(self.data) >= LFS_MIN_SIZE

    @classmethod
    def from_bytes(cls, path: str, data: bytes) -> StoredFile:
        git_oid = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        return cls(path, data, git_oid, hashlib.sha256(data).hexdigest())


@dataclass
class Repo:
    repo_id: str
    gated: bool
    token: str | None
    commits: dict[str, dict[str, StoredFile]] = field(default_factory=dict)  # sha -> path -> file
    refs: dict[str, str] = field(default_factory=dict)  # branch or tag -> sha

    def resolve(self, revision: str) -> str | None:
        if revision in self.commits:
            return revision
        return self.refs.get(revision)


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # as sent, percent-encoded, with the query
    kind: str  # "api", "tree", "resolve", "cdn" or "unknown"
    filename: str | None  # repo-relative file for "resolve" and "cdn"
    headers: dict[str, str]  # names lower-cased

    @property
    def downloads_body(self) -> bool:
        return self.method == "GET" and self.kind in ("resolve", "cdn")


class HubServer:
    """`add_repo` to publish, `url` to point HF_ENDPOINT at, `requests` to see what the client did."""

    def __init__(self) -> None:
        self._repos: dict[str, Repo] = {}
        self._faults: dict[str, int] = {}  # filename -> absolute byte offset at which bodies are cut
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._open_connections: set[socket.socket] = set()
        self._httpd: _ThreadingServer | None = None
        self._thread: threading.Thread | None = None
        self._port = 0

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> HubServer:
        self._httpd = _ThreadingServer((HUB_HOST, 0), _Handler, self)
        self._port = self._httpd.server_address[1]
        # A short poll interval keeps stop() (and so every test's teardown) from waiting half a second.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, name="hubserver", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and cut every open connection, as a crashed server would."""
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        with self._lock:
            connections, self._open_connections = list(self._open_connections), set()
        for connection in connections:
            _hang_up(connection)
        assert self._thread is not None
        self._thread.join(timeout=5)
        self._httpd = None

    @property
    def port(self) -> int:
        """The port it listens (or, once stopped, listened) on."""
        return self._port

    @property
    def url(self) -> str:
        return f"http://{HUB_HOST}:{self.port}"

    @property
    def cdn_url(self) -> str:
        return f"http://{CDN_HOST}:{self.port}"

    # -- content ---------------------------------------------------------------------------------

    def add_repo(
        self,
        repo_id: str,
        directory: str | Path,
        revision_sha: str | None = None,
        branch: str | None = "main",
        gated: bool = False,
        token: str | None = None,
    ) -> str:
        """Publish the files under `directory` as a new commit of `repo_id`; return the commit sha.

        Calling it again for the same repo adds another commit (the files are read now, so later
        changes to the directory do not rewrite history) and moves `branch` to it. `gated`/`token`
        apply to the whole repo: the last call wins.
        """
        root = Path(directory)
        files = {
            p.relative_to(root).as_posix(): StoredFile.from_bytes(p.relative_to(root).as_posix(), p.read_bytes())
            for p in sorted(root.rglob("*"))
            if p.is_file()
        }
        with self._lock:
            repo = self._repos.setdefault(repo_id, Repo(repo_id, gated, token))
            repo.gated, repo.token = gated, token
            sha = revision_sha or _commit_sha(repo_id, len(repo.commits), files)
            if not re.fullmatch(r"[0-9a-f]{40}", sha):
                raise ValueError(f"commit sha must be 40 lowercase hex digits, got {sha!r}")
            repo.commits[sha] = files
            if branch is not None:
                repo.refs[branch] = sha
        return sha

    def add_ref(self, repo_id: str, name: str, sha: str) -> None:
        """Point a branch or tag `name` at an existing commit."""
        with self._lock:
            repo = self._repos[repo_id]
            if sha not in repo.commits:
                raise ValueError(f"{repo_id} has no commit {sha}")
            repo.refs[name] = sha

    # -- fault injection -------------------------------------------------------------------------

    def fail_after_bytes(self, filename: str, n: int) -> None:
        """Every GET of `filename` (any repo) sends its full headers, then hangs up at byte offset `n`.

        The offset is absolute, so a client that resumes with a Range request past `n` gets nothing
        and is cut off again: the server stays "dead" for that file until `clear_faults()`.
        """
        with self._lock:
            self._faults[filename] = n

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    # -- observation -----------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def downloaded_files(self) -> list[str]:
        """Repo-relative names of the files whose content was requested (GET), in order."""
        return [r.filename for r in self.requests if r.downloads_body and r.filename is not None]

    # -- request handling (called from the handler threads) ----------------------------------------

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _track(self, connection: socket.socket, is_open: bool) -> None:
        with self._lock:
            if is_open:
                self._open_connections.add(connection)
            else:
                self._open_connections.discard(connection)

    def _fault_offset(self, filename: str) -> int | None:
        with self._lock:
            return self._faults.get(filename)

    def _repo(self, repo_id: str) -> Repo | None:
        with self._lock:
            return self._repos.get(repo_id)

    def _blob(self, sha256: str) -> StoredFile | None:
        with self._lock:
            for repo in self._repos.values():
                for files in repo.commits.values():
                    for stored in files.values():
                        if stored.sha256 == sha256:
                            return stored
        return None


class _ThreadingServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], hub: HubServer) -> None:
        self.hub = hub
        super().__init__(address, handler)


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1 keep-alive like the real Hub, so the client's connection pooling is exercised too.
    protocol_version = "HTTP/1.1"
    server: _ThreadingServer

    def setup(self) -> None:
        super().setup()
        self.server.hub._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass  # the connection was cut on purpose (fault injection or stop())
        self.server.hub._track(self.connection, False)

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep pytest output clean

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    # -- routing ---------------------------------------------------------------------------------

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        kind, filename, answer = self._route(method, [unquote(s) for s in url.path.split("/")[1:]], parse_qs(url.query))
        # Recorded before answering: once the client has its response, a test may already be counting.
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.server.hub._record(RecordedRequest(method, self.path, kind, filename, headers))
        answer()

    def _route(
        self, method: str, segments: list[str], query: dict[str, list[str]]
    ) -> tuple[str, str | None, Callable[[], None]]:
        """(kind, repo-relative filename, the call that answers) for a request path."""
        if segments[:2] == ["api", "models"]:
            rest = segments[2:]
            # /api/models/{repo_id}[/revision/{rev} | /tree/{rev}[/{path}]], repo_id is "name" or "owner/name"
            split = next((i for i in (1, 2) if len(rest) > i and rest[i] in ("revision", "tree")), len(rest))
            kind = "tree" if rest[split:split + 1] == ["tree"] else "api"
            return kind, None, lambda: self._api_models(method, "/".join(rest[:split]), rest[split:], query)
        if segments[:1] == ["cdn"] and len(segments) >= 3:
            filename = "/".join(segments[2:])
            return "cdn", filename, lambda: self._cdn(method, segments[1], filename)
        if "resolve" in segments[1:3]:
            # /{repo_id}/resolve/{revision}/{filename}
            at = segments.index("resolve", 1)
            repo_id, revision = "/".join(segments[:at]), "/".join(segments[at + 1 : at + 2])
            filename = "/".join(segments[at + 2 :])
            return "resolve", filename, lambda: self._resolve(method, repo_id, revision, filename)
        if segments == [""]:  # the front page, which huggingface.co answers with 200 (`squeeze doctor` asks)
            return "front", None, lambda: self._json(method, {})
        return "unknown", None, lambda: self._error(method, 404, None, "Not Found")

    def _api_models(self, method: str, repo_id: str, action_args: list[str], query: dict[str, list[str]]) -> None:
        repo = self._known_repo(method, repo_id)
        if repo is None:
            return
        action, args = (action_args[0], action_args[1:]) if action_args else ("revision", ["main"])
        sha = self._known_revision(method, repo, args[0] if args else "main")
        if sha is None:
            return
        if action == "tree":
            self._json(method, _tree(repo.commits[sha], "/".join(args[1:]), _is_true(query, "recursive")))
            return
        with_blobs = _is_true(query, "blobs") or _is_true(query, "files_metadata")
        self._json(method, _model_info(repo, sha, with_blobs))

    def _resolve(self, method: str, repo_id: str, revision: str, filename: str) -> None:
        repo = self._known_repo(method, repo_id)
        if repo is None:
            return
        if repo.gated and not self._authorized(repo):
            status = 401 if self.headers.get("Authorization") is None else 403
            message = f"Access to model {repo_id} is restricted. You must have access to it and be authenticated."
            self._error(method, status, "GatedRepo", message)
            return
        sha = self._known_revision(method, repo, revision)
        if sha is None:
            return
        stored = repo.commits[sha].get(filename)
        if stored is None:
            message = f'{filename} does not exist on "{revision}"'
            self._error(method, 404, "EntryNotFound", message, {"X-Repo-Commit": sha})
            return
        if stored.is_lfs:
            location = f"{self.server.hub.cdn_url}/cdn/{stored.sha256}/{quote(filename)}"
            self._redirect(method, location, {
                "X-Repo-Commit": sha,
                "X-Linked-Etag": f'"{stored.sha256}"',
                "X-Linked-Size": str(len(stored.data)),
                "ETag": f'"{stored.git_oid}"',
            })
            return
        self._body(method, stored, {"X-Repo-Commit": sha, "ETag": f'"{stored.git_oid}"'})

    def _cdn(self, method: str, sha256: str, filename: str) -> None:
        stored = self.server.hub._blob(sha256)
        if stored is None:
            self._error(method, 404, None, "NoSuchKey")
            return
        basename = filename.rsplit("/", 1)[-1]
        disposition = f"inline; filename*=UTF-8''{quote(basename)}; filename=\"{basename}\";"
        self._body(method, stored, {"ETag": f'"{sha256}"', "Content-Disposition": disposition}, fault_name=filename)

    # -- checks ----------------------------------------------------------------------------------

    def _known_repo(self, method: str, repo_id: str) -> Repo | None:
        repo = self.server.hub._repo(repo_id)
        if repo is None:
            # The Hub answers 401 to anonymous callers (so private repos are not revealed), 404 otherwise.
            status = 401 if self.headers.get("Authorization") is None else 404
            self._error(method, status, "RepoNotFound", "Repository not found")
        return repo

    def _known_revision(self, method: str, repo: Repo, revision: str) -> str | None:
        sha = repo.resolve(revision)
        if sha is None:
            self._error(method, 404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return sha

    def _authorized(self, repo: Repo) -> bool:
        return repo.token is not None and self.headers.get("Authorization") == f"Bearer {repo.token}"

    # -- responses -------------------------------------------------------------------------------

    def _json(self, method: str, payload: object) -> None:
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if method == "GET":
            self.wfile.write(data)

    def _error(
        self, method: str, status: int, code: str | None, message: str, extra: dict[str, str] | None = None
    ) -> None:
        data = json.dumps({"error": message}).encode()
        self.send_response(status)
        if code is not None:
            self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if method == "GET":
            self.wfile.write(data)

    def _redirect(self, method: str, location: str, headers: dict[str, str]) -> None:
        data = f"Found. Redirecting to {location}".encode()
        self.send_response(302)
        self.send_header("Location", location)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if method == "GET":
            self.wfile.write(data)

    def _body(self, method: str, stored: StoredFile, headers: dict[str, str], fault_name: str | None = None) -> None:
        size = len(stored.data)
        span = _parse_range(self.headers.get("Range"), size)
        if span is False:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start, end = span if span is not None else (0, size)
        self.send_response(206 if span is not None else 200)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Accept-Ranges", "bytes")
        if span is not None:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        self.send_header("Content-Length", str(end - start))
        self.end_headers()
        if method != "GET":
            return
        cut_at = self.server.hub._fault_offset(fault_name or stored.path)
        if cut_at is not None and cut_at < end:
            self.wfile.write(stored.data[start : max(start, cut_at)])
            self.wfile.flush()
            self.close_connection = True
            _hang_up(self.connection)
            return
        self.wfile.write(stored.data[start:end])


def _hang_up(connection: socket.socket) -> None:
    try:
        connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed by the peer


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None | bool:
    """(start, end-exclusive) for a satisfiable single range, None without one, False if unsatisfiable."""
    if header is None:
        return None
    match = _RANGE.match(header.strip())
    if match is None or match.groups() == ("", ""):
        return None  # not a form we support: serve the whole file, as servers may
    first, last = match.groups()
    if first == "":  # suffix range: the last N bytes
        return (max(0, size - int(last)), size)
    start = int(first)
    end = min(size, int(last) + 1) if last else size
    if start >= size or start >= end:
        return False
    return (start, end)


def _is_true(query: dict[str, list[str]], name: str) -> bool:
    return any(v.lower() in ("1", "true") for v in query.get(name, []))


def _commit_sha(repo_id: str, index: int, files: dict[str, StoredFile]) -> str:
    digest = hashlib.sha1(f"{repo_id}\0{index}".encode())
    for path, stored in files.items():
        digest.update(f"\0{path}\0{stored.git_oid}".encode())
    return digest.hexdigest()


def _model_info(repo: Repo, sha: str, with_blobs: bool) -> dict:
    siblings = []
    for stored in repo.commits[sha].values():
        sibling: dict = {"rfilename": stored.path}
        if with_blobs:
            sibling.update(blobId=stored.git_oid, size=len(stored.data))
            if stored.is_lfs:
                sibling["lfs"] = {"sha256": stored.sha256, "size": len(stored.data), "pointerSize": LFS_POINTER_SIZE}
        siblings.append(sibling)
    owner = repo.repo_id.split("/")[0] if "/" in repo.repo_id else None
    return {
        "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24],
        "id": repo.repo_id,
        "modelId": repo.repo_id,
        "author": owner,
        "sha": sha,
        "lastModified": "2024-01-01T00:00:00.000Z",
        "createdAt": "2024-01-01T00:00:00.000Z",
        "private": False,
        "gated": "manual" if repo.gated else False,
        "disabled": False,
        "downloads": 0,
        "likes": 0,
        "library_name": "transformers",
        "tags": ["transformers"],
        "siblings": siblings,
    }


def _tree(files: dict[str, StoredFile], under: str, recursive: bool) -> list[dict]:
    prefix = f"{under.strip('/')}/" if under.strip("/") else ""
    entries: dict[str, dict] = {}
    for stored in files.values():
        if not stored.path.startswith(prefix):
            continue
        parts = stored.path[len(prefix) :].split("/")
        for depth in range(1, len(parts)):  # the directories between `under` and the file
            directory = prefix + "/".join(parts[:depth])
            if depth == 1 or recursive:
                oid = hashlib.sha1(directory.encode()).hexdigest()
                entries.setdefault(directory, {"type": "directory", "oid": oid, "size": 0, "path": directory})
        if len(parts) == 1 or recursive:
            entry: dict = {"type": "file", "oid": stored.git_oid, "size": len(stored.data), "path": stored.path}
            if stored.is_lfs:
                entry["lfs"] = {"oid": stored.sha256, "size": len(stored.data), "pointerSize": LFS_POINTER_SIZE}
            entries[stored.path] = entry
    return [entries[path] for path in sorted(entries)]
