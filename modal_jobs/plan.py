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
from typing import Any

from modal_jobs.catalog import Catalog, ModelEntry
from modal_jobs.model_dir import FileRecord, Manifest
from modal_jobs.summary import ModelRow, Status


class Action(StrEnum):
    UP_TO_DATE = "up-to-date"  # complete at the commit, every file present at its size
    FETCH = "fetch"  # absent, or complete at another commit or with other globs
    REPAIR = "repair"  # at the commit (or of unknown commit), but files are missing, resized or unverified
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
    """What the Hub says of one entry: the commit its revision points at, and that commit's files."""

    commit: str
    files: tuple[FileRecord, ...]


@dataclass(frozen=True)
class HeldModel:
    """What the target holds at one top-level name: its kind, the cache's manifest, and its files by size."""

    name: str
    kind: Kind
    manifest: Manifest | None = None
    files: Mapping[str, int] = field(default_factory=dict)  # relative path -> size, the cache's own state left out

    @property
    def bytes(self) -> int:
        return sum(size for size in self.files.values() if size > 0)


@dataclass(frozen=True)
class ModelPlan:
    """One model's action, with everything its executor needs and nothing it has to decide."""

    name: str  # the directory on the target
    repo_id: str
    action: Action
    commit: str | None = None
    files: tuple[FileRecord, ...] = ()  # what the directory holds when done
    fetch: tuple[FileRecord, ...] = ()  # absent or the wrong size: transferred
    check: tuple[FileRecord, ...] = ()  # present at the right size but not vouched for: hashed, fetched if wrong
    leftovers: tuple[str, ...] = ()  # on the target, not in the commit: removed
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
            "leftovers": list(self.leftovers),
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
            leftovers=tuple(data["leftovers"]),
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


def missing_or_resized(manifest: Manifest, held: HeldModel) -> tuple[FileRecord, ...]:
    """The manifest's files that the target does not hold as regular files of the recorded size."""
    return tuple(f for f in manifest.files if held.files.get(f.path) != f.size)


def plan_model(entry: ModelEntry, answer: HubAnswer | str, held: HeldModel | None) -> ModelPlan:
    """The action for one entry, from the Hub's answer (or why it failed) and what the target holds."""
    base = ModelPlan(
        name=entry.dirname,
        repo_id=entry.repo_id,
        action=Action.FAILED,
        commit=answer.commit if isinstance(answer, HubAnswer) else entry.pinned_commit,
        held_files=len(held.files) if held else 0,
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

    files = answer.files
    on_target = dict(held.files) if held else {}
    manifest = held.manifest if held else None
    if manifest_matches(manifest, entry, answer.commit):
        assert manifest is not None  # for mypy: manifest_matches checked it
        gone = missing_or_resized(manifest, held) if held else manifest.files
        if not gone:
            return replace(base, action=Action.UP_TO_DATE, files=manifest.files)
        # The rest is vouched for by the manifest: only what went missing is fetched.
        recorded = {f.path for f in manifest.files}
        return replace(
            base,
            action=Action.REPAIR,
            files=manifest.files,
            fetch=gone,
            leftovers=tuple(sorted(p for p in on_target if p not in recorded)),
            reason=f"{len(gone)} file(s) missing or resized: {shorten([f.path for f in gone])}",
        )

    wanted = {f.path for f in files}
    fetch = tuple(f for f in files if on_target.get(f.path) != f.size)
    check = tuple(f for f in files if on_target.get(f.path) == f.size)
    leftovers = tuple(sorted(p for p in on_target if p not in wanted))
    # Without a manifest the directory is a run that did not finish: same commit or not, it is repaired.
    incomplete = held is not None and manifest is None and bool(on_target)
    return replace(
        base,
        action=Action.REPAIR if incomplete else Action.FETCH,
        files=files,
        fetch=fetch,
        check=check,
        leftovers=leftovers,
        reason="no manifest: a run did not finish" if incomplete else None,
    )


def orphans(held: Mapping[str, HeldModel], catalog: Catalog) -> list[Orphan]:
    """Top-level names no entry owns; those holding our manifest for a repo the list no longer names carry it."""
    owned = {m.dirname for m in catalog.models}
    listed = {m.repo_id for m in catalog.models}
    found = []
    for name in sorted(set(held) - owned):
        item = held[name]
        manifest = item.manifest if item.kind is Kind.DIRECTORY else None
        dropped = manifest.repo_id if manifest is not None and manifest.repo_id not in listed else None
        found.append(Orphan(name, len(item.files), item.bytes, dropped))
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
