"""The local hub's state: the repos it serves, the faults to inject, and every request it answered.

The routes (`local_hub.routes`) answer from it; the server (`local_hub.server.LocalHub`) runs them.
"""

from __future__ import annotations

import hashlib
import random
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from local_hub.faults import FaultInjection
from local_hub.repos import Blob, Repo, RepoStore, default_lfs
from local_hub.xet import CHUNKS_PER_XORB, XetFile, XetIndex


@dataclass(frozen=True)
class Request:
    method: str
    kind: str
    repo_id: str
    path: str
    status: int  # 0: held, never answered (see HubState.hold)
    offset: int | None = None  # where a file body or reconstruction starts (`Range`), for file transfers


class HubState(FaultInjection):
    """What the hub serves and what it counted: the routes answer from it, the server (`LocalHub`) runs them."""

    def __init__(self, root: Path, *, xet: bool = False, chunks_per_xorb: int = CHUNKS_PER_XORB) -> None:
        super().__init__()
        self.root = root
        self.store = RepoStore(root / "blobs")
        self.cas = XetIndex(self.store.blobs / "xorbs", everywhere=xet, chunks_per_xorb=chunks_per_xorb)
        self.xet_token = f"xet-{random.Random(str(root)).getrandbits(64):016x}"
        self.xorb_signature = hashlib.sha256(self.xet_token.encode()).hexdigest()[:32]
        self.requests: list[Request] = []
        self.authorizations: list[str | None] = []
        self.bytes_sent = 0
        self.stopping = threading.Event()  # lets go of stalled bodies and held requests
        self._lock = threading.Lock()
        self.port: int | None = None  # set while the server runs
        self.commits_per_page = 50  # the commit history is paged like the Hub's (`?p=N`, a `Link: rel="next"`)

    @property
    def url(self) -> str:
        assert self.port is not None, "start() the hub first"
        return f"http://127.0.0.1:{self.port}"

    # -- content ---------------------------------------------------------------------------
    @property
    def repos(self) -> dict[str, Repo]:
        return self.store.repos

    def commit(
        self,
        repo_id: str,
        files: Mapping[str, bytes | Path],
        *,
        branch: str = "main",
        lfs: Callable[[str, int], bool] = default_lfs,
        parent: str | None = None,
    ) -> str:
        """Make a commit holding exactly `files`, move `branch` to it, return its sha.

        Its parent is `parent` when given, else the head of `branch`: a new branch starts a history of its own.
        """
        sha, tree = self.store.stage(repo_id, files, branch, lfs, parent)
        if self.uses_xet(repo_id):
            self.cas.index(tree.values())  # before the commit is seen: its LFS files are on the CAS from the start
        self.store.publish(repo_id, branch, sha, tree)
        return sha

    def tag(self, repo_id: str, name: str, sha: str) -> None:
        self.store.tag(repo_id, name, sha)

    def open_pr(self, repo_id: str, files: Mapping[str, bytes | Path], *, base: str = "main") -> str:
        """A commit on the Hub pull request `refs/pr/N`, on top of `base`, as anyone may open: outside `base`'s history.

        The Hub serves it by its sha like any commit; only its ref says where it came from.
        """
        repo = self.repos[repo_id]
        number = 1 + sum(1 for ref in repo.refs if ref.startswith("refs/pr/"))
        return self.commit(repo_id, files, branch=f"refs/pr/{number}", parent=repo.refs[base])

    # -- Xet -------------------------------------------------------------------------------
    def enable_xet(self, repo_id: str | None = None) -> None:
        """Serve LFS files through Xet: every repo's (None), or one repo's, those committed already included."""
        self.cas.enable(repo_id)
        for name, repo in self.repos.items():
            if repo_id in (None, name):
                for tree in repo.commits.values():
                    self.cas.index(tree.values())

    def disable_xet(self) -> None:
        """Back to plain HTTP for every repo; the xorbs stay on disk for the next `enable_xet`."""
        self.cas.disable()

    def uses_xet(self, repo_id: str) -> bool:
        return self.cas.uses(repo_id)

    def xet_file(self, blob: Blob) -> XetFile | None:
        """How the CAS holds a blob, when it is an LFS file of a Xet repo."""
        return self.cas.file_of(blob)

    # -- accounting ------------------------------------------------------------------------
    def record(
        self,
        method: str,
        kind: str,
        repo_id: str,
        path: str,
        status: int,
        offset: int | None,
        authorization: str | None,
    ) -> None:
        with self._lock:
            self.requests.append(Request(method, kind, repo_id, path, status, offset))
            self.authorizations.append(authorization)

    def count_sent(self, n: int) -> None:
        with self._lock:
            self.bytes_sent += n

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
