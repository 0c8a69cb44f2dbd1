"""The operations over a target, as the CLI, `modal run`, nox and the workflows run them.

Each one gathers facts, decides (`modal_jobs.decide`), acts, and reports (`modal_jobs.rows`):

```
download: survey the target ─► ask the Hub ─► plan_run() ─► show (--dry-run) or apply, prune last ─► summary
plan:     ask the Hub for the list and its base, audit the lock's changes ─► changes (+ the target's plan)
list:     survey the target ─► ask the Hub about complete models only ─► states
verify:   survey ─► hash what the manifests name (locally, or one container per model) ─► against models.lock
clear:    survey ─► refuse without --yes ─► remove
```
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from functools import partial

from modal_jobs.backend import Backend
from modal_jobs.decide.changes import BaseFacts, dropped_bases, merge_changes, revised_bases
from modal_jobs.decide.facts import HubAnswer
from modal_jobs.decide.run_plan import orphans
from modal_jobs.decide.selection import clear_selection, cleared_names, verifiable
from modal_jobs.decide.states import complete_current, known_commit, model_state
from modal_jobs.download import download
from modal_jobs.errors import Cancelled, InterruptedRun, ModelFailed, UsageError
from modal_jobs.hub import Hub
from modal_jobs.hub_answers import current_commit, hub_answer
from modal_jobs.lock_audit import audit_lock
from modal_jobs.locking import check_lock_first, desired_state, locked_answers, update_lock
from modal_jobs.messages import shorten
from modal_jobs.model_list import ModelEntry, ModelList, select_models
from modal_jobs.models_lock import lock_path
from modal_jobs.request import Request
from modal_jobs.rows import against_lock, change_row, cleared_row, list_row, orphan_row, target_path, unverifiable_row
from modal_jobs.stops import before_any_change, clear_stopped, verify_stopped
from modal_jobs.store import Store, look_at, survey
from modal_jobs.summary import ModelRow, Operation, Summary, human_bytes
from modal_jobs.waits import gather, stop_if, waiting

log = logging.getLogger("modal_jobs")


def run(
    request: Request,
    model_list: ModelList,
    backend: Backend | None,
    hub: Hub,
    cancel: threading.Event | None = None,
) -> Summary:
    """Select the models, hold the target while writing, and run the operation."""
    entries = select_models(model_list, request.sizes, request.repo_ids)
    cancel = cancel or threading.Event()
    check_lock_first(request, model_list)  # before anything touches the target
    try:
        if request.operation is Operation.LOCK:
            return update_lock(model_list, hub, request, cancel, entries)
        if request.operation is Operation.PLAN:
            return plan_changes(
                entries, model_list, request.base_model_list, backend, hub, cancel, request, hub.has_token
            )
        if backend is None:
            raise UsageError(f"{request.operation} needs a target: pass --local-dir DIR, or set up Modal")
        if request.operation is Operation.DOWNLOAD:
            return download(entries, model_list, backend, hub, request, cancel)
        if request.operation is Operation.LIST:
            return list_models(entries, model_list, backend.store, hub, cancel, request)
        if request.operation is Operation.VERIFY:
            return verify(entries, model_list, backend, hub, request, cancel)
        if request.operation is Operation.CLEAR:
            selection = clear_selection(entries, request.sizes, request.repo_ids)
            rows = clear(selection, model_list, backend, request, cancel)
            return Summary(Operation.CLEAR, backend.store.target, tuple(rows))
    except Cancelled:
        # The steps that change something say what they left (`modal_jobs.stops`); a stop before them lands here.
        raise InterruptedRun(before_any_change(request.operation)) from None
    raise UsageError(f"unknown operation {request.operation!r}; use download, plan, list, verify or clear")


def verify(
    entries: Sequence[ModelEntry],
    model_list: ModelList,
    backend: Backend,
    hub: Hub,
    request: Request,
    cancel: threading.Event,
) -> Summary:
    """The check's verdict on every selected model: `ok`, or why not (missing, incomplete, stale, damaged).

    Any row but `ok` fails the run. Hashes what the manifests name; models.lock, when there is one,
    says which commit each must be at. A target that does not exist holds every model `missing`,
    and is not created.
    """
    target = backend.store.target
    wanted = desired_state(request, model_list, hub, {}, cancel, write=False, ask=False)
    unlocked = [e.repo_id for e in entries if not isinstance(wanted.get(e.repo_id), HubAnswer)]
    note = f"not checked against {lock_path(model_list).name}, which does not name them: {shorten(unlocked)}"
    absent = backend.absent()
    if absent is not None:
        log.warning("%s: every model is missing (verify creates nothing)", absent)
        missing = tuple(unverifiable_row(e, target_path(target, e.dirname), None) for e in entries)
        return Summary(Operation.VERIFY, target, missing, note=f"{absent}; verify created nothing")
    with backend.exclusive(request.lock_wait, cancel, request.operation):
        top = waiting(backend.store.top, cancel)
        held = waiting(partial(look_at, backend.store, top, {e.dirname for e in entries}), cancel)
        try:
            checked = backend.verify(entries, held, cancel)
        except Cancelled as stop:
            hashed = [e.repo_id for e in entries if verifiable(e, held.get(e.dirname)) is not None]
            done = [repo_id for repo_id in hashed if repo_id in stop.done]
            raise InterruptedRun(verify_stopped(done, [r for r in hashed if r not in done])) from None
    rows = [
        against_lock(row, entry, held.get(entry.dirname), wanted.get(entry.repo_id))
        for entry, row in zip(entries, checked, strict=True)
    ]
    return Summary(Operation.VERIFY, target, tuple(rows), note=note if unlocked else None)


def list_models(
    entries: Sequence[ModelEntry],
    model_list: ModelList,
    store: Store,
    hub: Hub,
    cancel: threading.Event,
    request: Request | None = None,
) -> Summary:
    """Each model's state on the target against models.lock; without a lock, the Hub is asked about complete models."""
    held = waiting(partial(survey, store), cancel)
    wanted = desired_state(request or Request(Operation.LIST), model_list, hub, held, cancel, write=False, ask=False)
    unknown = [e for e in entries if e.repo_id not in wanted and complete_current(held.get(e.dirname), e)]
    asked = gather({e.repo_id: partial(current_commit, e, hub) for e in unknown}, cancel)
    rows = []
    for entry in entries:
        item = held.get(entry.dirname)
        answer = wanted.get(entry.repo_id) or asked.get(entry.repo_id)
        row = list_row(entry, item, model_state(item, entry, known_commit(answer)), answer, store.target)
        if row.error is not None:
            log.warning("%s: %s", entry.repo_id, row.error)
        rows.append(row)
    orphan_rows = tuple(orphan_row(o, store.target) for o in orphans(held, model_list))
    return Summary(Operation.LIST, store.target, tuple(rows), orphan_rows)


