"""The hub's HTTP routes: the Hub API and file resolution, and the Xet CAS on the same port.

- `GET /api/models/{id}/revision/{rev}` -> `{"id", "sha"}`
- `GET /api/models/{id}/tree/{rev}?recursive=true` -> entries with `type, path, size, oid` (+ `lfs`)
- `GET /api/models/{id}/commits/{rev}?p=N` -> the commits `rev` reaches, newest first, with `id, title,
  message, authors, date`; a page at a time, the next one named by `Link: <…>; rel="next"`
- `HEAD`/`GET /{id}/resolve/{rev}/{path}` with `X-Repo-Commit`, `ETag`, `X-Linked-Etag`,
  `X-Linked-Size`, `Content-Length` and `Range`; for a Xet repo's LFS file, `X-Xet-Hash` and
  `Link: <…/xet-read-token/{rev}>; rel="xet-auth"`
- `GET /api/models/{id}/xet-read-token/{rev}` -> `X-Xet-Cas-Url`, `X-Xet-Access-Token`,
  `X-Xet-Token-Expiration` (and the same as JSON)
- `GET /v2/reconstructions/{file hash}` (and `/v1/…`, the older shape), honouring `Range`, and
  `GET /xorbs/{xorb hash}` with `Range`: the CAS, both requiring the access token

Every request is recorded on the hub, and injected faults are taken here, before the answer.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, quote, unquote, urlsplit

from local_hub.bodies import keep_open, send_body, send_stalled
from local_hub.repos import Blob, commit_entries, tree_entries
from local_hub.state import HubState
from local_hub.xet import XetFile, reconstruction

_API = re.compile(r"^/api/models/([^/]+/[^/]+)/(revision|tree|commits|xet-read-token)/(.+)$")
_RESOLVE = re.compile(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")
_RECONSTRUCTION = re.compile(r"^/v([12])/reconstructions/([0-9a-f]{64})$")
_XORB = re.compile(r"^/xorbs/([0-9a-f]{64})$")
_RANGE = re.compile(r"bytes=(\d+)-(\d*)")
XET_TOKEN_SECONDS = 3600


class HubRequestHandler(BaseHTTPRequestHandler):
    """Answers one connection's requests from `hub`, which the server sets on a subclass."""

    hub: HubState
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
        self.hub.record(method, kind, repo_id, path, status, offset, self.headers.get("Authorization"))

    def _fault(self, method: str, kind: str, repo_id: str, path: str) -> bool:
        """Answer with an injected fault, if one matches; say whether it did."""
        fault = self.hub.take_fault(method, kind, repo_id, path)
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

    # -- the Hub API and file resolution -----------------------------------------------------
    def _api(self, method: str, kind: str, repo_id: str, rest: str, query: dict[str, list[str]]) -> None:
        if self.hub.take_hold(kind, repo_id, rest.partition("/")[0]) is not None:
            self._record(method, kind, repo_id, rest, 0)
            self.close_connection = True
            keep_open(self, self.hub)
            return
        if self._fault(method, kind, repo_id, rest):
            return
        # A commit history's revision may hold slashes (`refs/pr/1`, sent as `refs%2Fpr%2F1`).
        rev, _, sub = (rest, "", "") if kind == "commits" else rest.partition("/")
        if repo_id not in self.hub.repos:
            self._record(method, kind, repo_id, rest, 404)
            self._json(404, {"error": "Repository not found"}, method, {"X-Error-Code": "RepoNotFound"})
            return
        resolved = self.hub.store.resolve_ref(repo_id, rev)
        if resolved is None:
            self._record(method, kind, repo_id, rest, 404)
            self._json(404, {"error": f"Invalid rev id: {rev}"}, method, {"X-Error-Code": "RevisionNotFound"})
            return
        sha, tree = resolved
        self._record(method, kind, repo_id, rest, 200)
        if kind == "xet-read-token":
            self._xet_token(method, repo_id)
        elif kind == "commits":
            self._commits(method, repo_id, rev, query)
        elif kind == "revision":
            siblings = [{"rfilename": p} for p in tree]
            self._json(200, {"id": repo_id, "modelId": repo_id, "sha": sha, "siblings": siblings}, method)
        else:
            recursive = query.get("recursive", ["false"])[0].lower() == "true"
            self._json(200, self._tree(repo_id, tree, sub.strip("/"), recursive), method)

    def _commits(self, method: str, repo_id: str, rev: str, query: dict[str, list[str]]) -> None:
        page, size = int(query.get("p", ["0"])[0]), self.hub.commits_per_page
        shas = self.hub.store.history(repo_id, rev) or []
        headers = {}
        if (page + 1) * size < len(shas):
            url = f"{self.hub.url}/api/models/{repo_id}/commits/{quote(rev, safe='')}?p={page + 1}"
            headers["Link"] = f'<{url}>; rel="next"'
        self._json(200, commit_entries(shas[page * size : (page + 1) * size]), method, headers)

    def _tree(self, repo_id: str, tree: Mapping[str, Blob], prefix: str, recursive: bool) -> list[dict[str, object]]:
        entries = tree_entries(tree, prefix, recursive)
        if self.hub.uses_xet(repo_id):
            for entry in entries:
                blob = tree.get(str(entry["path"]))
                xet = self.hub.xet_file(blob) if blob is not None else None
                if xet is not None:
                    entry["xetHash"] = xet.hash
        for entry in entries:
            entry.update(self.hub.tree_override(repo_id, str(entry["path"])))
        return entries

    def _resolve(self, method: str, repo_id: str, rev: str, file_path: str) -> None:
        if self._fault(method, "resolve", repo_id, file_path):
            return
        resolved = self.hub.store.resolve_ref(repo_id, rev) if repo_id in self.hub.repos else None
        blob = resolved[1].get(file_path) if resolved else None
        if resolved is None or blob is None:
            self._record(method, "resolve", repo_id, file_path, 404)
            code = "RepoNotFound" if repo_id not in self.hub.repos else "EntryNotFound"
            self._json(404, {"error": "not found"}, method, {"X-Error-Code": code})
            return
        start, end = 0, blob.size - 1
        status = 200
        wanted = None if self.hub.ranges_ignored else _requested_range(self.headers.get("Range"))
        if wanted is not None:
            start = wanted[0]
            end = wanted[1] if wanted[1] is not None else blob.size - 1
            status = 206
        length = max(0, end - start + 1)
        self._record(method, "resolve", repo_id, file_path, status, start)
        self._send_file_headers(status, repo_id, resolved[0], blob, start, end, length)
        if method == "HEAD":
            return
        stall = self.hub.take_stall([(repo_id, file_path)])
        if stall is not None:
            send_stalled(self, self.hub, blob.file, start, max(0, min(length, stall.at - start)))
            return
        corruption = self.hub.take_corruption([(repo_id, file_path)])
        send_body(self, self.hub, blob.file, start, length, corruption)

    def _send_file_headers(
        self, status: int, repo_id: str, sha: str, blob: Blob, start: int, end: int, length: int
    ) -> None:
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

    # -- the CAS -----------------------------------------------------------------------------
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
        owners = self.hub.store.owners(file.sha256) or [("", "")]
        return owners[0]

    def _cas_denied(self, method: str, kind: str, repo_id: str, path: str) -> bool:
        if self.headers.get("Authorization") == f"Bearer {self.hub.xet_token}":
            return False
        self._record(method, kind, repo_id, path, 401)
        self._json(401, {"error": "missing or wrong Xet access token"}, method)
        return True

    def _reconstruction(self, method: str, version: int, file_hash: str) -> None:
        file = self.hub.cas.file_by_hash(file_hash)
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
        if (wanted := _requested_range(self.headers.get("Range"))) is not None:
            start = wanted[0]
            end = min(file.size, wanted[1] + 1) if wanted[1] is not None else file.size
        if start >= file.size or start >= end:
            self._record(method, "reconstruction", repo_id, path, 416)
            self._json(416, {"error": "range not satisfiable"}, method)
            return
        self._record(method, "reconstruction", repo_id, path, 200, start)
        xorb_url = f"{self.hub.url}/xorbs/{{hash}}?sig={self.hub.xorb_signature}"
        self._json(200, reconstruction(file, start, end, xorb_url, version), method)

    def _xorb(self, method: str, xorb_hash: str, signature: str) -> None:
        found = self.hub.cas.xorb(xorb_hash)
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
        if (wanted := _requested_range(self.headers.get("Range"))) is not None:
            start = wanted[0]
            end = min(total - 1, wanted[1]) if wanted[1] is not None else total - 1
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
        owners = self.hub.store.owners(file.sha256)
        stall = self.hub.take_stall(owners)
        if stall is not None:
            send_stalled(self, self.hub, xorb.file, start, max(0, min(length, stall.at)))
            return
        corruption = self.hub.take_corruption(owners)
        flip_at = file.middle_data_offset(xorb, start, length) if corruption is not None else None
        send_body(self, self.hub, xorb.file, start, length, corruption, flip_at)

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


def _requested_range(header: str | None) -> tuple[int, int | None] | None:
    """The first and, when given, last byte a `Range: bytes=first-[last]` header asks for."""
    if not header or not (match := _RANGE.fullmatch(header.strip())):
        return None
    return int(match.group(1)), int(match.group(2)) if match.group(2) else None
