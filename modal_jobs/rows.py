"""The rows a summary is made of, built in one place from each decision and, once carried out, its outcome.

A plan's row says the action (`fetch`); the same model's row after the run says what was done
(`downloaded`), with the same numbers whichever target carried it out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from modal_jobs.decide.changes import Change
from modal_jobs.decide.facts import HeldModel, HubAnswer, manifest_matches
from modal_jobs.decide.model_plan import Action, ModelPlan, not_writable
from modal_jobs.decide.run_plan import Orphan
from modal_jobs.decide.states import listed_current, revisions_note
from modal_jobs.errors import ModelFailed
from modal_jobs.messages import LOCK_COMMAND, shorten
from modal_jobs.model_dir import Manifest
from modal_jobs.model_list import ModelEntry
from modal_jobs.models_lock import LockedModel
from modal_jobs.outcome import Outcome
from modal_jobs.summary import ModelRow, OrphanRow, Status

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


def target_path(target: str, name: str) -> str:
    """Where a top-level name of the target is, as rows show it."""
    return f"{target.rstrip('/')}/{name}"


def row_for(plan: ModelPlan, target: str, status: Status, seconds: float = 0.0, error: str | None = None) -> ModelRow:
    """The summary row of a planned or applied model: the same numbers whichever target carried it out."""
    pruned = plan.action is Action.PRUNE
    return ModelRow(
        repo_id=plan.repo_id,
        path=target_path(target, plan.name),
        status=status,
        commit=plan.commit,
        files=plan.held_files if pruned else len(plan.files),
        bytes=plan.held_bytes if pruned else plan.total_bytes,
        seconds=seconds,
        error=error if error is not None else (plan.reason if plan.action is Action.FAILED else None),
        fetch_bytes=plan.fetch_bytes,
        note=None if plan.action is Action.FAILED else plan.reason,
    )


def applied_row(plan: ModelPlan, target: str, outcome: Outcome | None) -> ModelRow:
    """A model's row after the run: its plan carried out (or failed), or, without an outcome, nothing to carry out."""
    if outcome is None:
        return row_for(plan, target, DONE_STATUS[plan.action])
    status = Status.FAILED if outcome.failed else DONE_STATUS[plan.action]
    return row_for(plan, target, status, outcome.seconds, outcome.error)


def unverifiable_row(entry: ModelEntry, path: str, held: HeldModel | None, seconds: float = 0.0) -> ModelRow:
    """The verify row of a model with nothing to hash: `missing`, `incomplete` (no manifest of its repo), or
    `failed` (a file or link stands at its name, which download refuses too)."""
    if held is None:
        return ModelRow(entry.repo_id, path, Status.MISSING, seconds=seconds, error="missing: run download to fetch it")
    refused = not_writable(entry, held)
    status, error = (
        (Status.FAILED, refused)
        if refused
        else (Status.INCOMPLETE, "incomplete (no manifest): run download to fetch it")
    )
    return ModelRow(entry.repo_id, path, status, None, held.file_count, held.bytes, seconds, error)


def verified_row(
    repo_id: str,
    path: str,
    manifest: Manifest,
    bad: Sequence[tuple[str, str]],
    seconds: float,
    unmarked: str | None = None,
) -> ModelRow:
    """A verified model: `ok`, or `damaged` naming each bad file and why (and that it could not be marked)."""
    row = ModelRow(repo_id, path, Status.OK, manifest.commit, len(manifest.files), manifest.total_bytes, seconds)
    if not bad:
        return row
    error = (
        f"{len(bad)} damaged file(s): {shorten([f'{rel} ({problem})' for rel, problem in bad])}; run download to repair"
    )
    return replace(row, status=Status.DAMAGED, error=error if unmarked is None else f"{error} ({unmarked})")


def unchecked_row(repo_id: str, path: str, manifest: Manifest | None, error: str) -> ModelRow:
    """A model verify could not check: its container failed. It fails the run, and says nothing of the files."""
    if manifest is None:
        return ModelRow(repo_id, path, Status.FAILED, error=error)
    files, size = len(manifest.files), manifest.total_bytes
    return ModelRow(repo_id, path, Status.FAILED, manifest.commit, files, size, error=error)


def orphan_row(orphan: Orphan, target: str) -> OrphanRow:
    return OrphanRow(orphan.name, target_path(target, orphan.name), orphan.files, orphan.bytes, orphan.repo_id)