def clear(
    entries: Sequence[ModelEntry] | None,
    model_list: ModelList,
    backend: Backend,
    request: Request,
    cancel: threading.Event,
) -> list[ModelRow]:
    """Remove the selected models, or everything on the target when nothing is selected.

    Without `--yes` it refuses, listing what would go, and changes nothing at all: no prompt, so it
    never hangs in CI.
    """
    store = backend.store
    top = waiting(store.top, cancel)
    names = cleared_names(top, entries)
    if not names:
        log.info("clear: nothing to remove on %s", store.target)
        return []
    held = waiting(partial(look_at, store, top, names), cancel)
    if not request.yes and not request.dry_run:
        total = sum(h.bytes for h in held.values())
        listing = ", ".join(f"{n}/" for n in names)
        raise UsageError(
            f"clear would remove {len(names)} director{'y' if len(names) == 1 else 'ies'} "
            f"({human_bytes(total)}) from {store.target}: {listing}; add --yes to remove them "
            "(--dry-run only lists them)"
        )
    owners = {m.dirname: m.repo_id for m in model_list.models}
    rows = []
    if request.dry_run:
        lock: AbstractContextManager[None] = nullcontext()
    else:
        backend.check_writable()
        lock = backend.exclusive(request.lock_wait, cancel, request.operation)
    with lock:
        for done, name in enumerate(names):
            if cancel.is_set() and not request.dry_run:
                raise InterruptedRun(clear_stopped(names[:done], names[done:], store.target))
            stop_if(cancel)
            item = held[name]
            if not request.dry_run:
                store.remove(name)
                log.info("removed %s (%s)", target_path(store.target, name), human_bytes(item.bytes))
            owner = owners.get(name) or item.repo_id or name
            rows.append(cleared_row(name, owner, item, store.target, dry_run=request.dry_run))
    return rows


def plan_changes(
    entries: Sequence[ModelEntry],
    model_list: ModelList,
    base: ModelList | None,
    backend: Backend | None,
    hub: Hub,
    cancel: threading.Event,
    request: Request,
    has_token: bool,
) -> Summary:
    """What merging this list and its lock would change: gather both sides' answers, then `merge_changes` decides.

    The new side is models.lock (entries it lacks are resolved, and the run says so); the base side
    is the lock beside the base list, and the Hub for what that lock does not cover. `has_token`:
    whether a Hub token is set, which decides if a refused repo fails or is `not-checked`.
    """
    held = waiting(partial(survey, backend.store), cancel) if backend is not None else {}
    answers = desired_state(request, model_list, hub, held, cancel, write=False)
    base_entries = {m.repo_id: m for m in (base.models if base else ())}
    base_locked = locked_answers(base)
    # An entry the lock changes that the Hub does not back (not in its revision's history, other files) fails.
    answers = {**answers, **audit_lock(entries, answers, base_locked, hub, cancel)}
    revised = revised_bases(entries, base_entries, base_locked)
    dropped = dropped_bases(model_list, base_entries)
    was_at = gather({old.repo_id: partial(current_commit, old, hub) for old in revised}, cancel)
    unlocked = {old.repo_id: partial(hub_answer, old, hub, held) for old in dropped if old.repo_id not in base_locked}
    leaving = {**base_locked, **gather(unlocked, cancel)}
    first_lock = base is not None and not lock_path(base).is_file() and lock_path(model_list).is_file()
    facts = BaseFacts(base_entries, base_locked, was_at, leaving, first_lock)
    changes = merge_changes(
        entries, model_list, answers, facts, held if backend is not None else None, has_token=has_token
    )
    for old in dropped:
        if isinstance(answer := leaving[old.repo_id], ModelFailed):
            log.warning("%s: removed from the list, and its base entry did not resolve: %s", old.repo_id, answer)
    target = backend.store.target if backend is not None else "(no target)"
    return Summary(Operation.PLAN, target, tuple(change_row(c, target) for c in changes))
