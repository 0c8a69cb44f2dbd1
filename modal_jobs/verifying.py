"""`verify` on a directory this process reads: re-hash each model's current revision against its manifest.

The same function runs on a local directory and inside a Modal container, on the volume. Damage
is recorded beside the revision (`mark_damaged`) for the next download, which writes a repaired
revision beside it; readers keep the revision they have until then.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path

from modal_jobs.decide.facts import HeldModel, HeldRevision
from modal_jobs.decide.selection import verifiable
from modal_jobs.disk import mark_damaged
from modal_jobs.errors import Cancelled
from modal_jobs.hashing import check_file
from modal_jobs.model_dir import FileRecord, revision_dir
from modal_jobs.model_list import ModelEntry
from modal_jobs.rows import unverifiable_row, verified_row
from modal_jobs.store import LocalStore, look_at
from modal_jobs.summary import ModelRow

log = logging.getLogger("modal_jobs")

HASH_WORKERS = max(2, os.cpu_count() or 2)

# What each file of a model was found to be, by repo id: (path, problem) for every file that is not as recorded.
Problems = dict[str, list[tuple[str, str]]]


def verify_models(
    entries: Sequence[ModelEntry],
    target: Path,
    cancel: threading.Event | None = None,
    *,
    writable: bool = True,
    held: Mapping[str, HeldModel] | None = None,
) -> list[ModelRow]:
    """Hash every file of each model's current revision on one pool, so that small and large files share the cores.

    `held`: what the target holds by name, when the caller surveyed it already. On a read-only
    target the row of a damaged model says that the damage could not be recorded.
    """
    stop = cancel or threading.Event()
    started = time.monotonic()
    if held is None:
        store = LocalStore(target)
        held = look_at(store, store.top(), {e.dirname for e in entries})
    current = {e.repo_id: verifiable(e, held.get(e.dirname)) for e in entries}
    problems = _hash_files(entries, target, current, stop)
    rows = []
    for entry in entries:
        seconds = time.monotonic() - started
        model, revision = held.get(entry.dirname), current[entry.repo_id]
        rows.append(_verify_row(entry, target, model, revision, problems[entry.repo_id], seconds, writable))
    return rows


def _hash_files(
    entries: Sequence[ModelEntry], target: Path, current: Mapping[str, HeldRevision | None], stop: threading.Event
) -> Problems:
    """Check every file the current revisions' manifests list, all models on one pool, the largest files first.

    One file is hashed by one thread: started last, a large file would keep one core busy alone at the end.
    """
    jobs = [
        (e, record)
        for e in entries
        if (r := current.get(e.repo_id)) is not None and r.manifest is not None
        for record in r.manifest.files
    ]
    jobs.sort(key=lambda job: job[1].size, reverse=True)
    problems: Problems = {e.repo_id: [] for e in entries}

    def check(job: tuple[ModelEntry, FileRecord]) -> str | None:
        if stop.is_set():
            raise Cancelled
        revision = current[job[0].repo_id]
        assert revision is not None
        return check_file(revision_dir(target / job[0].dirname, revision.name), job[1])

    pool = ThreadPoolExecutor(max_workers=HASH_WORKERS, thread_name_prefix="hash")
    try:
        futures = [pool.submit(check, job) for job in jobs]
        pending = set(futures)
        while pending:
            _done, pending = wait(pending, timeout=0.2)
            if stop.is_set():
                # The models every file of which was hashed before the stop: the stop's line names them.
                unfinished = {job[0].repo_id for job, f in zip(jobs, futures, strict=True) if not _hashed(f)}
                raise Cancelled(e.repo_id for e in entries if current.get(e.repo_id) and e.repo_id not in unfinished)
        for (entry, record), future in zip(jobs, futures, strict=True):
            problem = future.result()
            if problem is not None:
                problems[entry.repo_id].append((record.path, problem))
    finally:
        pool.shutdown(wait=not stop.is_set(), cancel_futures=True)
    return {repo_id: sorted(found) for repo_id, found in problems.items()}


def _hashed(future: Future[str | None]) -> bool:
    return future.done() and not future.cancelled() and future.exception() is None


def _verify_row(
    entry: ModelEntry,
    target: Path,
    model: HeldModel | None,
    revision: HeldRevision | None,
    bad: Sequence[tuple[str, str]],
    seconds: float,
    writable: bool,
) -> ModelRow:
    """One model's verify row; damage found is marked beside its revision when the target can be written."""
    path = str(target / entry.dirname)
    if revision is None or revision.manifest is None:
        return unverifiable_row(entry, path, model, seconds)
    unmarked = None
    if bad and writable:
        mark_damaged(revision_dir(target / entry.dirname, revision.name), [rel for rel, _ in bad])
    elif bad:
        unmarked = f"the target is read-only: could not mark {entry.dirname} for repair"
    row = verified_row(entry.repo_id, path, revision.manifest, bad, seconds, unmarked)
    if row.error is not None:
        log.error("%s: %s", entry.repo_id, row.error)
    return row
