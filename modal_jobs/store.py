"""A target seen from outside: what stands at its top level, and what each model directory holds.

Planning, `list` and `clear` need nothing more, so they run against this view: a local directory
here, the Modal Volume through its client API in `modal_jobs.volume`, with no container started.
Both answer with the same `HeldModel` records, so the plan cannot tell them apart.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Protocol

from modal_jobs import disk
from modal_jobs.decide.facts import NOT_A_FILE, HeldModel, Kind, is_record
from modal_jobs.errors import TargetError
from modal_jobs.model_dir import POINTER_NAME, Pointer


class Store(Protocol):
    target: str  # the target as summaries name it: a directory, or the mount path inside containers

    def top(self) -> dict[str, Kind]:
        """Top-level names (model directories, and whatever else stands there), hidden ones excluded."""
        ...

    def held(self, name: str, kind: Kind) -> HeldModel:
        """What one top-level name holds: its manifest and its files by size, without reading file contents."""
        ...

    def remove(self, name: str) -> None: ...


def survey(store: Store) -> dict[str, HeldModel]:
    """What the target holds at every top-level name."""
    return look_at(store, store.top())


def look_at(store: Store, top: Mapping[str, Kind], names: Collection[str] | None = None) -> dict[str, HeldModel]:
    """What the target holds at the names of its listing `top` (only those in `names`, when given)."""
    return {name: store.held(name, kind) for name, kind in sorted(top.items()) if names is None or name in names}


def held_model(target: Path, name: str) -> HeldModel | None:
    """What a local target holds at one model's name now, or None when nothing stands there."""
    path = target / name
    if not os.path.lexists(path):
        return None
    kind = Kind.SYMLINK if path.is_symlink() else Kind.DIRECTORY if path.is_dir() else Kind.FILE
    return LocalStore(target).held(name, kind)


class LocalStore:
    """A directory on this machine (or a volume mounted in this container)."""

    def __init__(self, target: Path) -> None:
        self.path = target
        self.target = str(target)

    def top(self) -> dict[str, Kind]:
        if not self.path.is_dir():
            return {}
        found = {}
        for entry in os.scandir(self.path):
            if entry.name.startswith("."):
                continue
            mode = entry.stat(follow_symlinks=False).st_mode
            found[entry.name] = (
                Kind.SYMLINK if stat.S_ISLNK(mode) else Kind.DIRECTORY if stat.S_ISDIR(mode) else Kind.FILE
            )
        return found

    def held(self, name: str, kind: Kind) -> HeldModel:
        path = self.path / name
        if kind is not Kind.DIRECTORY:
            size = path.lstat().st_size if kind is Kind.FILE else 0
            return HeldModel(name, kind, {name: size})
        files = {rel: st.st_size if stat.S_ISREG(st.st_mode) else NOT_A_FILE for rel, st in disk.walk_files(path)}
        texts = {}
        for rel, size in files.items():
            if size >= 0 and is_record(rel):
                with contextlib.suppress(OSError):
                    texts[rel] = (path / rel).read_bytes()
        return HeldModel(name, kind, files, texts)

    def write_pointer(self, name: str, pointer: Pointer) -> None:
        disk.write_pointer(self.path / name, pointer)

    def retire(self, model: HeldModel, revision: str) -> None:
        disk.retire(self.path / model.name, revision)

    def remove(self, name: str) -> None:
        path = self.path / name
        if path.is_dir() and not path.is_symlink():
            # An interrupted clear must leave a model that says it is incomplete, never half of one that says otherwise.
            (path / POINTER_NAME).unlink(missing_ok=True)
            disk.invalidate(path)
        disk.remove_tree(path)


def require_writable(target: Path) -> None:
    """Refuse, before anything changes, a target this process cannot write (a read-only mount, say)."""
    existing = target
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not os.access(existing, os.W_OK):
        why = "is on a read-only filesystem" if _read_only_fs(existing) else "is not writable by this user"
        raise TargetError(f"{target} {why}; download and clear need a writable target (list and verify work read-only)")


def is_writable(target: Path) -> bool:
    return target.is_dir() and os.access(target, os.W_OK)


def _read_only_fs(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError as exc:
        return exc.errno == errno.EROFS
