"""A model directory on a filesystem (a local target, or the volume mounted in a container): walked and changed.

Every write a reader may see is atomic (`write_atomic`); a revision is marked incomplete before
anything in it changes (`invalidate`) and removed manifest first (`retire`); nothing here ever
follows a symlink out of the model directory. The layout these produce is `modal_jobs.model_dir`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import stat
import time
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath

from modal_jobs.model_dir import (
    DAMAGED_NAME,
    DOWNLOADER_STATE,
    LEGACY,
    MANIFEST_NAME,
    POINTER_NAME,
    RESERVED_NAMES,
    REVISIONS_DIR,
    FileRecord,
    Manifest,
    Pointer,
    revision_dir,
)


def write_atomic(path: Path, data: bytes) -> None:
    """Write through a temporary file beside `path`, then rename it over `path`.

    Created with mode 0666 less the process umask, as the downloader creates the model files: a
    loader that can read the weights can read the manifest (`mkstemp` would make it 0600).
    """
    tmp = path.parent / f".{path.name}.{os.urandom(8).hex()}.tmp"
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


def write_manifest(model_dir: Path, manifest: Manifest) -> None:
    """Write the manifest atomically: a reader sees the old state or the new one, never half a file."""
    write_atomic(model_dir / MANIFEST_NAME, manifest.to_json().encode())


def invalidate(model_dir: Path) -> None:
    """Mark a model not complete before anything in it changes."""
    (model_dir / MANIFEST_NAME).unlink(missing_ok=True)
    _fsync_dir(model_dir)


def write_pointer(model_dir: Path, pointer: Pointer) -> None:
    """Make a revision current: the one step a reader sees, atomic."""
    write_atomic(model_dir / POINTER_NAME, pointer.to_json().encode())


def mark_damaged(revision_path: Path, paths: Sequence[str]) -> None:
    """Record damage for the next download, leaving the revision readable: a repair is written beside it."""
    write_atomic(revision_path / DAMAGED_NAME, (json.dumps({"damaged": sorted(paths)}) + "\n").encode())


# What `link` answers where a filesystem does not do hard links (or not between these two places).
LINKS_REFUSED = frozenset({errno.EPERM, errno.EXDEV, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS})


def link_or_copy(source: Path, target: Path) -> None:
    """Give `target` the bytes of `source` without the network: a hard link, or a copy where links are refused."""
    target.unlink(missing_ok=True)
    try:
        os.link(source, target, follow_symlinks=False)
        return
    except OSError as exc:
        if exc.errno not in LINKS_REFUSED:
            raise
    tmp = target.parent / f".{target.name}.{os.urandom(8).hex()}.tmp"
    try:
        shutil.copyfile(source, tmp, follow_symlinks=False)
        tmp.replace(target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


PROBE_PREFIX = ".link-probe."
# A probe lives for milliseconds; one this old was left by a process killed mid-probe.
STALE_PROBE_SECONDS = 3600.0


def links_work(directory: Path) -> bool:
    """Whether hard links can be made in `directory` (asked once per run, with two hidden files it removes).

    Probes left by a process killed mid-probe are removed here; a fresh one may be another
    container's, probing at the same moment, and is left alone.
    """
    stale_before = time.time() - STALE_PROBE_SECONDS
    for left in directory.glob(f"{PROBE_PREFIX}*"):
        with contextlib.suppress(OSError):  # best effort: another's, or not a file, stays
            if left.lstat().st_mtime < stale_before:
                left.unlink()
    probe = directory / f"{PROBE_PREFIX}{os.urandom(8).hex()}"
    linked = probe.with_name(probe.name + ".link")
    try:
        probe.touch(exist_ok=False)
        os.link(probe, linked, follow_symlinks=False)
        return True
    except OSError as exc:
        if exc.errno in LINKS_REFUSED:
            return False
        raise
    finally:
        linked.unlink(missing_ok=True)
        probe.unlink(missing_ok=True)


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


def walk_files(root: Path) -> Iterator[tuple[str, os.stat_result]]:
    """Every regular file and symlink below `root`, as (posix relative path, lstat), never following links.

    Each folder is opened relative to its parent's open handle, never by its path again: a folder
    swapped for a link while the walk runs is seen as that link (or skipped), never followed out of
    the model directory. A name removed since its folder was listed (another run retiring a
    revision) is skipped.
    """
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    except (FileNotFoundError, NotADirectoryError):
        return
    yield from _walk_open(fd, "")


def _walk_open(fd: int, prefix: str) -> Iterator[tuple[str, os.stat_result]]:
    """The walk below the open folder `fd`, which it closes.

    Plain strings, not Path objects, and each name stat-ed relative to its folder: this runs once
    per file of every model on each plan and `list`.
    """
    try:
        with os.scandir(fd) as scan:
            names = [entry.name for entry in scan]
        for name in names:
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if not stat.S_ISDIR(st.st_mode):
                    yield prefix + name, st
                    continue
                child = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError as exc:
                if exc.errno != errno.ELOOP:  # ELOOP: a folder replaced by a link since it was listed
                    raise
                continue
            yield from _walk_open(child, f"{prefix}{name}/")
    finally:
        os.close(fd)


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


def make_parents(model_dir: Path, records: Sequence[FileRecord]) -> None:
    """Every folder the files go in, made real: a file or symlink standing where one goes is removed, never followed."""
    for folder in sorted({str(PurePosixPath(r.path).parent) for r in records} - {"."}):
        current = model_dir
        for part in folder.split("/"):
            current = current / part
            if current.is_symlink() or (current.exists() and not current.is_dir()):
                current.unlink()
        current.mkdir(parents=True, exist_ok=True)


def clear_path(model_dir: Path, rel: str) -> None:
    """Make room for a file: remove it and any symlink or file standing where one of its parents goes."""
    current = model_dir
    for part in rel.split("/")[:-1]:
        current = current / part
        if current.is_symlink() or (current.exists() and not current.is_dir()):
            current.unlink(missing_ok=True)
    target = model_dir / rel
    if target.is_symlink() or target.exists():
        if target.is_dir() and not target.is_symlink():
            remove_tree(target)
        else:
            target.unlink()
