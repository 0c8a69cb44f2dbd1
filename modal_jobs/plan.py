"""The plan: what a download must do to each model, decided once, as data, before any byte moves.

```
the list's entries ─┐
the Hub's answers ──┼──► plan_run() ──► Plan ──► shown (--dry-run, `plan`, the PR summary)
what the target holds┘                      └──► applied (local directory, or one container per model)
```

`plan_model` and `plan_run` are pure: the local directory and the Modal Volume gather their
inputs in their own way (`stat` calls, or one listing per model through Modal's client API) and
get the same plan from the same facts. A container is handed the plan, commit included, and never
resolves a revision again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from functools import cached_property
from typing import Any

from modal_jobs.catalog import Catalog, ModelEntry
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
from modal_jobs.summary import ModelRow, Status


class Action(StrEnum):
    UP_TO_DATE = "up-to-date"  # the current revision is complete at the commit, with every file at its size
    FETCH = "fetch"  # a new revision: absent, at another commit or with other globs, or adopting the old layout
    REPAIR = "repair"  # the current revision's commit, rewritten beside it: files missing, resized or damaged
    PRUNE = "prune"  # a model directory of ours that the list no longer names
    FAILED = "failed"  # cannot be planned: the Hub refused, or the target holds something we must not touch


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
    if path.startswith(f"{REVISIONS_DIR}/"):
        parts = path.split("/", 2)
        return (parts[1], parts[2]) if len(parts) == 3 and is_revision_name(parts[1]) else (None, None)
    return LEGACY, path


def is_record(path: str) -> bool:
    """The cache's small files a store reads for the plan: the pointer, manifests and damage marks."""
    revision, rel = split_revision(path)
    return path == POINTER_NAME or (revision is not None and rel in (MANIFEST_NAME, DAMAGED_NAME))


def is_bookkeeping(path: str) -> bool:
    """The cache's own small files below a model directory (pointer, manifests, damage marks, downloader state)."""
    _, rel = split_revision(path)
    return rel is None or rel.split("/", 1)[0] in RESERVED_NAMES


@dataclass(frozen=True)
class ModelPlan:
    """One model's action, with everything its executor needs and nothing it has to decide."""

    name: str  # the directory on the target
    repo_id: str
    action: Action
    commit: str | None = None
    files: tuple[FileRecord, ...] = ()  # what the revision holds when done
    fetch: tuple[FileRecord, ...] = ()  # absent or the wrong size: transferred
    check: tuple[FileRecord, ...] = ()  # present in the revision at the right size but not vouched for: hashed
    link: tuple[tuple[FileRecord, str], ...] = ()  # vouched for by another revision (path below the model dir)
    leftovers: tuple[str, ...] = ()  # in the revision being written, not in the commit: removed
    revision: str | None = None  # the revision directory written (or current, when UP_TO_DATE)
    previous: str | None = None  # the revision kept beside it once it is current
    retire: tuple[str, ...] = ()  # revisions removed once the pointer moved
    held_files: int = 0
    held_bytes: int = 0
    reason: str | None = None  # why FAILED, or what REPAIR found
    entry: ModelEntry | None = None  # None for PRUNE

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def fetch_bytes(self) -> int:
        return sum(f.size for f in self.fetch)

    def to_wire(self) -> dict[str, Any]:
        """Plain values for a container: the plan crosses the wire as JSON-able data."""
        entry = self.entry
        return {
            "name": self.name,
            "repo_id": self.repo_id,
            "action": self.action.value,
            "commit": self.commit,
            "files": [[f.path, f.size, f.hash] for f in self.files],
            "fetch": [f.path for f in self.fetch],
            "check": [f.path for f in self.check],
            "link": [[f.path, source] for f, source in self.link],
            "leftovers": list(self.leftovers),
            "revision": self.revision,
            "previous": self.previous,
            "retire": list(self.retire),
            "held_files": self.held_files,
            "held_bytes": self.held_bytes,
            "reason": self.reason,
            "entry": None if entry is None else entry.to_wire(),
        }

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> ModelPlan:
        files = tuple(FileRecord(str(p), int(s), str(h)) for p, s, h in data["files"])
        by_path = {f.path: f for f in files}
        entry = None if data["entry"] is None else ModelEntry.from_wire(data["entry"])
        return cls(
            name=data["name"],
            repo_id=data["repo_id"],
            action=Action(data["action"]),
            commit=data["commit"],
            files=files,
            fetch=tuple(by_path[p] for p in data["fetch"]),
            check=tuple(by_path[p] for p in data["check"]),
            link=tuple((by_path[p], str(source)) for p, source in data["link"]),
            leftovers=tuple(data["leftovers"]),
            revision=data["revision"],
            previous=data["previous"],
            retire=tuple(data["retire"]),
            held_files=int(data["held_files"]),
            held_bytes=int(data["held_bytes"]),
            reason=data["reason"],
            entry=entry,
        )


