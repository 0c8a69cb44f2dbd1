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
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import shutil
import stat
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
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


class UnsafePathError(ModelFailed, ValueError):
    """A path from the Hub that would land outside the model directory or on our own files."""


def safe_relative_path(path: str) -> PurePosixPath:
    """Check a repo file path before it touches the disk; the Hub's answer is not trusted."""
    if not path or "\\" in path or "\x00" in path or path.startswith("/"):
        raise UnsafePathError(f"unsafe file path from the Hub: {path!r}")
    pure = PurePosixPath(path)
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise UnsafePathError(f"unsafe file path from the Hub: {path!r}")
    if parts[0] in RESERVED_NAMES:
        raise UnsafePathError(f"file path from the Hub collides with the cache's own {parts[0]!r}: {path!r}")
    return pure


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
            files=tuple(
                FileRecord(path=str(f["path"]), size=int(f["size"]), hash=str(f["hash"])) for f in raw["files"]
            ),
            include=tuple(raw["include"]) if raw.get("include") is not None else None,
            exclude=tuple(raw["exclude"]) if raw.get("exclude") is not None else None,
            completed_at=str(raw.get("completed_at", "")),
        )
    except (ValueError, KeyError, TypeError, OverflowError) as exc:
        log.warning("%s: unreadable manifest (%s); treating the model as incomplete", where, exc)
        return None


def read_manifest(model_dir: Path) -> Manifest | None:
    path = model_dir / MANIFEST_NAME
    try:
        if path.is_symlink() or not path.is_file():
            return None
        data = path.read_bytes()
    except OSError:
        return None
    return parse_manifest(data, str(path))


def write_manifest(model_dir: Path, manifest: Manifest) -> None:
    """Write the manifest atomically: a reader sees the old state or the new one, never half a file."""
    write_atomic(model_dir / MANIFEST_NAME, manifest.to_json().encode())


def write_atomic(path: Path, data: bytes) -> None:
    """Write through a temporary file beside `path`, then rename it over `path`.

    Created with mode 0666 less the process umask, as the downloader creates the model files: a
    loader that can read the weights can read the manifest (`mkstemp` would make it 0600).
    """
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def invalidate(model_dir: Path) -> None:
    """Mark a model not complete before anything in it changes."""
    (model_dir / MANIFEST_NAME).unlink(missing_ok=True)
    _fsync_dir(model_dir)


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


def walk_files(root: Path) -> Iterator[tuple[str, os.stat_result]]:
    """Every regular file and symlink below `root`, as (posix relative path, lstat), never following links."""
    # Plain strings, not Path objects: this runs once per file of every model on each plan and `list`.
    stack = [("", str(root))]
    while stack:
        prefix, current = stack.pop()
        try:
            with os.scandir(current) as scan:
                entries = list(scan)
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                stack.append((f"{prefix}{entry.name}/", entry.path))
            else:
                yield prefix + entry.name, st


def usage(model_dir: Path) -> tuple[int, int]:
    """(files, bytes) on disk below a directory, not counting our own or the downloader's state."""
    files = size = 0
    for rel, st in walk_files(model_dir):
        if rel.split("/", 1)[0] in RESERVED_NAMES:
            continue
        files += 1
        size += st.st_size if stat.S_ISREG(st.st_mode) else 0
    return files, size


def remove_files(model_dir: Path, paths: Sequence[str]) -> list[str]:
    """Delete the named files (an older commit's, stray links) and the folders they leave empty.

    Symlinks are removed as links, never followed: nothing outside the model directory is touched.
    """
    removed = []
    for rel in paths:
        parts = rel.split("/")
        if parts[0] in RESERVED_NAMES or rel.startswith("/") or any(p in ("", ".", "..") for p in parts):
            continue  # ours, or not a path below the model directory: never touched
        path = model_dir.joinpath(*parts)
        if path.is_symlink() or path.is_file():
            path.unlink(missing_ok=True)
            removed.append(rel)
    _remove_empty_dirs(model_dir)
    return sorted(removed)


def remove_downloader_state(model_dir: Path) -> None:
    """Drop huggingface_hub's per-file metadata and any `.incomplete` leftovers of a killed run."""
    state = model_dir / DOWNLOADER_STATE
    if state.is_symlink():
        state.unlink()
    elif state.exists():
        shutil.rmtree(state)


def remove_tree(path: Path) -> None:
    """Delete a directory (or a link standing where one was) without following any symlink."""
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path)  # rmtree unlinks symlinks inside instead of following them


def _remove_empty_dirs(root: Path) -> None:
    for dirpath, _, _ in os.walk(root, topdown=False):
        if Path(dirpath) != root:
            with contextlib.suppress(OSError):  # fails, as wanted, on a directory that still holds files
                Path(dirpath).rmdir()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# -- revisions and the pointer -------------------------------------------------------------


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


def write_pointer(model_dir: Path, pointer: Pointer) -> None:
    """Make a revision current: the one step a reader sees, atomic."""
    write_atomic(model_dir / POINTER_NAME, pointer.to_json().encode())


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


def mark_damaged(revision_path: Path, paths: Sequence[str]) -> None:
    """Record damage for the next download, leaving the revision readable: a repair is written beside it."""
    write_atomic(revision_path / DAMAGED_NAME, (json.dumps({"damaged": sorted(paths)}) + "\n").encode())


def link_or_copy(source: Path, target: Path) -> None:
    """Give `target` the bytes of `source` without the network: a hard link, or a copy where links are refused."""
    target.unlink(missing_ok=True)
    try:
        os.link(source, target, follow_symlinks=False)
    except OSError:
        tmp = target.parent / f".{target.name}.{secrets.token_hex(8)}.tmp"
        try:
            shutil.copyfile(source, tmp, follow_symlinks=False)
            tmp.replace(target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def retire(model_dir: Path, revision: str) -> None:
    """Remove a revision no pointer names: its manifest first, so that a partial removal is incomplete."""
    if revision == LEGACY:
        invalidate(model_dir)
        (model_dir / DAMAGED_NAME).unlink(missing_ok=True)
        for entry in os.scandir(model_dir):
            if entry.name not in (POINTER_NAME, REVISIONS_DIR):
                remove_tree(Path(entry.path))
        return
    path = revision_dir(model_dir, revision)
    if path.is_dir() and not path.is_symlink():
        invalidate(path)
    remove_tree(path)
