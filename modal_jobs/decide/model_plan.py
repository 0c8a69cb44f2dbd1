"""One model's plan: what a download must do to it, decided once, as data, before any byte moves.

```
the entry ──────────┐
the Hub's answer ───┼──► plan_model() ──► ModelPlan ──► shown (--dry-run, `plan`, the PR summary)
what the target holds┘                              └──► applied (local directory, or one container per model)
```

A container is handed the plan, commit included, and never resolves a revision again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from modal_jobs.decide.facts import HeldModel, HeldRevision, HubAnswer, Kind, manifest_matches
from modal_jobs.messages import shorten
from modal_jobs.model_dir import LEGACY, REVISIONS_DIR, FileRecord, Pointer
from modal_jobs.model_list import ModelEntry


class Action(StrEnum):
    UP_TO_DATE = "up-to-date"  # the current revision is complete at the commit, with every file at its size
    FETCH = "fetch"  # a new revision: absent, at another commit or with other globs, or adopting the old layout
    REPAIR = "repair"  # the current revision's commit, rewritten beside it: files missing, resized or damaged
    PRUNE = "prune"  # a model directory of ours that the list no longer names
    FAILED = "failed"  # cannot be planned: the Hub refused, or the target holds something we must not touch


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
    replaces: str | None = None  # the revision the pointer named when planned: another one means another run
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

    @property
    def link_bytes(self) -> int:
        return sum(f.size for f, _ in self.link)

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
            "replaces": self.replaces,
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
            replaces=data["replaces"],
            retire=tuple(data["retire"]),
            held_files=int(data["held_files"]),
            held_bytes=int(data["held_bytes"]),
            reason=data["reason"],
            entry=entry,
        )


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
    refusal = not_writable(entry, held)
    if refusal is not None:
        return replace(base, reason=refusal)
    if isinstance(answer, str):
        return replace(base, reason=answer)
    revisions = dict(held.revisions) if held else {}
    pointer = held.pointer if held else None
    current = _current(held, entry)
    if (
        pointer is not None
        and current is not None
        and _sound(current)
        and manifest_matches(current.manifest, entry, answer.commit)
    ):
        return replace(base, action=Action.UP_TO_DATE, files=answer.files, revision=current.name)
    return _plan_revision(base, entry, answer, revisions, pointer, current)


def not_writable(entry: ModelEntry, held: HeldModel | None) -> str | None:
    """Why the cache must not write at the entry's name, when something other than a real directory stands there."""
    if held is None or held.kind is Kind.DIRECTORY:
        return None
    return (
        f"{entry.dirname} is a {held.kind.value}, not a directory; the cache writes only real directories "
        "inside the target: move it away"
    )


def _current(held: HeldModel | None, entry: ModelEntry) -> HeldRevision | None:
    """The revision readers load, as far as it concerns this entry."""
    current = held.current if held else None
    if current is not None and current.manifest is not None and current.manifest.repo_id != entry.repo_id:
        return None  # another repo's files vouch for nothing here
    return current


def _sound(revision: HeldRevision | None) -> bool:
    return revision is not None and revision.complete and not revision.damaged


