"""What the hub serves: repos of commits, each commit a tree of blobs stored once on disk by content.

```
<root>/blobs/<sha256>          one file's bytes, served with sendfile
<root>/blobs/xorbs/<hash>      the same bytes cut for Xet (`local_hub.xet`)
```

A blob carries the two ids the Hub gives a file: the git blob id (sha1 of `blob <size>\\0` and the
bytes) and, for an LFS file, its sha256.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

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
class Repo:
    commits: dict[str, dict[str, Blob]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)
    parents: dict[str, str] = field(default_factory=dict)  # commit -> its parent ("" for the first)


class RepoStore:
    """Every repo the hub serves, and which (repo, path) pairs hold each blob."""

    def __init__(self, blobs: Path) -> None:
        self.blobs = blobs
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.repos: dict[str, Repo] = {}
        self._owners: dict[str, list[tuple[str, str]]] = {}  # sha256 -> (repo_id, path) that hold it
        self._lock = threading.Lock()

    def stage(
        self,
        repo_id: str,
        files: Mapping[str, bytes | Path],
        branch: str,
        lfs: Callable[[str, int], bool],
        parent: str | None = None,
    ) -> tuple[str, dict[str, Blob]]:
        """Store a commit's blobs and name it; nothing points at it until `publish`.

        Its parent is `parent`, else the head of `branch` (none for a new branch).
        """
        repo = self.repos.setdefault(repo_id, Repo())
        parent = repo.refs.get(branch, "") if parent is None else parent
        tree: dict[str, Blob] = {}
        for path, content in sorted(files.items()):
            tree[path] = store_blob(self.blobs, path, content, lfs)
        digest = hashlib.sha1(usedforsecurity=False)
        digest.update(f"{repo_id}\0{parent}\0{len(repo.commits)}\0".encode())
        for path, blob in tree.items():
            digest.update(f"{path}\0{blob.sha1}\0".encode())
        with self._lock:
            for path, blob in tree.items():
                owners = self._owners.setdefault(blob.sha256, [])
                if (repo_id, path) not in owners:
                    owners.append((repo_id, path))
            repo.parents[digest.hexdigest()] = parent
        return digest.hexdigest(), tree

    def publish(self, repo_id: str, branch: str, sha: str, tree: dict[str, Blob]) -> None:
        """Add a staged commit and move `branch` to it."""
        repo = self.repos[repo_id]
        with self._lock:
            repo.commits[sha] = tree
            repo.refs[branch] = sha

    def history(self, repo_id: str, rev: str) -> list[str] | None:
        """The commits a branch, tag or commit sha reaches, newest first, as `git log` lists them."""
        resolved = self.resolve_ref(repo_id, rev)
        if resolved is None:
            return None
        parents = self.repos[repo_id].parents
        shas = [resolved[0]]
        while parent := parents.get(shas[-1], ""):
            shas.append(parent)
        return shas

    def tag(self, repo_id: str, name: str, sha: str) -> None:
        self.repos[repo_id].refs[name] = sha

    def resolve_ref(self, repo_id: str, rev: str) -> tuple[str, dict[str, Blob]] | None:
        """The commit a branch, tag or commit sha names, with its tree."""
        repo = self.repos.get(repo_id)
        if repo is None:
            return None
        sha = repo.refs.get(rev, rev)
        tree = repo.commits.get(sha)
        return (sha, tree) if tree is not None else None

    def owners(self, sha256: str) -> list[tuple[str, str]]:
        """The (repo_id, path) pairs that hold these bytes, in the order they were committed."""
        with self._lock:
            return list(self._owners.get(sha256, []))


def store_blob(blobs: Path, path: str, content: bytes | Path, lfs: Callable[[str, int], bool]) -> Blob:
    """Hash a file's content (bytes, or a file read in chunks) and keep one copy of it under `blobs`."""
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
    blob_file = blobs / sha256.hexdigest()
    if not blob_file.exists():
        if isinstance(content, Path):
            shutil.copyfile(content, blob_file)
        else:
            blob_file.write_bytes(content)
    return Blob(path, size, sha1.hexdigest(), sha256.hexdigest(), lfs(path, size), blob_file)


def tree_entries(tree: Mapping[str, Blob], prefix: str, recursive: bool) -> list[dict[str, object]]:
    """The tree listing under `prefix` as the Hub's API gives it: each folder where it is first met, and the files."""
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


def commit_entries(shas: list[str]) -> list[dict[str, object]]:
    """Commits as the Hub's commit history lists them (what `HfApi.list_repo_commits` reads)."""
    return [
        {
            "id": sha,
            "title": f"commit {sha[:7]}",
            "message": "",
            "authors": [{"user": "local-hub"}],
            "date": "2026-01-01T00:00:00.000Z",
        }
        for sha in shas
    ]
