"""The state `list` shows of each model, and what a reader would load, from what the target holds.

`plan_model` and `model_state` read the same facts the same way: one table of target states in
tests/test_plan.py drives both, so `list` and `download` cannot disagree about a model.
"""

from __future__ import annotations

from modal_jobs.decide.facts import HeldModel, HeldRevision, HubAnswer, Kind, manifest_matches, missing_or_resized
from modal_jobs.decide.model_plan import not_writable
from modal_jobs.errors import ModelFailed
from modal_jobs.messages import DOWNLOAD_COMMAND
from modal_jobs.model_dir import LEGACY
from modal_jobs.model_list import ModelEntry
from modal_jobs.summary import Status, human_bytes


def model_state(held: HeldModel | None, entry: ModelEntry, commit: str | None) -> Status:
    """`missing`, `incomplete` (no complete current revision), `stale` (complete at another commit), `complete`,
    or `failed` (something a download refuses to write through stands at its name: `not_writable` says what).

    `commit=None`: the commit it should be at is unknown; a complete model is then `complete`.
    """
    if held is None:
        return Status.MISSING
    if not_writable(entry, held) is not None:
        return Status.FAILED
    current = held.current if held.kind is Kind.DIRECTORY and held.repo_id == entry.repo_id else None
    if current is None or not current.complete or current.damaged:
        return Status.INCOMPLETE
    return Status.COMPLETE if manifest_matches(current.manifest, entry, commit) else Status.STALE


def known_commit(answer: HubAnswer | str | ModelFailed | None) -> str | None:
    """The commit a model should be at, from the lock's answer or the Hub's; None when that is unknown."""
    if isinstance(answer, HubAnswer):
        return answer.commit
    return answer if isinstance(answer, str) else None


def listed_current(held: HeldModel | None, entry: ModelEntry) -> HeldRevision | None:
    """The revision readers load, when the cache wrote this entry's repo at the name."""
    return held.current if held is not None and held.repo_id == entry.repo_id else None


def complete_current(held: HeldModel | None, entry: ModelEntry) -> bool:
    """The cache wrote this entry's repo here, and what readers load is complete (at some commit)."""
    current = (
        held.current if held is not None and held.kind is Kind.DIRECTORY and held.repo_id == entry.repo_id else None
    )
    return current is not None and current.complete


def revisions_note(held: HeldModel) -> str | None:
    """The current and kept revisions with their bytes, as `list` shows them."""
    current = held.current
    pointer = held.pointer
    if current is None or current.manifest is None:
        return None
    if pointer is None:
        return "the layout before revisions: the next download adopts it, downloading nothing"
    parts = [f"current {current.manifest.commit[:7]} ({human_bytes(current.bytes)})"]
    kept = held.revisions.get(pointer.previous or "")
    if kept is not None and kept.manifest is not None:
        where = " in place" if kept.name == LEGACY else ""
        parts.append(f"kept {kept.manifest.commit[:7]}{where} ({human_bytes(kept.bytes)})")
    return ", ".join(parts)


def loadable(held: HeldModel | None, repo_id: str, commit: str | None, where: str) -> HeldRevision | str:
    """The revision `reader.model_path` would return for `repo_id`, or its refusal as one line naming the fix.

    Decided from the facts `list` reads (the pointer, the manifest, file sizes), so that `path` can
    answer for the volume from this machine, with no container. `where`: the model's directory as
    readers see it, for the message.
    """
    fix = f"run `{DOWNLOAD_COMMAND}`"
    if held is None or held.kind is not Kind.DIRECTORY:
        return f"{repo_id}: absent ({where} is not a model directory); {fix} to cache it"
    current = held.current
    manifest = current.manifest if current is not None else None
    if current is None or manifest is None or manifest.repo_id != repo_id:
        return f"{repo_id}: incomplete at {where} (no manifest for it); {fix} to finish it"
    if commit is not None and manifest.commit != commit:
        return (
            f"{repo_id}: {where} holds commit {manifest.commit[:12]}, not {commit[:12]} as asked; "
            f"{fix} with the lock that names {commit[:12]}, or ask for {manifest.commit[:12]}"
        )
    bad = missing_or_resized(manifest, current.files)
    if bad:
        return f"{repo_id}: incomplete at {where}: {bad[0].path} is missing or resized; {fix} to repair it"
    return current
