"""The facts every decision is made from: what the target holds, and what the lock or the Hub says.

Stores gather `HeldModel` records (a local directory by `stat` calls, the Modal Volume by one
listing per model) and nothing else; the lock and the Hub give one `HubAnswer` per entry. The
properties here only read those facts: which revision is current, which files it vouches for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property

from modal_jobs.errors import ModelFailed
from modal_jobs.model_dir import (
    DAMAGED_NAME,
    LEGACY,
    MANIFEST_NAME,
    POINTER_NAME,
    RESERVED_NAMES,
    REVISIONS_DIR,
    FileRecord,
    Manifest,
    Pointer,
    is_revision_name,
    parse_damaged,
    parse_manifest,
    parse_pointer,
)
from modal_jobs.model_list import ModelEntry

_IN_REVISIONS = f"{REVISIONS_DIR}/"
_RECORD_NAMES = (POINTER_NAME, MANIFEST_NAME, DAMAGED_NAME)


class Kind(StrEnum):
    """What stands at a top-level name of the target."""

    DIRECTORY = "directory"
    SYMLINK = "symlink"
    FILE = "file"


# A file inside a model directory that is not a regular file (a link, a device) has this size in
# `HeldModel.files`, so that it never passes for the file the manifest describes.
NOT_A_FILE = -1


@dataclass(frozen=True)
class HubAnswer:
    """What the model lock (or the Hub) says of one entry: the commit, and that commit's files."""

    commit: str
    files: tuple[FileRecord, ...]


def as_facts(answers: Mapping[str, HubAnswer | ModelFailed]) -> dict[str, HubAnswer | str]:
    """The plan's view of the Hub's answers: a failure is the line that says why."""
    return {repo_id: str(a) if isinstance(a, ModelFailed) else a for repo_id, a in answers.items()}


@dataclass(frozen=True)
class HeldRevision:
    """One revision directory of a model as the target holds it."""

    name: str
    manifest: Manifest | None
    files: Mapping[str, int]  # relative to the revision, the cache's own files left out
    damaged: frozenset[str] = frozenset()

    @property
    def bytes(self) -> int:
        return sum(size for size in self.files.values() if size > 0)

    @property
    def complete(self) -> bool:
        """Its manifest exists and every file it names is there at its size (nothing is hashed)."""
        return self.manifest is not None and not missing_or_resized(self.manifest, self.files)

    def good(self, record: FileRecord) -> bool:
        """A file this revision vouches for: in its manifest, present at its size, not found damaged."""
        return (
            self.manifest is not None
            and "*" not in self.damaged
            and record.path not in self.damaged
            and self.files.get(record.path) == record.size
            and record in self.manifest.files
        )


@dataclass(frozen=True)
class HeldModel:
    """What the target holds at one top-level name: every file below it by size, and the cache's small files.

    `files` maps each path below the name to its size (the cache's own files included); `texts`
    holds the contents of the pointer, manifests and damage marks found there. Stores gather these
    facts and nothing else; `pointer` and `revisions` read them.
    """

    name: str
    kind: Kind
    files: Mapping[str, int] = field(default_factory=dict)
    texts: Mapping[str, bytes] = field(default_factory=dict)

    @cached_property
    def pointer(self) -> Pointer | None:
        data = self.texts.get(POINTER_NAME)
        return None if data is None else parse_pointer(data, f"{self.name}/{POINTER_NAME}")

    @cached_property
    def revisions(self) -> dict[str, HeldRevision]:
        """Every revision directory, and `LEGACY` when the layout before revisions left files here."""
        grouped: dict[str, dict[str, int]] = {}
        for path, size in self.files.items():
            revision, rel = split_revision(path)
            if revision is not None and rel is not None:
                grouped.setdefault(revision, {})[rel] = size
        found = {}
        for revision, files in grouped.items():
            prefix = "" if revision == LEGACY else f"{REVISIONS_DIR}/{revision}/"
            if revision == LEGACY and not files and prefix + MANIFEST_NAME not in self.texts:
                continue
            manifest_bytes = self.texts.get(prefix + MANIFEST_NAME)
            damaged = self.texts.get(prefix + DAMAGED_NAME)
            found[revision] = HeldRevision(
                revision,
                None
                if manifest_bytes is None
                else parse_manifest(manifest_bytes, f"{self.name}/{prefix}{MANIFEST_NAME}"),
                {rel: size for rel, size in files.items() if rel.split("/", 1)[0] not in RESERVED_NAMES},
                frozenset() if damaged is None else parse_damaged(damaged),
            )
        return found

    @property
    def current(self) -> HeldRevision | None:
        """The revision a reader loads: the pointer's, or, before revisions, the directory itself."""
        pointer = self.pointer
        if pointer is not None:
            return self.revisions.get(pointer.revision)
        if POINTER_NAME in self.texts:
            return None  # a pointer that cannot be read points nowhere
        return self.revisions.get(LEGACY)

    @property
    def repo_id(self) -> str | None:
        """The repo the cache wrote here, from the pointer or any manifest; None when it is not ours."""
        if self.pointer is not None:
            return self.pointer.repo_id
        for revision in self.revisions.values():
            if revision.manifest is not None:
                return revision.manifest.repo_id
        return None

    @property
    def bytes(self) -> int:
        return sum(size for path, size in self.files.items() if size > 0 and not is_bookkeeping(path))

    @property
    def file_count(self) -> int:
        return sum(1 for path in self.files if not is_bookkeeping(path))


def split_revision(path: str) -> tuple[str | None, str | None]:
    """(revision, path inside it) for a path below a model directory; (None, None) for the cache's pointer."""
    if path == POINTER_NAME:
        return None, None
    if path.startswith(_IN_REVISIONS):
        name, _, rel = path[len(_IN_REVISIONS) :].partition("/")
        return (name, rel) if rel and is_revision_name(name) else (None, None)
    return LEGACY, path


def is_record(path: str) -> bool:
    """The cache's small files a store reads for the plan: the pointer, manifests and damage marks."""
    if not path.endswith(_RECORD_NAMES):  # most files, quickly
        return False
    revision, rel = split_revision(path)
    return path == POINTER_NAME or (revision is not None and rel in (MANIFEST_NAME, DAMAGED_NAME))


def is_bookkeeping(path: str) -> bool:
    """The cache's own small files below a model directory (pointer, manifests, damage marks, downloader state)."""
    _, rel = split_revision(path)
    return rel is None or rel.split("/", 1)[0] in RESERVED_NAMES


def manifest_matches(manifest: Manifest | None, entry: ModelEntry, commit: str | None) -> bool:
    """A manifest written for this entry (its repo and globs) at this commit; `commit=None` skips that check."""
    return (
        manifest is not None
        and manifest.repo_id == entry.repo_id
        and (commit is None or manifest.commit == commit)
        and manifest.include == entry.include
        and manifest.exclude == entry.exclude
    )


def missing_or_resized(manifest: Manifest, files: Mapping[str, int]) -> tuple[FileRecord, ...]:
    """The manifest's files that are not there as regular files of the recorded size."""
    return tuple(f for f in manifest.files if files.get(f.path) != f.size)