@dataclass(frozen=True)
class Orphan:
    """A top-level name no entry of the list owns; `repo_id` is set when it holds one of our manifests."""

    name: str
    files: int
    bytes: int
    repo_id: str | None = None


@dataclass(frozen=True)
class Plan:
    models: tuple[ModelPlan, ...]
    orphans: tuple[Orphan, ...] = ()  # left alone: unknown directories, and dropped models when not pruning
    prune_refused: str | None = None  # why --prune was not planned, when it was asked for


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


def plan_model(entry: ModelEntry, answer: HubAnswer | str, held: HeldModel | None) -> ModelPlan:
    """The action for one entry, from the lock's (or the Hub's) answer and what the target holds.

    The current revision is never written to: anything that changes goes to a revision directory
    beside it, which the pointer names only once it is complete.
    """
    base = ModelPlan(
        name=entry.dirname,
        repo_id=entry.repo_id,
        action=Action.FAILED,
        commit=answer.commit if isinstance(answer, HubAnswer) else entry.pinned_commit,
        held_files=held.file_count if held else 0,
        held_bytes=held.bytes if held else 0,
        entry=entry,
    )
    if held is not None and held.kind is not Kind.DIRECTORY:
        return replace(
            base,
            reason=f"{entry.dirname} is a {held.kind.value}, not a directory; the cache writes only real directories "
            f"inside the target: move it away",
        )
    if isinstance(answer, str):
        return replace(base, reason=answer)

    revisions = dict(held.revisions) if held else {}
    pointer = held.pointer if held else None
    current = held.current if held else None
    if current is not None and (current.manifest is None or current.manifest.repo_id != entry.repo_id):
        current = None if current.manifest is not None else current  # another repo's files vouch for nothing here
    current_name = current.name if current is not None else None
    current_good = current is not None and current.complete and not current.damaged
    if (
        pointer is not None
        and current_good
        and manifest_matches(current.manifest if current else None, entry, answer.commit)
    ):
        return replace(base, action=Action.UP_TO_DATE, files=answer.files, revision=current_name)

    # What readers may still be loading stays: the current revision if it is sound (the layout before
    # revisions included, for readers of that version), else the one kept before it.
    if current_good or (pointer is not None and current is not None):
        previous = current_name  # a reader may have just found it: it is never removed under that reader
    elif pointer is not None:
        previous = pointer.previous if pointer.previous in revisions else None
    else:
        previous = None
    ours = {name: r for name, r in revisions.items() if r.manifest is not None and r.manifest.repo_id == entry.repo_id}
    sources = [r for r in (current, revisions.get(previous or ""), *ours.values()) if r is not None and r.name in ours]
    work = _work_revision(answer.commit, revisions, {n for n in (current_name, previous) if n is not None})
    in_work = dict(revisions[work].files) if work in revisions else {}
    unvouched = [r for name, r in sorted(revisions.items()) if r.manifest is None and name != work]

    # A file found damaged is fetched: the same bytes elsewhere on the target may be the same damaged inode.
    damaged = current.damaged if current is not None else frozenset()
    fetch, check, link = [], [], []
    for record in answer.files:
        if in_work.get(record.path) == record.size:
            check.append(record)
        elif "*" in damaged or record.path in damaged:
            fetch.append(record)
        elif (source := next((s for s in sources if s.good(record)), None)) is not None:
            link.append((record, _below_model(source.name, record.path)))
        elif (source := next((s for s in unvouched if s.files.get(record.path) == record.size), None)) is not None:
            # Bytes of the right size that no manifest vouches for: linked, then hashed before they count.
            link.append((record, _below_model(source.name, record.path)))
            check.append(record)
        else:
            fetch.append(record)
    wanted = {f.path for f in answer.files}
    keep = {work, previous}
    # The pointer's commit again: what readers load is broken, not out of date.
    repairing = (
        pointer is not None
        and (pointer.repo_id, pointer.commit) == (entry.repo_id, answer.commit)
        and (current is None or current.manifest is None or manifest_matches(current.manifest, entry, answer.commit))
    )
    if repairing:
        gone = [f.path for f in fetch] or sorted(current.damaged if current else ())
        reason = f"current revision damaged or incomplete: {shorten(gone) or 'no manifest'}"
    elif pointer is None and LEGACY in revisions and not fetch and not check:
        reason = "adopting the files already in place (the layout before revisions): nothing to download"
    else:
        reason = None
    return replace(
        base,
        action=Action.REPAIR if repairing else Action.FETCH,
        files=answer.files,
        fetch=tuple(fetch),
        check=tuple(check),
        link=tuple(link),
        leftovers=tuple(sorted(p for p in in_work if p not in wanted)),
        revision=work,
        previous=previous,
        retire=tuple(sorted(name for name in revisions if name not in keep)),
        reason=reason,
    )


