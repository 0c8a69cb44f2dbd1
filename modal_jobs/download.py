"""`download`: survey the target, take the desired state from models.lock, plan, then show or apply.

```
survey the target ─► models.lock (asking the Hub what it lacks) ─► plan_run() ─► --dry-run: rows
                                                                            └─► apply, prune last ─► rows
```
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from contextlib import nullcontext
from functools import partial

from modal_jobs.backend import Backend
from modal_jobs.decide.facts import as_facts
from modal_jobs.decide.model_plan import Action, ModelPlan
from modal_jobs.decide.run_plan import Orphan, Plan, plan_run, prune_refused_after
from modal_jobs.errors import Cancelled, InterruptedRun
from modal_jobs.hub import Hub
from modal_jobs.locking import desired_state
from modal_jobs.messages import shorten
from modal_jobs.model_list import ModelEntry, ModelList
from modal_jobs.request import Request
from modal_jobs.rows import PLANNED_STATUS, orphan_row, row_for
from modal_jobs.stops import download_stopped, prune_stopped
from modal_jobs.store import Store, survey
from modal_jobs.summary import ModelRow, Operation, Status, Summary, human_bytes
from modal_jobs.waits import waiting

log = logging.getLogger("modal_jobs")


def download(
    entries: Sequence[ModelEntry],
    model_list: ModelList,
    backend: Backend,
    hub: Hub,
    request: Request,
    cancel: threading.Event,
) -> Summary:
    """Plan against what the target holds, then show the plan (`--dry-run`) or apply it."""
    store = backend.store
    if not request.dry_run:
        backend.check_writable()
    lock = nullcontext() if request.dry_run else backend.exclusive(request.lock_wait, cancel, request.operation)
    with lock:
        plan = make_plan(entries, model_list, store, hub, cancel, prune=request.prune, request=request)
        log_plan(plan)
        pruned = [m for m in plan.models if m.action is Action.PRUNE]
        work = [m for m in plan.models if m.action is not Action.PRUNE]
        left = [Orphan(m.name, m.held_files, m.held_bytes, m.repo_id) for m in pruned]
        note = plan.prune_refused
        if request.dry_run:
            rows = [row_for(m, store.target, PLANNED_STATUS[m.action]) for m in plan.models]
            left = []
        else:
            rows = apply(backend, work, cancel)
            refused = prune_refused_after([row.repo_id for row in rows if row.failed]) if pruned else None
            if refused is not None:
                note = refused
                log.warning("%s", note)
            else:
                rows += prune(pruned, store, cancel)
                left = []
    kept = sorted([*plan.orphans, *left], key=lambda o: o.name)
    orphan_rows = tuple(orphan_row(o, store.target) for o in kept)
    return Summary(Operation.DOWNLOAD, store.target, tuple(rows), orphan_rows, note)


def make_plan(
    entries: Sequence[ModelEntry],
    model_list: ModelList,
    store: Store,
    hub: Hub,
    cancel: threading.Event,
    *,
    prune: bool,
    request: Request | None = None,
) -> Plan:
    """Survey the target, take the desired state from models.lock (updated first when a download writes), plan."""
    request = request or Request(Operation.DOWNLOAD, dry_run=True)
    held = waiting(partial(survey, store), cancel)
    answers = as_facts(desired_state(request, model_list, hub, held, cancel, write=not request.dry_run))
    return plan_run(entries, answers, held, model_list, prune=prune)


def apply(backend: Backend, work: Sequence[ModelPlan], cancel: threading.Event) -> list[ModelRow]:
    """Carry out the plans; a stop names the models that were being fetched, which the next run resumes."""
    try:
        return backend.apply(work, cancel)
    except Cancelled:
        fetching = [m.repo_id for m in work if m.action in (Action.FETCH, Action.REPAIR)]
        raise InterruptedRun(download_stopped(fetching)) from None


def prune(models: Sequence[ModelPlan], store: Store, cancel: threading.Event) -> list[ModelRow]:
    """Remove the model directories the list dropped (the plan checked that each holds our manifest)."""
    rows = []
    for done, model in enumerate(models):
        if cancel.is_set():
            raise InterruptedRun(prune_stopped([m.name for m in models[:done]], [m.name for m in models[done:]]))
        store.remove(model.name)
        log.info("%s: pruned %s/ (%s)", model.repo_id, model.name, human_bytes(model.held_bytes))
        rows.append(row_for(model, store.target, Status.PRUNED))
    return rows


def log_plan(plan: Plan) -> None:
    """One line per model that has work: what it fetches (files, bytes) and what it checks in place."""
    for model in plan.models:
        if model.action in (Action.FETCH, Action.REPAIR):
            parts = []
            if model.fetch:
                fetched = f"{len(model.fetch)} of {len(model.files)} file(s) ({human_bytes(model.fetch_bytes)})"
                parts.append(f"fetch {fetched}: {shorten([f.path for f in model.fetch])}")
            if model.check:
                checked = human_bytes(sum(f.size for f in model.check))
                parts.append(f"check {len(model.check)} present file(s) ({checked}), fetching any that is damaged")
            why = f"; {model.reason}" if model.reason else ""
            log.info(
                "%s: %s at %s: %s%s", model.repo_id, model.action.value, (model.commit or "")[:7], ", ".join(parts), why
            )
        elif model.action is Action.PRUNE:
            log.info("%s: prune %s/ (%s): %s", model.repo_id, model.name, human_bytes(model.held_bytes), model.reason)
    if plan.prune_refused:
        log.warning("%s", plan.prune_refused)
