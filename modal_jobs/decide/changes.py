"""What merging a changed model list would do, against its base: the decision behind `plan`.

The new side is what models.lock (or the Hub, for entries the lock lacks) says of each entry; the
base side is the lock beside the base list when there is one, else the Hub. A base without a lock
beside a list with one is a fork's first lock: the cache has downloaded nothing yet (it refuses to
run without a lock), so every model is `added`, with all its bytes. Both are gathered
before anything here runs, and so is whether a Hub token is set: a fork's pull request has none,
and a repo the Hub refuses for that reason is `not-checked`, not failed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from modal_jobs.decide.facts import HeldModel, HubAnswer, as_facts
from modal_jobs.decide.model_plan import Action, ModelPlan
from modal_jobs.decide.run_plan import plan_run
from modal_jobs.errors import ModelFailed
from modal_jobs.hub_errors import AccessDenied
from modal_jobs.model_list import ModelEntry, ModelList
from modal_jobs.summary import Status, human_bytes

FIRST_LOCK = "first lock: the base has no models.lock, so the merge downloads it"


@dataclass(frozen=True)
class BaseFacts:
    """What is known of the base list: its entries, its lock, and what the Hub said of the entries it had to ask."""

    entries: Mapping[str, ModelEntry]  # by repo_id
    locked: Mapping[str, HubAnswer]  # the base lock's answer for each entry it still stands for
    was_at: Mapping[str, str | ModelFailed]  # the commit a revised entry the lock does not cover resolved to
    leaving: Mapping[str, HubAnswer | ModelFailed]  # what each entry the list removes resolves to
    # The base has no models.lock and the list has one: its first lock, whose merge downloads every model.
    first_lock: bool = False


@dataclass(frozen=True)
class Change:
    """What the merge does to one model: added, changed, unchanged, removed, failed or not checked."""

    repo_id: str
    name: str  # the directory on the target
    status: Status
    commit: str | None
    files: int = 0
    bytes: int = 0
    fetch_bytes: int = 0  # what the merge transfers (less what the target, if given, already holds)
    note: str | None = None
    error: str | None = None


def revised_bases(
    entries: Sequence[ModelEntry], base: Mapping[str, ModelEntry], locked: Mapping[str, HubAnswer]
) -> list[ModelEntry]:
    """Base entries whose revision the list changes and the base lock does not cover: the Hub says where they were."""
    return [
        old
        for e in entries
        if (old := base.get(e.repo_id)) is not None and old.revision != e.revision and old.repo_id not in locked
    ]


def dropped_bases(model_list: ModelList, base: Mapping[str, ModelEntry]) -> list[ModelEntry]:
    """Base entries the list no longer names, in the base's order."""
    listed = {e.repo_id for e in model_list.models}
    return [old for old in base.values() if old.repo_id not in listed]


def merge_changes(
    entries: Sequence[ModelEntry],
    model_list: ModelList,
    answers: Mapping[str, HubAnswer | ModelFailed],
    base: BaseFacts,
    held: Mapping[str, HeldModel] | None,
    *,
    has_token: bool,
) -> list[Change]:
    """One change per selected entry, then one per model the list removes.

    `held=None`: no target was given. With one, what it already holds is subtracted from what the
    merge transfers, and each row says what a download would do there.
    """
    plans = {m.repo_id: m for m in plan_run(entries, as_facts(answers), held or {}, model_list, prune=False).models}
    changes = [
        entry_change(
            entry,
            base,
            answers[entry.repo_id],
            plans[entry.repo_id],
            on_target=held is not None,
            has_token=has_token,
        )
        for entry in entries
    ]
    for old in dropped_bases(model_list, base.entries):
        item = held.get(old.dirname) if held is not None else None
        changes.append(dropped_change(old, base.leaving[old.repo_id], item, on_target=held is not None))
    return changes


def entry_change(
    entry: ModelEntry,
    base: BaseFacts,
    answer: HubAnswer | ModelFailed,
    plan: ModelPlan,
    *,
    on_target: bool,
    has_token: bool,
) -> Change:
    """An entry of the list against its base entry (if any): what changed, and what the merge transfers."""
    if isinstance(answer, ModelFailed):
        denied = isinstance(answer, AccessDenied) and not has_token
        return Change(
            entry.repo_id,
            entry.dirname,
            Status.NOT_CHECKED if denied else Status.FAILED,
            entry.pinned_commit,
            error=None if denied else str(answer),
            note="not checked: needs HF_TOKEN" if denied else None,
        )
    old = base.entries.get(entry.repo_id)
    changes = _entry_changes(old, entry) if old is not None else []
    if base.first_lock:
        changes.insert(0, FIRST_LOCK)
    before = base.locked.get(entry.repo_id)
    if before is not None and before.commit != answer.commit:
        moved = {f.path for f in set(before.files) ^ set(answer.files)}
        changes.append(f"commit {before.commit[:12]} → {answer.commit[:12]}, {len(moved)} file(s) changed")
    elif entry.repo_id in base.was_at:
        changes.append(_was_at(base.was_at[entry.repo_id]))
    status = Status.ADDED if old is None or base.first_lock else Status.CHANGED if changes else Status.UNCHANGED
    if on_target:
        fetch = plan.fetch_bytes
    elif status is Status.UNCHANGED:
        fetch = 0
    else:
        # Without a target: files the base revision already has are linked, not transferred.
        known = {f.hash for f in before.files} if before is not None else set()
        fetch = sum(f.size for f in answer.files if f.hash not in known)
    note = "; ".join(changes) or None
    if on_target and plan.action is not Action.FAILED:
        note = "; ".join(filter(None, [note, f"on the target: {plan.action.value}"]))
    return Change(entry.repo_id, entry.dirname, status, answer.commit, len(plan.files), plan.total_bytes, fetch, note)


def dropped_change(
    old: ModelEntry, answer: HubAnswer | ModelFailed, item: HeldModel | None, *, on_target: bool
) -> Change:
    """A model the list removes: the commit its base entry resolves to, and the files and bytes that leave with it."""
    notes = []
    if isinstance(answer, ModelFailed):
        commit, files, size = old.pinned_commit, 0, 0
        notes.append(f"the base entry did not resolve, so what leaves is unknown: {answer}")
    else:
        commit, files, size = answer.commit, len(answer.files), sum(f.size for f in answer.files)
    if not on_target:
        notes.append("download --prune removes it from the volume")
    elif item is None:
        notes.append("not on the target")
    else:
        notes.append(
            f"on the target: {item.file_count} file(s), {human_bytes(item.bytes)}; download --prune removes them"
        )
    return Change(old.repo_id, old.dirname, Status.DROPPED, commit, files, size, note="; ".join(notes))


def _entry_changes(old: ModelEntry, new: ModelEntry) -> list[str]:
    changes = []
    if old.revision != new.revision:
        changes.append(f"revision {old.revision} → {new.revision}")
    if old.include != new.include:
        changes.append(f"include {_globs(old.include)} → {_globs(new.include)}")
    if old.exclude != new.exclude:
        changes.append(f"exclude {_globs(old.exclude)} → {_globs(new.exclude)}")
    if old.size != new.size:
        changes.append(f"size {old.size or 'shared'} → {new.size or 'shared'}")
    return changes


def _was_at(commit: str | ModelFailed) -> str:
    if isinstance(commit, ModelFailed):
        return f"base revision did not resolve ({commit})"
    return f"was at commit {commit[:7]}"


def _globs(globs: tuple[str, ...] | None) -> str:
    return "all files" if globs is None else "[" + ", ".join(globs) + "]"