def _work_revision(commit: str, revisions: Mapping[str, HeldRevision], in_use: set[str]) -> str:
    """Where a new revision is written: an unfinished one for this commit (a resume), else a fresh name."""
    for name, revision in sorted(revisions.items()):
        if name != LEGACY and name not in in_use and revision.manifest is None and name.split(".")[0] == commit:
            return name
    name, n = commit, 0
    while name in revisions or name in in_use:
        n += 1
        name = f"{commit}.{n}"
    return name


def _below_model(revision: str, path: str) -> str:
    return path if revision == LEGACY else f"{REVISIONS_DIR}/{revision}/{path}"


def orphans(held: Mapping[str, HeldModel], catalog: Catalog) -> list[Orphan]:
    """Top-level names no entry owns; those holding our manifest for a repo the list no longer names carry it."""
    owned = {m.dirname for m in catalog.models}
    listed = {m.repo_id for m in catalog.models}
    found = []
    for name in sorted(set(held) - owned):
        item = held[name]
        repo_id = item.repo_id if item.kind is Kind.DIRECTORY else None
        dropped = repo_id if repo_id is not None and repo_id not in listed else None
        found.append(Orphan(name, item.file_count, item.bytes, dropped))
    return found


def plan_run(
    entries: Sequence[ModelEntry],
    answers: Mapping[str, HubAnswer | str],
    held: Mapping[str, HeldModel],
    catalog: Catalog,
    *,
    prune: bool,
) -> Plan:
    """The whole run: one plan per selected entry, then what the list does not own (pruned, or reported).

    A prune is planned only when every model of the list (selected or not) has an answer that is not a
    failure: a list with a typo must never make a listed model look dropped and empty the volume.
    """
    models = [plan_model(e, answers[e.repo_id], held.get(e.dirname)) for e in entries]
    left = orphans(held, catalog)
    if not prune:
        return Plan(models=tuple(models), orphans=tuple(left))
    unresolved = [m.repo_id for m in catalog.models if not isinstance(answers.get(m.repo_id), HubAnswer)]
    if unresolved:
        refused = f"not pruning: {shorten(unresolved)} did not resolve; fix the model list and run again"
        return Plan(models=tuple(models), orphans=tuple(left), prune_refused=refused)
    pruned = [
        ModelPlan(
            name=o.name,
            repo_id=o.repo_id,
            action=Action.PRUNE,
            held_files=o.files,
            held_bytes=o.bytes,
            reason="no longer in the model list",
        )
        for o in left
        if o.repo_id is not None
    ]
    return Plan(models=tuple(models + pruned), orphans=tuple(o for o in left if o.repo_id is None))


def shorten(items: Iterable[str], limit: int = 5) -> str:
    listed = list(items)
    shown = ", ".join(listed[:limit])
    return shown if len(listed) <= limit else f"{shown} ({len(listed) - limit} more)"


def row_for(plan: ModelPlan, location: str, status: Status, seconds: float = 0.0, error: str | None = None) -> ModelRow:
    """The summary row of a planned or applied model: the same numbers whichever target carried it out."""
    pruned = plan.action is Action.PRUNE
    return ModelRow(
        repo_id=plan.repo_id,
        path=f"{location.rstrip('/')}/{plan.name}",
        status=status,
        commit=plan.commit,
        files=plan.held_files if pruned else len(plan.files),
        bytes=plan.held_bytes if pruned else plan.total_bytes,
        seconds=seconds,
        error=error if error is not None else (plan.reason if plan.action is Action.FAILED else None),
        fetch_bytes=plan.fetch_bytes,
        note=None if plan.action is Action.FAILED else plan.reason,
    )


PLANNED_STATUS = {
    Action.UP_TO_DATE: Status.UP_TO_DATE,
    Action.FETCH: Status.FETCH,
    Action.REPAIR: Status.REPAIR,
    Action.PRUNE: Status.PRUNE,
    Action.FAILED: Status.FAILED,
}
DONE_STATUS = {
    Action.UP_TO_DATE: Status.UP_TO_DATE,
    Action.FETCH: Status.DOWNLOADED,
    Action.REPAIR: Status.REPAIRED,
    Action.PRUNE: Status.PRUNED,
    Action.FAILED: Status.FAILED,
}
