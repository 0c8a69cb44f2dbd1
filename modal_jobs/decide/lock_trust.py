"""Whether a lock's entry is what the Hub serves for its revision: the decision behind `plan`'s lock audit.

A pull request can change models.lock alone and name any commit the Hub serves by its hash (one on a
Hub pull request's `refs/pr/N`, an old one, another branch's), with that commit's files and a digest
computed anew. Such an entry is trusted for a merge only when the Hub's history of the entry's
revision reaches the commit (it is the head or an ancestor) and the Hub's tree at that commit is the
locked file list. A revision that is a commit hash must be that very commit. Entries the base lock
already holds unchanged were checked when they were merged and are not asked about again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from modal_jobs.decide.facts import HubAnswer
from modal_jobs.errors import ModelFailed
from modal_jobs.messages import LOCK_COMMAND, shorten
from modal_jobs.model_dir import FileRecord
from modal_jobs.model_list import ModelEntry

FIX = f"write it with `{LOCK_COMMAND}` against the Hub (or `-- --upgrade` to move to the revision's head)"


def changed_entries(
    entries: Sequence[ModelEntry],
    answers: Mapping[str, HubAnswer | ModelFailed],
    base: Mapping[str, HubAnswer],
) -> list[ModelEntry]:
    """The entries whose lock is new or differs from the base lock's (commit or files): the ones to audit."""
    chosen = []
    for entry in entries:
        answer = answers.get(entry.repo_id)
        if not isinstance(answer, HubAnswer):
            continue  # nothing locked to trust: the plan already fails (or skips) it
        before = base.get(entry.repo_id)
        if before is None or before.commit != answer.commit or set(before.files) != set(answer.files):
            chosen.append(entry)
    return chosen


def pin_disagreement(entry: ModelEntry, locked: HubAnswer) -> str | None:
    """A revision that is a commit hash locks exactly that commit."""
    if entry.pinned_commit is not None and entry.pinned_commit != locked.commit:
        return f"models.lock names commit {locked.commit}, but models.toml pins revision {entry.pinned_commit}; {FIX}"
    return None


def history_disagreement(entry: ModelEntry, locked: HubAnswer, history: Sequence[str]) -> str | None:
    """The locked commit must be the revision's head on the Hub or one of its ancestors; `history` is newest first."""
    if locked.commit in history:
        return None
    head = history[0][:12] if history else "none"
    return (
        f"models.lock names commit {locked.commit[:12]}, which is not in the history of revision "
        f"{entry.revision!r} on the Hub (its head is {head}): a commit of another branch or a Hub pull request "
        f"is not what models.toml follows; {FIX}"
    )


def files_disagreement(locked: HubAnswer, hub_files: Sequence[FileRecord]) -> str | None:
    """The locked file list must be the Hub's tree at the locked commit, path, size and hash."""
    mine = {f.path: f for f in locked.files}
    theirs = {f.path: f for f in hub_files}
    problems = [
        f"{path} ({'not on the Hub' if path not in theirs else 'not in the lock' if path not in mine else 'differs'})"
        for path in sorted(mine.keys() | theirs.keys())
        if mine.get(path) != theirs.get(path)
    ]
    if not problems:
        return None
    return (
        f"models.lock's files for commit {locked.commit[:12]} are not the Hub's tree at that commit: "
        f"{shorten(problems, 3)}; {FIX}"
    )
