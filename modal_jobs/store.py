"""A target seen from outside: which model directories it holds, their manifests and sizes.

`list` and `clear` need nothing more, so they run against this view: a local directory here,
the Modal Volume through its client API in `modal_jobs.volume`, with no container started.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from modal_jobs import model_dir
from modal_jobs.model_dir import Manifest


class Store(Protocol):
    location: str

    def names(self) -> list[str]:
        """Top-level entries (model directories, and whatever else stands there), hidden ones excluded."""
        ...

    def read_manifest(self, name: str) -> Manifest | None: ...

    def usage(self, name: str) -> tuple[int, int]:
        """(files, bytes) below an entry, the cache's own state files not counted."""
        ...

    def remove(self, name: str) -> None: ...


class LocalStore:
    """A directory on this machine (or a volume mounted in this container)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.location = str(root)

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if not p.name.startswith("."))

    def read_manifest(self, name: str) -> Manifest | None:
        path = self.root / name
        return None if path.is_symlink() else model_dir.read_manifest(path)

    def usage(self, name: str) -> tuple[int, int]:
        path = self.root / name
        if path.is_symlink() or not path.is_dir():
            return (1, 0) if path.is_symlink() else (1, path.stat().st_size)
        return model_dir.usage(path)

    def remove(self, name: str) -> None:
        path = self.root / name
        if path.is_dir() and not path.is_symlink():
            model_dir.invalidate(path)  # an interrupted clear must not leave a manifest over half a model
        model_dir.remove_tree(path)
