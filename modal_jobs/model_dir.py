"""A model's directory on the target: immutable revisions, and a pointer to the current one.

```
<target>/                              /vol/models on Modal, --local-dir DIR locally
├── .model-cache.lock                  held by a local download, verify or clear while it runs
└── Qwen3-TTS-12Hz-0.6B-Base/          <last part of repo_id>
    ├── .current.json                  the pointer: which revision readers load; replaced atomically, last
    └── .revisions/
        ├── <commit>/                  the current revision, complete and never changed again
        │   ├── .model-cache.json      its manifest: written last inside it; present = complete
        │   ├── .model-cache.damaged   only when `verify` found damage: the next download repairs it
        │   ├── config.json
        │   └── model.safetensors …
        └── <older commit>/            the previous revision: running containers and a rollback need it
```

The pointer (format 1) and a manifest (format 1):

```json
{"format": 1, "repo_id": "Qwen/Qwen3-TTS-12Hz-0.6B-Base", "revision": "<dir>", "commit": "<40 hex>",
 "previous": "<dir>"}
{"format": 1, "repo_id": "Qwen/Qwen3-TTS-12Hz-0.6B-Base", "revision": "main",
 "commit": "<40 hex>", "include": null, "exclude": null, "completed_at": "2026-11-25T10:00:00Z",
 "files": [{"path": "model.safetensors", "size": 2400000000, "hash": "sha256:<hex>"},
           {"path": "config.json", "size": 4096, "hash": "git-sha1:<hex>"}]}
```

Why this shape: Modal commits a mounted volume in the background every few seconds, so every
prefix of a download is visible to a new reader. A new revision is written in a directory no
reader looks at, its manifest last; then one `os.replace` of the small pointer makes it current.
Any prefix leaves the pointer on a complete revision. Files that did not change between
revisions are hard-linked from the revision that has them (copied where links are refused), never
downloaded again. After the pointer moves, every revision but the current and the previous one
is removed (manifest first).

A directory written before revisions existed holds its files and `.model-cache.json` directly
in `<name>/` (the "legacy" revision, named `.` here). A download adopts it by linking its files
into a revision, and keeps it readable, for readers of either version, while it is the previous
revision.

This module holds the names and the records, parsed and written as data: planning reads them
without touching a disk. What walks and changes a directory is `modal_jobs.disk`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modal_jobs import reader
from modal_jobs.errors import ModelFailed

log = logging.getLogger(__name__)

# The names readers know: `modal_jobs.reader` owns them, so that it can be copied alone.
POINTER_NAME = reader.POINTER_NAME
POINTER_FORMAT = reader.POINTER_FORMAT
REVISIONS_DIR = reader.REVISIONS_DIR
MANIFEST_NAME = reader.MANIFEST_NAME
MANIFEST_FORMAT = reader.MANIFEST_FORMAT
LOCK_NAME = ".model-cache.lock"
DAMAGED_NAME = ".model-cache.damaged"
# Where huggingface_hub keeps per-file metadata and `.incomplete` files for a local_dir download.
DOWNLOADER_STATE = ".cache"
# The revision that is the model directory itself: the layout before revisions.
LEGACY = "."
# The cache's own names, which no file of a repo may take.
RESERVED_NAMES = frozenset({MANIFEST_NAME, DOWNLOADER_STATE, DAMAGED_NAME, POINTER_NAME, REVISIONS_DIR})
# The two forms of a file's hash the Hub gives: an LFS object's sha256, or a git blob's id.
_FILE_HASH = re.compile(r"sha256:[0-9a-f]{64}|git-sha1:[0-9a-f]{40}")
_NOT_NAMES = frozenset(("", ".", ".."))  # path parts that are not a file or directory name


@dataclass(frozen=True)
class FileRecord:
    """A file of a model as the Hub describes it: `hash` is `sha256:<hex>` (LFS) or `git-sha1:<hex>`."""

    path: str
    size: int
    hash: str


@dataclass(frozen=True)
class Manifest:
    repo_id: str
    revision: str
    commit: str
    files: tuple[FileRecord, ...]
    include: tuple[str, ...] | None = None
    exclude: tuple[str, ...] | None = None
    completed_at: str = ""

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def to_json(self) -> str:
        data: dict[str, Any] = {"format": MANIFEST_FORMAT, **asdict(self)}
        data["include"] = list(self.include) if self.include is not None else None
        data["exclude"] = list(self.exclude) if self.exclude is not None else None
        data["files"] = [asdict(f) for f in self.files]
        return json.dumps(data, indent=1) + "\n"


class UntrustedRecord(ModelFailed, ValueError):
    """A file record (the Hub's answer, or models.lock's) that cannot be right: nothing is written for it."""


class UnsafePathError(UntrustedRecord):
    """A path that would land outside the model directory or on our own files."""


def safe_relative_path(path: object, source: str = "the Hub") -> str:
    """Check a repo file path before it touches the disk; neither the Hub's answer nor the lock is trusted.

    String checks only, no `PurePosixPath`: `list` checks every file of the lock and of each manifest.
    """
    if type(path) is not str or not path or "\\" in path or "\x00" in path or path[0] == "/":
        raise UnsafePathError(f"unsafe file path from {source}: {path!r}")
    parts = path.split("/")
    if not _NOT_NAMES.isdisjoint(parts):
        raise UnsafePathError(f"unsafe file path from {source}: {path!r}")
    if parts[0] in RESERVED_NAMES:
        raise UnsafePathError(f"file path from {source} collides with the cache's own {parts[0]!r}: {path!r}")
    return path


# Records already checked, by their exact fields: `list` meets each file twice, in the lock and in its manifest.
_CHECKED: dict[tuple[str, int, str], FileRecord] = {}


def checked_record(path: object, size: object, hash_: object, source: str = "the Hub") -> FileRecord:
    """A file record whose every field has the shape the Hub gives: a safe path, a byte count, a known hash."""
    # By exact types: True equals 1, and is no byte count.
    if type(path) is str and type(size) is int and type(hash_) is str and (path, size, hash_) in _CHECKED:
        return _CHECKED[path, size, hash_]
    checked = safe_relative_path(path, source)
    if type(size) is not int or size < 0:  # not bool, which is an int
        raise UntrustedRecord(f"size {size!r} of {checked!r} from {source} is not a number of bytes")
    if type(hash_) is not str or _FILE_HASH.fullmatch(hash_) is None:
        raise UntrustedRecord(
            f"hash {hash_!r} of {checked!r} from {source} is neither sha256:<64 hex> nor git-sha1:<40 hex>"
        )
    record = _CHECKED[checked, size, hash_] = FileRecord(checked, size, hash_)
    return record


def parse_manifest(data: bytes, where: str) -> Manifest | None:
    """A manifest from its bytes, or None (with a warning) when it cannot be trusted."""
    try:
        raw = json.loads(data)
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
        version = raw.get("format")
        if version != MANIFEST_FORMAT:
            log.warning(
                "%s: manifest format %r is not %d (written by another version?); treating the model as incomplete",
                where,
                version,
                MANIFEST_FORMAT,
            )
            return None
        return Manifest(
            repo_id=str(raw["repo_id"]),
            revision=str(raw["revision"]),
            commit=str(raw["commit"]),
            # The paths, sizes and hashes a manifest read back must have, as the Hub's or the lock's must.
            files=tuple(checked_record(f["path"], f["size"], f["hash"], source=where) for f in raw["files"]),
            include=tuple(raw["include"]) if raw.get("include") is not None else None,
            exclude=tuple(raw["exclude"]) if raw.get("exclude") is not None else None,
            completed_at=str(raw.get("completed_at", "")),
        )
    except (ValueError, KeyError, TypeError, OverflowError) as exc:
        log.warning("%s: unreadable manifest (%s); treating the model as incomplete", where, exc)
        return None


def new_manifest(
    repo_id: str,
    revision: str,
    commit: str,
    files: Sequence[FileRecord],
    include: tuple[str, ...] | None,
    exclude: tuple[str, ...] | None,
) -> Manifest:
    return Manifest(
        repo_id=repo_id,
        revision=revision,
        commit=commit,
        files=tuple(sorted(files, key=lambda f: f.path)),
        include=include,
        exclude=exclude,
        completed_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )


@dataclass(frozen=True)
class Pointer:
    """Which revision of a model readers load, and the one kept before it (`LEGACY`, a name, or None)."""

    repo_id: str
    revision: str
    commit: str
    previous: str | None = None

    def to_json(self) -> str:
        return json.dumps({"format": POINTER_FORMAT, **asdict(self)}, indent=1) + "\n"


def parse_pointer(data: bytes, where: str) -> Pointer | None:
    """A pointer from its bytes, or None (with a warning) when it cannot be trusted."""
    try:
        raw = json.loads(data)
        if not isinstance(raw, dict) or raw.get("format") != POINTER_FORMAT:
            raise ValueError(f"format {raw.get('format') if isinstance(raw, dict) else raw!r} is not {POINTER_FORMAT}")
        previous = raw.get("previous")
        pointer = Pointer(
            repo_id=str(raw["repo_id"]),
            revision=str(raw["revision"]),
            commit=str(raw["commit"]),
            previous=None if previous is None else str(previous),
        )
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("%s: unreadable pointer (%s); treating the model as incomplete", where, exc)
        return None
    if not is_revision_name(pointer.revision):
        log.warning("%s: pointer names %r, not a revision directory; treating the model as incomplete", where, pointer)
        return None
    return pointer


def is_revision_name(name: str) -> bool:
    return bool(name) and "/" not in name and name not in (".", "..") and "\x00" not in name


def revision_dir(model_dir: Path, revision: str) -> Path:
    """Where a revision's files are: `.revisions/<name>/`, or the model directory itself for `LEGACY`."""
    return model_dir if revision == LEGACY else model_dir / REVISIONS_DIR / revision


def set_digest(files: Sequence[FileRecord]) -> str:
    """One hash for a model's whole file set (paths, sizes, hashes): equal digests, equal files."""
    lines = "".join(f"{f.path}\t{f.size}\t{f.hash}\n" for f in sorted(files, key=lambda f: f.path))
    return "sha256:" + hashlib.sha256(lines.encode()).hexdigest()


def parse_damaged(data: bytes) -> frozenset[str]:
    """The paths `verify` found damaged in a revision (a marker that cannot be read marks everything)."""
    try:
        raw = json.loads(data)
        return frozenset(str(p) for p in raw["damaged"])
    except (ValueError, KeyError, TypeError):
        return frozenset({"*"})