def list_row(
    entry: ModelEntry,
    held: HeldModel | None,
    state: Status,
    answer: HubAnswer | str | ModelFailed | None,
    target: str,
) -> ModelRow:
    """A model as `list` shows it: its state, and the revision readers load (files, bytes, commit)."""
    current = listed_current(held, entry)
    if current is not None:
        files, size = len(current.files), current.bytes
    else:
        files, size = (held.file_count, held.bytes) if held is not None else (0, 0)
    return ModelRow(
        entry.repo_id,
        target_path(target, entry.dirname),
        state,
        current.manifest.commit if current is not None and current.manifest else None,
        files,
        size,
        # Offline or refused: the row says what is on the target, and why staleness is unknown.
        error=not_writable(entry, held) or unknown_commit(answer),
        note=revisions_note(held) if held is not None and current is not None else None,
    )


def unknown_commit(answer: HubAnswer | str | ModelFailed | None) -> str | None:
    """Why `list` cannot say whether a model is stale, when the Hub did not answer."""
    return f"could not check for a newer commit: {answer}" if isinstance(answer, ModelFailed) else None


def cleared_row(name: str, owner: str, held: HeldModel, target: str, *, dry_run: bool) -> ModelRow:
    """A directory `clear` removed (or, with --dry-run, would remove)."""
    status = Status.WOULD_REMOVE if dry_run else Status.REMOVED
    return ModelRow(owner, target_path(target, name), status, None, held.file_count, held.bytes)


def change_row(change: Change, target: str) -> ModelRow:
    """A model of the `plan` diff."""
    return ModelRow(
        change.repo_id,
        target_path(target, change.name),
        change.status,
        change.commit,
        change.files,
        change.bytes,
        error=change.error,
        fetch_bytes=change.fetch_bytes,
        note=change.note,
    )


def against_lock(
    row: ModelRow, entry: ModelEntry, held: HeldModel | None, wanted: HubAnswer | ModelFailed | None
) -> ModelRow:
    """A verified model that is sound but not what models.lock names (its commit, or the list's globs) is `stale`:
    that fails verify too. Without the lock's answer only the globs are compared."""
    current = listed_current(held, entry)
    manifest = current.manifest if current is not None else None
    commit = wanted.commit if isinstance(wanted, HubAnswer) else None
    if row.status is not Status.OK or manifest is None or manifest_matches(manifest, entry, commit):
        return row
    if commit is not None and manifest.commit != commit:
        error = f"at commit {manifest.commit[:12]}, models.lock names {commit[:12]}; run download"
    else:
        error = "its files were chosen with other include/exclude globs than models.toml names; run download"
    return replace(row, status=Status.STALE, error=error)


def lock_row(entry: ModelEntry, before: LockedModel | None, answer: HubAnswer | str | None, path: str) -> ModelRow:
    """An entry as `lock` left it: added, changed (with how), unchanged, or failed to resolve (`answer` says why)."""
    if isinstance(answer, str):
        return ModelRow(entry.repo_id, path, Status.FAILED, before.commit if before else None, error=answer)
    now = LockedModel.of(entry, answer) if answer is not None else before
    assert now is not None, "an entry the lock lacks is always resolved"
    status = Status.ADDED if before is None else Status.UNCHANGED if now == before else Status.CHANGED
    note = None
    if before is not None and now != before:
        changed = {f.path for f in set(now.files) ^ set(before.files)}
        note = f"commit {before.commit[:12]} → {now.commit[:12]}, {len(changed)} file(s) changed"
    return ModelRow(entry.repo_id, path, status, now.commit, len(now.files), now.total_bytes, note=note)


def checked_lock_row(entry: ModelEntry, model: LockedModel | None, path: str) -> ModelRow:
    """An entry as `lock --check` finds it: failing where the lock does not stand for it."""
    why = "not in the lock" if model is None else model.disagreement(entry)
    status = Status.UNCHANGED if why is None else Status.ADDED if model is None else Status.CHANGED
    error = None if why is None else f"{why}; run `{LOCK_COMMAND}`"
    return ModelRow(entry.repo_id, path, status, model.commit if model else None, error=error)


def unlisted_lock_row(gone: LockedModel, path: str, *, check: bool) -> ModelRow:
    """A model the lock has and the list no longer names: `lock` drops it, `lock --check` fails on it."""
    if check:
        error = f"no longer in models.toml; run `{LOCK_COMMAND}`"
        return ModelRow(gone.repo_id, path, Status.DROPPED, gone.commit, error=error)
    return ModelRow(gone.repo_id, path, Status.DROPPED, gone.commit, len(gone.files), gone.total_bytes)
