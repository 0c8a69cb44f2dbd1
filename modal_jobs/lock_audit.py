"""Ask the Hub whether the entries a lock changes are what it serves: `plan`'s audit of models.lock.

```
the lock's changed entries (decide.lock_trust.changed_entries)
  ─► per entry: the revision's commit history (GET /api/models/{id}/commits/{rev}, paged),
                the tree at the locked commit (the same listing `lock` uses, include/exclude applied)
  ─► decide.lock_trust: not in the history, or other files ─► LockNotTrusted, naming the entry and why
```

A pull request's check runs it (`plan --base-model-list`, model-plan.yml), so a lock that names a
commit the revision never reached, or files the Hub does not have there, fails before it can merge.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from functools import partial

from modal_jobs.decide.facts import HubAnswer
from modal_jobs.decide.lock_trust import changed_entries, files_disagreement, history_disagreement, pin_disagreement
from modal_jobs.errors import ModelFailed
from modal_jobs.hub import Hub
from modal_jobs.model_list import ModelEntry
from modal_jobs.waits import gather

log = logging.getLogger("modal_jobs")


class LockNotTrusted(ModelFailed):
    """models.lock says something of an entry that the Hub does not: the entry fails the plan."""


def audit_lock(
    entries: Sequence[ModelEntry],
    answers: Mapping[str, HubAnswer | ModelFailed],
    base: Mapping[str, HubAnswer],
    hub: Hub,
    cancel: threading.Event,
) -> dict[str, ModelFailed]:
    """Why each entry the lock changes (against `base`, the base branch's lock) cannot be trusted; absent when it can.

    A Hub error (a refused repo, a commit the Hub does not have) is the entry's failure too: a lock the
    Hub cannot vouch for is not trusted.
    """
    chosen = changed_entries(entries, answers, base)
    audited = gather({e.repo_id: partial(_audit_one, e, answers[e.repo_id], hub) for e in chosen}, cancel)
    failures = {repo_id: outcome for repo_id, outcome in audited.items() if isinstance(outcome, ModelFailed)}
    for repo_id, failure in failures.items():
        log.error("%s: %s", repo_id, failure)
    return failures


def _audit_one(entry: ModelEntry, locked: HubAnswer | ModelFailed, hub: Hub) -> None:
    assert isinstance(locked, HubAnswer)  # changed_entries takes only locked answers
    if (problem := pin_disagreement(entry, locked)) is not None:
        raise LockNotTrusted(problem)
    if entry.pinned_commit is None:
        history = hub.call(
            lambda: [c.commit_id for c in hub.api.list_repo_commits(entry.repo_id, revision=entry.revision)],
            f"{entry.repo_id}@{entry.revision}: list commits",
            entry,
        )
        if (problem := history_disagreement(entry, locked, history)) is not None:
            raise LockNotTrusted(problem)
    if (problem := files_disagreement(locked, hub.list_files(entry, locked.commit))) is not None:
        raise LockNotTrusted(problem)