def _plan_revision(
    base: ModelPlan,
    entry: ModelEntry,
    answer: HubAnswer,
    revisions: Mapping[str, HeldRevision],
    pointer: Pointer | None,
    current: HeldRevision | None,
) -> ModelPlan:
    """A fetch or a repair: the revision directory to write, and where each of its files comes from."""
    current_name = current.name if current is not None else None
    previous = _kept(pointer, current, revisions)
    base = replace(base, replaces=pointer.revision if pointer is not None else None)
    ours = {name: r for name, r in revisions.items() if r.manifest is not None and r.manifest.repo_id == entry.repo_id}
    ready = _ready(answer, entry, ours, current_name)
    if ready is not None:
        return _point_at(base, answer, ready, previous, revisions)
    sources = [r for r in (current, revisions.get(previous or ""), *ours.values()) if r is not None and r.name in ours]
    work = _work_revision(answer.commit, revisions, {n for n in (current_name, previous) if n is not None})
    in_work = dict(revisions[work].files) if work in revisions else {}
    unvouched = [r for name, r in sorted(revisions.items()) if r.manifest is None and name != work]
    damaged = current.damaged if current is not None else frozenset()
    fetch, check, link = _file_origins(answer.files, in_work, damaged, sources, unvouched)
    wanted = {f.path for f in answer.files}
    keep = {work, previous}
    # The pointer's commit again: what readers load is broken, not out of date.
    repairing = (
        pointer is not None
        and (pointer.repo_id, pointer.commit) == (entry.repo_id, answer.commit)
        and (current is None or current.manifest is None or manifest_matches(current.manifest, entry, answer.commit))
    )
    if repairing:
        gone = [f.path for f in fetch] or sorted(damaged)
        reason: str | None = f"current revision damaged or incomplete: {shorten(gone) or 'no manifest'}"
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


def _ready(answer: HubAnswer, entry: ModelEntry, ours: Mapping[str, HeldRevision], current: str | None) -> str | None:
    """A revision other than the current one that already is what the plan would write (a rollback, or an
    update whose pointer a stopped run did not move): the plan only points at it."""
    for name, revision in sorted(ours.items()):
        if (
            name not in (current, LEGACY)
            and _sound(revision)
            and manifest_matches(revision.manifest, entry, answer.commit)
            and revision.manifest is not None
            and set(revision.manifest.files) == set(answer.files)
        ):
            return name
    return None


def _point_at(
    base: ModelPlan, answer: HubAnswer, ready: str, previous: str | None, revisions: Mapping[str, HeldRevision]
) -> ModelPlan:
    """A plan that writes no byte but the pointer: the revision is complete on the target already."""
    previous = None if previous == ready else previous
    keep = {ready, previous}
    return replace(
        base,
        action=Action.FETCH,
        files=answer.files,
        revision=ready,
        previous=previous,
        retire=tuple(sorted(name for name in revisions if name not in keep)),
        reason=f"revision {ready} is complete on the target already: only the pointer moves",
    )


def _kept(pointer: Pointer | None, current: HeldRevision | None, revisions: Mapping[str, HeldRevision]) -> str | None:
    """The revision kept beside the new one: what readers may still be loading.

    The current revision if it is sound (the layout before revisions included, for readers of that
    version), else the one kept before it. A reader may have just found it: it is never removed under that reader.
    """
    if _sound(current) or (pointer is not None and current is not None):
        return current.name if current is not None else None
    if pointer is not None:
        return pointer.previous if pointer.previous in revisions else None
    return None


def _file_origins(
    files: Sequence[FileRecord],
    in_work: Mapping[str, int],
    damaged: frozenset[str],
    sources: Sequence[HeldRevision],
    unvouched: Sequence[HeldRevision],
) -> tuple[list[FileRecord], list[FileRecord], list[tuple[FileRecord, str]]]:
    """Where each file of the commit comes from: (fetched, hashed in place, linked from another revision)."""
    fetch, check, link = [], [], []
    for record in files:
        if in_work.get(record.path) == record.size:
            check.append(record)
        elif "*" in damaged or record.path in damaged:
            # A file found damaged is fetched: the same bytes elsewhere on the target may be the same damaged inode.
            fetch.append(record)
        elif (source := next((s for s in sources if s.good(record)), None)) is not None:
            link.append((record, _below_model(source.name, record.path)))
        elif (source := next((s for s in unvouched if s.files.get(record.path) == record.size), None)) is not None:
            # Bytes of the right size that no manifest vouches for: linked, then hashed before they count.
            link.append((record, _below_model(source.name, record.path)))
            check.append(record)
        else:
            fetch.append(record)
    return fetch, check, link


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
