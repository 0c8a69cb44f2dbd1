"""A small Hugging Face Hub on 127.0.0.1, serving repos the tests generate, for the real client.

It speaks the part of the Hub's protocol that `huggingface_hub` uses to download:

- `GET /api/models/{id}/revision/{rev}` -> `{"id", "sha"}`
- `GET /api/models/{id}/tree/{rev}?recursive=true` -> entries with `type, path, size, oid` (+ `lfs`)
- `HEAD`/`GET /{id}/resolve/{rev}/{path}` with `X-Repo-Commit`, `ETag`, `X-Linked-Etag`,
  `X-Linked-Size`, `Content-Length` and `Range`.

With Xet on (`LocalHub(root, xet=True)`, or `enable_xet(repo_id)` for one repo), LFS files go the
way the real Hub sends them, through `hf_xet`:

- `HEAD /{id}/resolve/…` adds `X-Xet-Hash` and `Link: <…/xet-read-token/{rev}>; rel="xet-auth"`;
- `GET /api/models/{id}/xet-read-token/{rev}` -> `X-Xet-Cas-Url`, `X-Xet-Access-Token`,
  `X-Xet-Token-Expiration` (and the same as JSON);
- the CAS, on the same port: `GET /v2/reconstructions/{file hash}` (and `/v1/…`, the older shape),
  honouring `Range`, and `GET /xorbs/{xorb hash}` with `Range`, both requiring the access token.
  Xorbs hold uncompressed chunks (`tests.local_xet`).

Every request is counted (kinds `revision`, `tree`, `resolve`, `xet-token`, `reconstruction`,
`xorb`), and faults (status bursts, throttling, corrupt bodies, stalled bodies, API requests held unanswered) can be
injected on either path, so
tests assert what went over the wire. Bodies are sent with `sendfile` from content-addressed blobs
(and xorbs) on disk: it is also the server the benchmark measures `curl` and bare
`huggingface_hub` against.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import select
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from urllib.parse import parse_qs, unquote, urlsplit

from tests.local_xet import CHUNKS_PER_XORB, XetFile, Xorb, build_xet_file, reconstruction

LFS_SUFFIXES = (".safetensors", ".bin", ".pt")


def random_bytes(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def write_random_file(path: Path, size: int, seed: int, chunk: int = 8 << 20) -> Path:
    """A large pseudo-random file written in chunks, so it never sits whole in memory."""
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        left = size
        while left:
            n = min(chunk, left)
            f.write(rng.randbytes(n))
            left -= n
    return path


def default_lfs(path: str, size: int) -> bool:
    return path.endswith(LFS_SUFFIXES) or size > 10 << 20


@dataclass(frozen=True)
class Blob:
    path: str
    size: int
    sha1: str  # git blob id
    sha256: str
    lfs: bool
    file: Path


@dataclass
class Fault:
    repo_id: str
    status: int
    times: int | None
    kind: str | None
    method: str | None
    path: str | None
    retry_after: float | None
    gated: bool
    error_code: str | None


@dataclass
class Corruption:
    repo_id: str
    path: str
    times: int | None
    truncate: bool = False


@dataclass
class Stall:
    repo_id: str
    path: str
    at: int  # the body goes silent at this byte of the file
    times: int | None


@dataclass
class Hold:
    repo_id: str
    kind: str  # an API request kind: `revision`, `tree`, `xet-read-token`
    revision: str | None
    times: int | None


@dataclass(frozen=True)
class Request:
    method: str
    kind: str
    repo_id: str
    path: str
    status: int  # 0: held, never answered (see LocalHub.hold)
    offset: int | None = None  # where a file body or reconstruction starts (`Range`), for file transfers


@dataclass
class Repo:
    commits: dict[str, dict[str, Blob]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)


_API = re.compile(r"^/api/models/([^/]+/[^/]+)/(revision|tree|xet-read-token)/(.+)$")
_RESOLVE = re.compile(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")
_RECONSTRUCTION = re.compile(r"^/v([12])/reconstructions/([0-9a-f]{64})$")
_XORB = re.compile(r"^/xorbs/([0-9a-f]{64})$")
XET_TOKEN_SECONDS = 3600


class LocalHub:
    """A threaded HTTP server on 127.0.0.1; use as a context manager."""

    def __init__(self, root: Path, *, xet: bool = False, chunks_per_xorb: int = CHUNKS_PER_XORB) -> None:
        self.root = root
        self.blobs = root / "blobs"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.repos: dict[str, Repo] = {}
        self.xet_token = f"xet-{random.Random(str(root)).getrandbits(64):016x}"
        self.xorb_signature = hashlib.sha256(self.xet_token.encode()).hexdigest()[:32]
        self._xet_everywhere = xet
        self._xet_repos: set[str] = set()
        self._chunks_per_xorb = chunks_per_xorb
        self._xet_files: dict[str, XetFile] = {}  # by the blob's sha256
        self._xet_by_hash: dict[str, XetFile] = {}  # by the Xet file hash
        self._xorbs: dict[str, tuple[XetFile, Xorb]] = {}
        self._owners: dict[str, list[tuple[str, str]]] = {}  # sha256 -> (repo_id, path) that hold it
        self.requests: list[Request] = []
        self.authorizations: list[str | None] = []
        self.bytes_sent = 0
        self._faults: list[Fault] = []
        self._corruptions: list[Corruption] = []
        self._stalls: list[Stall] = []
        self._holds: list[Hold] = []
        self._stopping = threading.Event()
        self._tree_overrides: dict[tuple[str, str], dict[str, object]] = {}
        self._rate: int | None = None
        self._ignore_ranges = False
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> LocalHub:
        self._stopping.clear()
        handler = type("Handler", (_Handler,), {"hub": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        # shutdown() waits for serve_forever to look up; at the default 0.5 s that is most of a test's teardown.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._rate = None
            self._stopping.set()  # stalled bodies let go, so that server_close can join their threads
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> LocalHub:
        return self.start()

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the hub first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- content ---------------------------------------------------------------------------
    def commit(
        self,
        repo_id: str,
        files: Mapping[str, bytes | Path],
        *,
        branch: str = "main",
        lfs: Callable[[str, int], bool] = default_lfs,
    ) -> str:
        """Make a commit holding exactly `files`, move `branch` to it, return its sha."""
        repo = self.repos.setdefault(repo_id, Repo())
        parent = repo.refs.get(branch, "")
        tree: dict[str, Blob] = {}
        for path, content in sorted(files.items()):
            tree[path] = self._store(path, content, lfs)
        digest = hashlib.sha1(usedforsecurity=False)
        digest.update(f"{repo_id}\0{parent}\0{len(repo.commits)}\0".encode())
        for path, blob in tree.items():
            digest.update(f"{path}\0{blob.sha1}\0".encode())
        sha = digest.hexdigest()
        with self._lock:
            for path, blob in tree.items():
                owners = self._owners.setdefault(blob.sha256, [])
                if (repo_id, path) not in owners:
                    owners.append((repo_id, path))
        if self.uses_xet(repo_id):
            self._index_xet(tree.values())
        with self._lock:
            repo.commits[sha] = tree
            repo.refs[branch] = sha
        return sha

    # -- Xet -------------------------------------------------------------------------------
    def enable_xet(self, repo_id: str | None = None) -> None:
        """Serve LFS files through Xet: every repo's (None), or one repo's, those committed already included."""
        if repo_id is None:
            self._xet_everywhere = True
        else:
            self._xet_repos.add(repo_id)
        for name, repo in self.repos.items():
            if repo_id in (None, name):
                for tree in repo.commits.values():
                    self._index_xet(tree.values())

    def disable_xet(self) -> None:
        """Back to plain HTTP for every repo; the xorbs stay on disk for the next `enable_xet`."""
        self._xet_everywhere = False
        self._xet_repos.clear()

    def uses_xet(self, repo_id: str) -> bool:
        return self._xet_everywhere or repo_id in self._xet_repos

    def xet_file(self, blob: Blob) -> XetFile | None:
        """How the CAS holds a blob, when it is an LFS file of a Xet repo."""
        with self._lock:
            return self._xet_files.get(blob.sha256) if blob.lfs else None

    def _index_xet(self, blobs: Iterable[Blob]) -> None:
        for blob in blobs:
            if not blob.lfs or blob.size == 0 or blob.sha256 in self._xet_files:
                continue
            built = build_xet_file(blob.file, blob.sha256, blob.size, self.blobs / "xorbs", self._chunks_per_xorb)
            with self._lock:
                self._xet_files[blob.sha256] = built
                self._xet_by_hash[built.hash] = built
                for xorb in built.xorbs:
                    self._xorbs[xorb.hash] = (built, xorb)

    def tag(self, repo_id: str, name: str, sha: str) -> None:
        self.repos[repo_id].refs[name] = sha

    def _store(self, path: str, content: bytes | Path, lfs: Callable[[str, int], bool]) -> Blob:
        sha1 = hashlib.sha1(usedforsecurity=False)
        sha256 = hashlib.sha256()
        if isinstance(content, Path):
            size = content.stat().st_size
            sha1.update(b"blob %d\0" % size)
            with content.open("rb") as f:
                while chunk := f.read(8 << 20):
                    sha1.update(chunk)
                    sha256.update(chunk)
        else:
            size = len(content)
            sha1.update(b"blob %d\0" % size)
            sha1.update(content)
            sha256.update(content)
        blob_file = self.blobs / sha256.hexdigest()
        if not blob_file.exists():
            if isinstance(content, Path):
                shutil.copyfile(content, blob_file)
            else:
                blob_file.write_bytes(content)
        return Blob(path, size, sha1.hexdigest(), sha256.hexdigest(), lfs(path, size), blob_file)

    # -- accounting ------------------------------------------------------------------------
    def count(self, *, kind: str | None = None, repo_id: str | None = None, method: str | None = None) -> int:
        with self._lock:
            return sum(
                1
                for r in self.requests
                if (kind is None or r.kind == kind)
                and (repo_id is None or r.repo_id == repo_id)
                and (method is None or r.method == method)
            )

    def transfers(self, repo_id: str, path: str) -> int:
        """How many times a transfer of this file started from its first byte, on either path.

        Plain HTTP: a GET of the file without a `Range` past 0 (a resume does not count). Xet: a
        reconstruction asked from byte 0 (hf_xet asks once per file, then fetches xorbs).
        """
        with self._lock:
            return sum(
                1
                for r in self.requests
                if r.repo_id == repo_id
                and r.path == path
                and r.method == "GET"
                and r.kind in ("resolve", "reconstruction")
                and r.status in (200, 206)
                and not r.offset
            )

    def reset_counts(self) -> None:
        with self._lock:
            self.requests.clear()
            self.authorizations.clear()
            self.bytes_sent = 0

    # -- faults ----------------------------------------------------------------------------
    def fail(
        self,
        repo_id: str,
        status: int,
        *,
        times: int | None = 1,
        kind: str | None = None,
        method: str | None = None,
        path: str | None = None,
        retry_after: float | None = 0,
        gated: bool = False,
        error_code: str | None = None,
    ) -> None:
        """The next `times` matching requests (None: all of them) answer `status`."""
        with self._lock:
            self._faults.append(Fault(repo_id, status, times, kind, method, path, retry_after, gated, error_code))

    def override_tree(self, repo_id: str, path: str, **fields: object) -> None:
        """Make the tree listing lie about a file (its size, say) while the bytes served stay the same."""
        with self._lock:
            self._tree_overrides[(repo_id, path)] = fields

    def corrupt(self, repo_id: str, path: str, *, times: int | None = 1, truncate: bool = False) -> None:
        """Serve a file's body with one byte flipped (same size), or cut short.

        On the Xet path the byte flipped is in the data of a chunk (headers stay valid, as a bad
        disk or a bad cache would leave them), in the next xorb range served for that file.
        """
        with self._lock:
            self._corruptions.append(Corruption(repo_id, path, times, truncate))

    def stall(self, repo_id: str, path: str, *, at: int, times: int | None = None) -> None:
        """Send a file's headers and its body up to byte `at`, then nothing, keeping the connection open.

        A resume from `at` on gets its headers and no byte at all. The connection stays open until the
        client gives up (closes it) or the hub stops: what a stuck proxy or a dead peer looks like.
        On the Xet path the xorbs of that file go silent after `at` bytes of each range.
        """
        with self._lock:
            self._stalls.append(Stall(repo_id, path, at, times))

    def hold(
        self, repo_id: str, *, kind: str = "revision", revision: str | None = None, times: int | None = None
    ) -> None:
        """Take the next `times` API requests of this kind for the repo (None: all of them) and never answer.

        `revision` narrows it to requests for that revision (a branch, a tag or a commit, as asked).

        The request is counted (status 0) when it arrives; its connection stays open until the client
        gives up or the hub stops: a Hub that accepted the request and is slow to answer it.
        """
        with self._lock:
            self._holds.append(Hold(repo_id, kind, revision, times))

    def ignore_ranges(self, ignore: bool = True) -> None:
        """Answer every `Range` request with the whole file and 200, as some CDNs do."""
        self._ignore_ranges = ignore

    def throttle(self, bytes_per_second: int | None) -> None:
        """Send file bodies and xorbs at this rate (None: as fast as sendfile goes); a stall is a low rate."""
        self._rate = bytes_per_second

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._corruptions.clear()
            self._stalls.clear()
            self._holds.clear()
            self._tree_overrides.clear()
        self._ignore_ranges = False
        self._rate = None

    def _take_fault(self, method: str, kind: str, repo_id: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if (
                    fault.repo_id == repo_id
                    and (fault.kind is None or fault.kind == kind)
                    and (fault.method is None or fault.method == method)
                    and (fault.path is None or fault.path == path)
                    and (fault.times is None or fault.times > 0)
                ):
                    if fault.times is not None:
                        fault.times -= 1
                    return fault
        return None

    def _take_corruption(self, owners: Iterable[tuple[str, str]]) -> Corruption | None:
        wanted = set(owners)
        with self._lock:
            for c in self._corruptions:
                if (c.repo_id, c.path) in wanted and (c.times is None or c.times > 0):
                    if c.times is not None:
                        c.times -= 1
                    return c
        return None

    def _take_stall(self, owners: Iterable[tuple[str, str]]) -> Stall | None:
        wanted = set(owners)
        with self._lock:
            for s in self._stalls:
                if (s.repo_id, s.path) in wanted and (s.times is None or s.times > 0):
                    if s.times is not None:
                        s.times -= 1
                    return s
        return None

    def _take_hold(self, kind: str, repo_id: str, revision: str) -> Hold | None:
        with self._lock:
            for h in self._holds:
                if (
                    h.repo_id == repo_id
                    and h.kind == kind
                    and h.revision in (None, revision)
                    and (h.times is None or h.times > 0)
                ):
                    if h.times is not None:
                        h.times -= 1
                    return h
        return None

    def _resolve_ref(self, repo_id: str, rev: str) -> tuple[str, dict[str, Blob]] | None:
        repo = self.repos.get(repo_id)
        if repo is None:
            return None
        sha = repo.refs.get(rev, rev)
        tree = repo.commits.get(sha)
        return (sha, tree) if tree is not None else None


class _Handler(BaseHTTPRequestHandler):
    hub: LocalHub
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # small answers would otherwise wait 40 ms for a delayed ACK

    def log_message(self, format: str, *args: object) -> None:
        return None

    def do_GET(self) -> None:
        self._route("GET")

    def do_HEAD(self) -> None:
        self._route("HEAD")

    def do_POST(self) -> None:
        # hf_xet may report transfer telemetry to the CAS; take it, count it, keep nothing.
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        path = urlsplit(self.path).path
        self._record("POST", "telemetry" if path == "/v1/telemetry" else "other", "", path, 200)
        self._json(200, {}, "POST")

    def _route(self, method: str) -> None:
        url = urlsplit(self.path)
        path = unquote(url.path)
        if match := _API.match(path):
            repo_id, kind, rest = match.groups()
            self._api(method, kind, repo_id, rest, parse_qs(url.query))
        elif match := _RESOLVE.match(path):
            repo_id, rev, file_path = match.groups()
            self._resolve(method, repo_id, rev, file_path)
        elif match := _RECONSTRUCTION.match(path):
            self._reconstruction(method, int(match.group(1)), match.group(2))
        elif match := _XORB.match(path):
            self._xorb(method, match.group(1), parse_qs(url.query).get("sig", [""])[0])
        else:
            self._record(method, "other", "", path, 404)
            self._json(404, {"error": "not found"}, method)

    def _record(self, method: str, kind: str, repo_id: str, path: str, status: int, offset: int | None = None) -> None:
        with self.hub._lock:
            self.hub.requests.append(Request(method, kind, repo_id, path, status, offset))
            self.hub.authorizations.append(self.headers.get("Authorization"))

    def _fault(self, method: str, kind: str, repo_id: str, path: str) -> bool:
        fault = self.hub._take_fault(method, kind, repo_id, path)
        if fault is None:
            return False
        self._record(method, kind, repo_id, path, fault.status)
        headers = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = str(int(fault.retry_after))
        if fault.error_code:
            headers["X-Error-Code"] = fault.error_code
        if fault.gated:
            headers["X-Error-Code"] = "GatedRepo"
            headers["X-Error-Message"] = "Access to this model is restricted."
        self._json(fault.status, {"error": f"injected {fault.status}"}, method, headers)
        return True

    def _api(self, method: str, kind: str, repo_id: str, rest: str, query: dict[str, list[str]]) -> None:
        if self.hub._take_hold(kind, repo_id, rest.partition("/")[0]) is not None:
            self._record(method, kind, repo_id, rest, 0)
            self.close_connection = True
            self._keep_open()
            return
        if self._fault(method, kind, repo_id, rest):
            return
        rev, _, sub = rest.partition("/")
        if repo_id not in self.hub.repos:
            self._record(method, kind, repo_id, rest, 404)
            self._json(404, {"error": "Repository not found"}, method, {"X-Error-Code": "RepoNotFound"})
            return
        resolved = self.hub._resolve_ref(repo_id, rev)
        if resolved is None:
            self._record(method, kind, repo_id, rest, 404)
            self._json(404, {"error": f"Invalid rev id: {rev}"}, method, {"X-Error-Code": "RevisionNotFound"})
            return
        sha, tree = resolved
        self._record(method, kind, repo_id, rest, 200)
        if kind == "xet-read-token":
            self._xet_token(method, repo_id)
            return
        if kind == "revision":
            siblings = [{"rfilename": p} for p in tree]
            self._json(200, {"id": repo_id, "modelId": repo_id, "sha": sha, "siblings": siblings}, method)
            return
        recursive = query.get("recursive", ["false"])[0].lower() == "true"
        entries = _tree_entries(tree, sub.strip("/"), recursive)
        if self.hub.uses_xet(repo_id):
            for entry in entries:
                blob = tree.get(str(entry["path"]))
                xet = self.hub.xet_file(blob) if blob is not None else None
                if xet is not None:
                    entry["xetHash"] = xet.hash
        with self.hub._lock:
            for entry in entries:
                entry.update(self.hub._tree_overrides.get((repo_id, str(entry["path"])), {}))
        self._json(200, entries, method)

    def _resolve(self, method: str, repo_id: str, rev: str, file_path: str) -> None:
        if self._fault(method, "resolve", repo_id, file_path):
            return
        resolved = self.hub._resolve_ref(repo_id, rev) if repo_id in self.hub.repos else None
        blob = resolved[1].get(file_path) if resolved else None
        if resolved is None or blob is None:
            self._record(method, "resolve", repo_id, file_path, 404)
            code = "RepoNotFound" if repo_id not in self.hub.repos else "EntryNotFound"
            self._json(404, {"error": "not found"}, method, {"X-Error-Code": code})
            return
        sha = resolved[0]
        start, end = 0, blob.size - 1
        status = 200
        rng = None if self.hub._ignore_ranges else self.headers.get("Range")
        if rng and (m := re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip())):
            start = int(m.group(1))
            end = int(m.group(2)) if m.group(2) else blob.size - 1
            status = 206
        length = max(0, end - start + 1)
        self._record(method, "resolve", repo_id, file_path, status, start)
        self.send_response(status)
        self.send_header("X-Repo-Commit", sha)
        self.send_header("ETag", f'"{blob.sha1}"')
        if blob.lfs:
            self.send_header("X-Linked-Etag", f'"{blob.sha256}"')
            self.send_header("X-Linked-Size", str(blob.size))
        xet = self.hub.xet_file(blob) if self.hub.uses_xet(repo_id) else None
        if xet is not None:
            self.send_header("X-Xet-Hash", xet.hash)
            token_url = f"{self.hub.url}/api/models/{repo_id}/xet-read-token/{sha}"
            self.send_header("Link", f'<{token_url}>; rel="xet-auth"')
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{blob.size}")
        self.end_headers()
        if method == "HEAD":
            return
        stall = self.hub._take_stall([(repo_id, file_path)])
        if stall is not None:
            self._send_stalled(blob.file, start, max(0, min(length, stall.at - start)))
            return
        corruption = self.hub._take_corruption([(repo_id, file_path)])
        self._send_body(blob.file, start, length, corruption)

    # -- the CAS ---------------------------------------------------------------------------
    def _xet_token(self, method: str, repo_id: str) -> None:
        if not self.hub.uses_xet(repo_id):
            self._json(404, {"error": "Xet is not enabled for this repo"}, method)
            return
        expires = int(time.time()) + XET_TOKEN_SECONDS
        headers = {
            "X-Xet-Cas-Url": self.hub.url,
            "X-Xet-Access-Token": self.hub.xet_token,
            "X-Xet-Token-Expiration": str(expires),
        }
        body = {"casUrl": self.hub.url, "accessToken": self.hub.xet_token, "exp": expires}
        self._json(200, body, method, headers)

    def _cas_owner(self, file: XetFile) -> tuple[str, str]:
        """The (repo_id, path) a CAS request is counted under: the first commit that held the bytes."""
        with self.hub._lock:
            owners = self.hub._owners.get(file.sha256) or [("", "")]
            return owners[0]

    def _cas_denied(self, method: str, kind: str, repo_id: str, path: str) -> bool:
        if self.headers.get("Authorization") == f"Bearer {self.hub.xet_token}":
            return False
        self._record(method, kind, repo_id, path, 401)
        self._json(401, {"error": "missing or wrong Xet access token"}, method)
        return True

    def _reconstruction(self, method: str, version: int, file_hash: str) -> None:
        with self.hub._lock:
            file = self.hub._xet_by_hash.get(file_hash)
        if file is None:
            self._record(method, "reconstruction", "", file_hash, 404)
            self._json(404, {"error": "file not found"}, method)
            return
        repo_id, path = self._cas_owner(file)
        if self._cas_denied(method, "reconstruction", repo_id, path) or self._fault(
            method, "reconstruction", repo_id, path
        ):
            return
        start, end = 0, file.size
        if (rng := self.headers.get("Range")) and (m := re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip())):
            start = int(m.group(1))
            end = min(file.size, int(m.group(2)) + 1) if m.group(2) else file.size
        if start >= file.size or start >= end:
            self._record(method, "reconstruction", repo_id, path, 416)
            self._json(416, {"error": "range not satisfiable"}, method)
            return
        self._record(method, "reconstruction", repo_id, path, 200, start)
        xorb_url = f"{self.hub.url}/xorbs/{{hash}}?sig={self.hub.xorb_signature}"
        self._json(200, reconstruction(file, start, end, xorb_url, version), method)

    def _xorb(self, method: str, xorb_hash: str, signature: str) -> None:
        with self.hub._lock:
            found = self.hub._xorbs.get(xorb_hash)
        if found is None:
            self._record(method, "xorb", "", xorb_hash, 404)
            self._json(404, {"error": "xorb not found"}, method)
            return
        file, xorb = found
        repo_id, path = self._cas_owner(file)
        if signature != self.hub.xorb_signature:
            # Like a presigned S3 URL: the signature is in the query, the client sends no token.
            self._record(method, "xorb", repo_id, path, 403)
            self._json(403, {"error": "bad signature"}, method)
            return
        if self._fault(method, "xorb", repo_id, path):
            return
        total = xorb.file.stat().st_size
        start, end = 0, total - 1
        status = 200
        if (rng := self.headers.get("Range")) and (m := re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip())):
            start = int(m.group(1))
            end = min(total - 1, int(m.group(2))) if m.group(2) else total - 1
            status = 206
        length = max(0, end - start + 1)
        self._record(method, "xorb", repo_id, path, status)
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{total}")
        self.end_headers()
        if method == "HEAD":
            return
        with self.hub._lock:
            owners = list(self.hub._owners.get(file.sha256, []))
        stall = self.hub._take_stall(owners)
        if stall is not None:
            self._send_stalled(xorb.file, start, max(0, min(length, stall.at)))
            return
        corruption = self.hub._take_corruption(owners)
        flip_at = file.middle_data_offset(xorb, start, length) if corruption is not None else None
        self._send_body(xorb.file, start, length, corruption, flip_at)

    def _send_body(
        self, file: Path, start: int, length: int, corruption: Corruption | None, flip_at: int | None = None
    ) -> None:
        with file.open("rb") as f:
            if corruption is None and self.hub._rate is None:
                sent = self.connection.sendfile(f, offset=start, count=length)
                with self.hub._lock:
                    self.hub.bytes_sent += sent
                return
            f.seek(start)
            left = length if corruption is None or not corruption.truncate else length // 2
            if corruption is None or corruption.truncate:
                flip_at = -1
            elif flip_at is None:
                flip_at = length // 2
            position = 0
            while left > 0:
                rate = self.hub._rate
                step = min(left, 64 << 10 if rate is None else max(1, rate // 20))
                chunk = bytearray(f.read(step))
                if not chunk:
                    break
                if 0 <= flip_at - position < len(chunk):
                    chunk[flip_at - position] ^= 0xFF
                try:
                    self.wfile.write(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    return
                with self.hub._lock:
                    self.hub.bytes_sent += len(chunk)
                position += len(chunk)
                left -= len(chunk)
                if rate is not None:
                    time.sleep(len(chunk) / rate)
            if corruption is not None and corruption.truncate:
                self.close_connection = True

    def _send_stalled(self, file: Path, start: int, count: int) -> None:
        """`count` bytes of the body, then silence with the connection open until the client or the hub lets go."""
        with file.open("rb") as f:
            f.seek(start)
            data = f.read(count)
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return
        with self.hub._lock:
            self.hub.bytes_sent += len(data)
        self.close_connection = True
        self._keep_open()

    def _keep_open(self) -> None:
        """Send nothing more, until the client closes its end or the hub stops."""
        while not self.hub._stopping.is_set():
            ready, _, _ = select.select([self.connection], [], [], 0.2)
            if ready:
                try:
                    if not self.connection.recv(4096):
                        return  # the client closed its end: it gave up
                except OSError:
                    return

    def _json(self, status: int, body: object, method: str, headers: Mapping[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(data)


def _tree_entries(tree: Mapping[str, Blob], prefix: str, recursive: bool) -> list[dict[str, object]]:
    entries: list[dict[str, object]] = []
    folders: set[str] = set()
    for path, blob in tree.items():
        if prefix and not path.startswith(prefix + "/"):
            continue
        relative = path[len(prefix) + 1 :] if prefix else path
        parts = relative.split("/")
        for depth in range(1, len(parts)):
            folder = "/".join(([prefix] if prefix else []) + parts[:depth])
            if folder not in folders:
                folders.add(folder)
                if recursive or depth == 1:
                    entries.append({"type": "directory", "path": folder, "oid": "0" * 40, "size": 0})
        if not recursive and len(parts) > 1:
            continue
        entry: dict[str, object] = {"type": "file", "path": path, "size": blob.size, "oid": blob.sha1}
        if blob.lfs:
            entry["lfs"] = {"oid": blob.sha256, "size": blob.size, "pointerSize": 134}
        entries.append(entry)
    return entries


def hub_env(hub: LocalHub, hf_home: Path) -> dict[str, str]:
    """Environment for a process that should talk to this hub only, with its own HF_HOME."""
    hf_home.mkdir(parents=True, exist_ok=True)
    return {
        "HF_ENDPOINT": hub.url,
        "HF_HOME": str(hf_home),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }


os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
