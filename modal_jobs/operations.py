"""The operations over a target, as the CLI, `modal run`, nox and the workflows run them.

```
download: survey the target ─► ask the Hub ─► plan_run() ─► show (--dry-run) or apply, prune last ─► summary
plan:     ask the Hub for the list and its base ─► changes (+ the target's plan, if one is given)
list:     survey the target ─► ask the Hub about complete models only ─► states
verify:   hash what the manifests name (locally, or one container per model)
clear:    survey ─► refuse without --yes ─► remove
```

A `Backend` is where the bytes are: `LocalBackend` for a directory on this machine, the Modal
backend (`modal_jobs.modal_backend`) for the volume. Both survey through a `Store` and apply the same
`Plan`; only how the bytes move differs.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import Protocol, TypeVar

from modal_jobs import models_lock
from modal_jobs.catalog import ALL_SIZES, Catalog, ModelEntry, select_models
from modal_jobs.engine import apply_models
from modal_jobs.errors import Cancelled, InterruptedRun, ModelFailed, TargetError, UsageError
from modal_jobs.hub import Hub
from modal_jobs.hub_errors import AccessDenied
from modal_jobs.lock import target_lock
from modal_jobs.model_dir import LEGACY
from modal_jobs.models_lock import lock_path
from modal_jobs.plan import (
    DONE_STATUS,
    PLANNED_STATUS,
    Action,
    HeldModel,
    HubAnswer,
    Kind,
    ModelPlan,
    Orphan,
    Plan,
    manifest_matches,
    orphans,
    plan_run,
    row_for,
    shorten,
)
from modal_jobs.store import LocalStore, Store, is_writable, require_writable, survey
from modal_jobs.summary import ModelRow, Operation, OrphanRow, Status, Summary, human_bytes
from modal_jobs.verifying import verify_models

log = logging.getLogger("modal_jobs")

# Models resolved against the Hub at once while planning.
RESOLVE_WORKERS = 4
# How often a thread waiting on the Hub looks whether the run was asked to stop.
POLL_SECONDS = 0.2

T = TypeVar("T")


class Backend(Protocol):
    store: Store

    def check_writable(self) -> None:
        """Raise TargetError when the target cannot be written (download, clear)."""
        ...

    def check_exists(self) -> None:
        """Raise TargetError when the target does not exist (verify)."""
        ...

    def exclusive(self, wait_seconds: float, cancel: threading.Event) -> AbstractContextManager[None]:
        """Held while a run writes, so that two runs never interleave writes on one target."""
        ...

    def apply(self, models: Sequence[ModelPlan], cancel: threading.Event) -> list[ModelRow]:
        """Carry out the models' plans (no prune: that is `download`'s last step); one row each, in order."""
        ...

    def verify(self, entries: Sequence[ModelEntry], cancel: threading.Event) -> list[ModelRow]: ...


class LocalBackend:
    """A directory this process writes directly."""

    def __init__(self, root: Path, hub: Hub | None = None) -> None:
        self.root = root
        self.store: Store = LocalStore(root)
        self.hub = hub or Hub()

    def check_writable(self) -> None:
        require_writable(self.root)

    def check_exists(self) -> None:
        if not self.root.is_dir():
            raise TargetError(f"{self.root} does not exist; check --local-dir (verify never creates a target)")

    def exclusive(self, wait_seconds: float, cancel: threading.Event) -> AbstractContextManager[None]:
        if self.root.exists() and not is_writable(self.root):
            return nullcontext()  # read-only: no writer can be working here through this mount
        return target_lock(self.root, wait_seconds, cancel)

    def apply(self, models: Sequence[ModelPlan], cancel: threading.Event) -> list[ModelRow]:
        done = apply_models(models, self.root, self.hub, cancel)
        return [done.get(m.name) or row_for(m, self.store.location, DONE_STATUS[m.action]) for m in models]

    def verify(self, entries: Sequence[ModelEntry], cancel: threading.Event) -> list[ModelRow]:
        return verify_models(entries, self.root, cancel, writable=is_writable(self.root))


def prune(models: Sequence[ModelPlan], store: Store, cancel: threading.Event) -> list[ModelRow]:
    """Remove the model directories the list dropped (the plan checked that each holds our manifest)."""
    rows = []
    for model in models:
        _stop_if(cancel)
        store.remove(model.name)
        log.info("%s: pruned %s/ (%s)", model.repo_id, model.name, human_bytes(model.held_bytes))
        rows.append(row_for(model, store.location, Status.PRUNED))
    return rows


class LockMode(StrEnum):
    """How a run treats models.lock, as uv does: bring it up to date first, refuse when stale, or take it as is."""

    UPDATE = "update"
    LOCKED = "locked"
    FROZEN = "frozen"


@dataclass(frozen=True)
class Request:
    """What the person asked for, already parsed."""

    operation: Operation
    sizes: tuple[str, ...] = ()
    repo_ids: tuple[str, ...] = ()
    dry_run: bool = False
    yes: bool = False
    prune: bool = False
    lock_wait: float = 60.0
    base_catalog: Catalog | None = None
    lock_mode: LockMode = LockMode.UPDATE
    upgrade: bool = False  # `lock --upgrade`: move branches and tags (of --model, or all)
    check: bool = False  # `lock --check`: say how the lock disagrees with the list, change nothing

    def __post_init__(self) -> None:
        object.__setattr__(self, "operation", Operation(self.operation))


def run(
    request: Request,
    catalog: Catalog,
    backend: Backend | None,
    hub: Hub,
    cancel: threading.Event | None = None,
) -> Summary:
    """Select the models, hold the target while writing, and run the operation."""
    entries = select_models(catalog, request.sizes, request.repo_ids)
    cancel = cancel or threading.Event()
    if request.lock_mode is not LockMode.UPDATE:
        require_lock(request, catalog)  # before anything touches the target
    try:
        if request.operation is Operation.LOCK:
            return update_lock(catalog, hub, request, cancel)
        if request.operation is Operation.PLAN:
            return plan_changes(entries, catalog, request.base_catalog, backend, hub, cancel, request)
        if backend is None:
            raise UsageError(f"{request.operation} needs a target: pass --local-dir DIR, or set up Modal")
        if request.operation is Operation.DOWNLOAD:
            return download(entries, catalog, backend, hub, request, cancel)
        if request.operation is Operation.LIST:
            return list_models(entries, catalog, backend.store, hub, cancel, request)
        if request.operation is Operation.VERIFY:
            backend.check_exists()
            with backend.exclusive(request.lock_wait, cancel):
                selected = bool(request.sizes or request.repo_ids)
                present = set(waiting(backend.store.top, cancel))
                chosen = entries if selected else [e for e in entries if e.dirname in present]
                wanted = desired_state(request, catalog, hub, {}, cancel, write=False, ask=False)
                rows = [against_lock(row, wanted.get(row.repo_id)) for row in backend.verify(chosen, cancel)]
                return Summary(Operation.VERIFY, backend.store.location, tuple(rows))
        if request.operation is Operation.CLEAR:
            selection = clear_selection(entries, request) if (request.sizes or request.repo_ids) else None
            return Summary(
                Operation.CLEAR, backend.store.location, tuple(clear(selection, catalog, backend, request, cancel))
            )
    except Cancelled:
        if request.operation in (Operation.LIST, Operation.PLAN):
            raise InterruptedRun(
                f"{request.operation} stopped before it had every answer; nothing was changed"
            ) from None
        raise InterruptedRun("interrupted; nothing was marked complete: run the same command again to resume") from None
    raise UsageError(f"unknown operation {request.operation!r}; use download, plan, list, verify or clear")


def download(
    entries: Sequence[ModelEntry],
    catalog: Catalog,
    backend: Backend,
    hub: Hub,
    request: Request,
    cancel: threading.Event,
) -> Summary:
    """Plan against what the target holds, then show the plan (`--dry-run`) or apply it."""
    store = backend.store
    if not request.dry_run:
        backend.check_writable()
    lock = nullcontext() if request.dry_run else backend.exclusive(request.lock_wait, cancel)
    with lock:
        plan = make_plan(entries, catalog, store, hub, cancel, prune=request.prune, request=request)
        log_plan(plan)
        pruned = [m for m in plan.models if m.action is Action.PRUNE]
        work = [m for m in plan.models if m.action is not Action.PRUNE]
        left = [Orphan(m.name, m.held_files, m.held_bytes, m.repo_id) for m in pruned]
        note = plan.prune_refused
        if request.dry_run:
            rows = [row_for(m, store.location, PLANNED_STATUS[m.action]) for m in plan.models]
            left = []
        else:
            rows = backend.apply(work, cancel)
            if pruned and any(row.failed for row in rows):
                # Last, and only after everything else went well: a failed run never also removes models.
                note = "not pruning: a model of this run failed; fix it and run again"
                log.warning("%s", note)
            else:
                rows += prune(pruned, store, cancel)
                left = []
    kept = sorted([*plan.orphans, *left], key=lambda o: o.name)
    orphan_rows = tuple(OrphanRow(o.name, _join(store.location, o.name), o.files, o.bytes, o.repo_id) for o in kept)
    return Summary(Operation.DOWNLOAD, store.location, tuple(rows), orphan_rows, note)


def make_plan(
    entries: Sequence[ModelEntry],
    catalog: Catalog,
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
    answers = as_facts(desired_state(request, catalog, hub, held, cancel, write=not request.dry_run))
    return plan_run(entries, answers, held, catalog, prune=prune)


def desired_state(
    request: Request,
    catalog: Catalog,
    hub: Hub,
    held: Mapping[str, HeldModel],
    cancel: threading.Event,
    *,
    write: bool,
    ask: bool = True,
) -> dict[str, HubAnswer | ModelFailed]:
    """What each model of the list must be, from models.lock: brought up to date first, or refused, or as it is.

    `write`: a run that changes the target records what it resolved (the first download creates the
    lock). `ask=False`: only what the lock says; entries it lacks are left out.
    """
    path = lock_path(catalog)
    if request.lock_mode is not LockMode.UPDATE:
        pinned = require_lock(request, catalog)
        missing = ModelFailed(f"not in {path.name}, which --frozen takes as it is; run `python -m modal_jobs lock`")
        return {e.repo_id: m.answer if (m := pinned.get(e.repo_id)) else missing for e in catalog.models}
    locked = models_lock.read(path)
    problems = models_lock.disagreements(locked, catalog)
    answers: dict[str, HubAnswer | ModelFailed] = {m.repo_id: m.answer for m in locked.models} if locked else {}
    stale = models_lock.to_resolve(locked, catalog)
    if not stale or not ask:
        return {k: v for k, v in answers.items() if k not in {e.repo_id for e in stale}}
    resolved = ask_hub(stale, hub, held, cancel)
    answers.update(resolved)
    fresh = {k: v for k, v in resolved.items() if isinstance(v, HubAnswer)}
    if write and len(fresh) == len(resolved):
        models_lock.write(path, models_lock.updated(locked, catalog, fresh))
        log.info("%s was out of date (%s); updated it", path.name, shorten(problems))
    elif write:
        log.warning("%s is out of date (%s) and was not updated: a model did not resolve", path.name, shorten(problems))
    else:
        log.warning(
            "%s is out of date (%s); this run uses the Hub's answers for those models", path.name, shorten(problems)
        )
    return answers


def require_lock(request: Request, catalog: Catalog) -> models_lock.ModelsLock:
    """The lock `--locked` (which must match the list) or `--frozen` (which must exist) runs on; else exit 2."""
    path = lock_path(catalog)
    locked = models_lock.read(path)
    problems = models_lock.disagreements(locked, catalog)
    if locked is None or (problems and request.lock_mode is LockMode.LOCKED):
        raise UsageError(stale_lock_message(path, problems))
    return locked


def stale_lock_message(path: Path, problems: Sequence[str]) -> str:
    if not path.exists():
        return (
            f"no {path.name} beside {path.with_suffix('.toml').name}; create it with `nox -s lock` "
            f"(or `python -m modal_jobs lock`) and commit it"
        )
    return (
        f"{path.name} is out of date ({shorten(problems, 2)}); run `nox -s lock` (or `python -m modal_jobs lock`) "
        "and commit it"
    )


def against_lock(row: ModelRow, wanted: HubAnswer | ModelFailed | None) -> ModelRow:
    """A verified model that is sound but not at the lock's commit is stale: that fails verify too."""
    if row.status is not Status.OK or not isinstance(wanted, HubAnswer) or row.commit == wanted.commit:
        return row
    error = f"at commit {(row.commit or '')[:12]}, models.lock names {wanted.commit[:12]}; run download"
    return replace(row, error=error)


def update_lock(catalog: Catalog, hub: Hub, request: Request, cancel: threading.Event) -> Summary:
    """Resolve what models.toml changed (or, with --upgrade, moved) and write models.lock; `--check` only compares."""
    path = lock_path(catalog)
    locked = models_lock.read(path)
    if request.check:
        return check_lock(catalog, locked, path)
    moving = request.repo_ids or tuple(e.repo_id for e in catalog.models) if request.upgrade else ()
    stale = models_lock.to_resolve(locked, catalog, moving)
    resolved = as_facts(ask_hub(stale, hub, {}, cancel)) if stale else {}
    fresh = {k: v for k, v in resolved.items() if isinstance(v, HubAnswer)}
    rows = []
    for entry in catalog.models:
        before = locked.get(entry.repo_id) if locked else None
        answer = resolved.get(entry.repo_id)
        if isinstance(answer, str):
            rows.append(
                ModelRow(entry.repo_id, str(path), Status.FAILED, before.commit if before else None, error=answer)
            )
            continue
        now = models_lock.LockedModel.of(entry, answer) if answer is not None else before
        assert now is not None, "an entry the lock lacks is always resolved"
        status = Status.ADDED if before is None else Status.UNCHANGED if now == before else Status.CHANGED
        note = None
        if before is not None and now != before:
            changed = {f.path for f in set(now.files) ^ set(before.files)}
            note = f"commit {before.commit[:12]} → {now.commit[:12]}, {len(changed)} file(s) changed"
        rows.append(ModelRow(entry.repo_id, str(path), status, now.commit, len(now.files), now.total_bytes, note=note))
    listed = {e.repo_id for e in catalog.models}
    for gone in locked.models if locked else ():
        if gone.repo_id not in listed:
            rows.append(
                ModelRow(gone.repo_id, str(path), Status.DROPPED, gone.commit, len(gone.files), gone.total_bytes)
            )
    if len(fresh) < len(resolved):
        return Summary(Operation.LOCK, str(path), tuple(rows), note=f"{path.name} not written: a model did not resolve")
    written = models_lock.write(path, models_lock.updated(locked, catalog, fresh))
    return Summary(
        Operation.LOCK, str(path), tuple(rows), note=f"wrote {path.name}" if written else f"{path.name} is up to date"
    )


def check_lock(catalog: Catalog, locked: models_lock.ModelsLock | None, path: Path) -> Summary:
    """`lock --check`: one row per model, failing where the lock does not stand for the list. Asks the Hub nothing."""
    problems = models_lock.disagreements(locked, catalog)
    for line in problems:
        log.error("%s", line)
    rows = []
    for entry in catalog.models:
        model = locked.get(entry.repo_id) if locked else None
        why = "not in the lock" if model is None else model.disagreement(entry)
        status = Status.UNCHANGED if why is None else Status.ADDED if model is None else Status.CHANGED
        error = None if why is None else f"{why}; run `python -m modal_jobs lock`"
        commit = model.commit if model else None
        rows.append(ModelRow(entry.repo_id, str(path), status, commit, error=error))
    listed = {e.repo_id for e in catalog.models}
    for gone in locked.models if locked else ():
        if gone.repo_id not in listed:
            error = "no longer in models.toml; run `python -m modal_jobs lock`"
            rows.append(ModelRow(gone.repo_id, str(path), Status.DROPPED, gone.commit, error=error))
    return Summary(
        Operation.LOCK, str(path), tuple(rows), note=stale_lock_message(path, problems) if problems else None
    )


def as_facts(answers: Mapping[str, HubAnswer | ModelFailed]) -> dict[str, HubAnswer | str]:
    """The plan's view of the Hub's answers: a failure is the line that says why."""
    return {repo_id: str(a) if isinstance(a, ModelFailed) else a for repo_id, a in answers.items()}


def ask_hub(
    entries: Sequence[ModelEntry], hub: Hub, held: Mapping[str, HeldModel], cancel: threading.Event
) -> dict[str, HubAnswer | ModelFailed]:
    """The Hub's answer for each entry, or why there is none (logged as the model's failure): see `hub_answer`."""

    def one(entry: ModelEntry) -> HubAnswer:
        try:
            return hub_answer(entry, hub, held)
        except ModelFailed as exc:
            log.error("%s: failed: %s", entry.repo_id, exc)
            raise

    return gather({e.repo_id: partial(one, e) for e in entries}, cancel)


def hub_answer(entry: ModelEntry, hub: Hub, held: Mapping[str, HeldModel]) -> HubAnswer:
    """The commit the entry resolves to and its files: one request when the target is current, two otherwise.

    A commit's files never change, so when the target's manifest was written for this entry at the
    commit the revision points at now, its file list is the Hub's answer and the tree is not listed again.
    """
    commit = current_commit(entry, hub)
    item = held.get(entry.dirname)
    current = item.current if item is not None and item.kind is Kind.DIRECTORY else None
    manifest = current.manifest if current is not None else None
    if manifest is not None and manifest_matches(manifest, entry, commit):
        return HubAnswer(commit, manifest.files)
    return HubAnswer(commit, tuple(hub.list_files(entry, commit)))


def current_commit(entry: ModelEntry, hub: Hub) -> str:
    return entry.pinned_commit or hub.resolve(entry)


def gather(calls: Mapping[str, Callable[[], T]], cancel: threading.Event) -> dict[str, T | ModelFailed]:
    """Each call's result, or the ModelFailed it raised: a few at a time on a pool, while this thread waits.

    Every request to the Hub goes through here (or `waiting`): the calling thread only waits, looking
    at `cancel` every 0.2 s, so a stop never waits on a request the Hub holds open.
    """
    if not calls:
        return {}
    pool = ThreadPoolExecutor(max_workers=min(RESOLVE_WORKERS, len(calls)), thread_name_prefix="resolve")
    futures = {key: pool.submit(_settled, call) for key, call in calls.items()}
    try:
        return {key: _result(future, cancel) for key, future in futures.items()}
    finally:
        # On a stop, what is queued never starts, and nothing waits for what is in flight.
        pool.shutdown(wait=not cancel.is_set(), cancel_futures=True)


def waiting(call: Callable[[], T], cancel: threading.Event) -> T:
    """`call()` on a thread of its own, this one waiting as in `gather`: for the Hub or the volume to answer."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wait")
    try:
        return _result(pool.submit(call), cancel)
    finally:
        pool.shutdown(wait=False)


def _settled(call: Callable[[], T]) -> T | ModelFailed:
    try:
        return call()
    except ModelFailed as exc:
        return exc


def _result(future: Future[T], cancel: threading.Event) -> T:
    while True:
        _stop_if(cancel)
        try:
            return future.result(timeout=POLL_SECONDS)
        except TimeoutError:
            continue


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


def clear_selection(entries: Sequence[ModelEntry], request: Request) -> list[ModelEntry]:
    """What a selective clear removes: a size label takes its own models, not the shared ones the others need."""
    if any(size.lower() in ALL_SIZES for size in request.sizes):
        return list(entries)
    return [e for e in entries if e.size is not None or e.repo_id in request.repo_ids]


def model_state(held: HeldModel | None, entry: ModelEntry, commit: str | None) -> Status:
    """`missing`, `incomplete` (no complete current revision), `stale` (complete at another commit) or `complete`.

    `commit=None`: the commit it should be at is unknown; a complete model is then `complete`.
    """
    if held is None:
        return Status.MISSING
    current = held.current if held.kind is Kind.DIRECTORY and held.repo_id == entry.repo_id else None
    if current is None or not current.complete or current.damaged:
        return Status.INCOMPLETE
    return Status.COMPLETE if manifest_matches(current.manifest, entry, commit) else Status.STALE


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


def list_models(
    entries: Sequence[ModelEntry],
    catalog: Catalog,
    store: Store,
    hub: Hub,
    cancel: threading.Event,
    request: Request | None = None,
) -> Summary:
    """Each model's state on the target against models.lock; without a lock, the Hub is asked about complete models."""
    held = waiting(partial(survey, store), cancel)
    wanted = desired_state(request or Request(Operation.LIST), catalog, hub, held, cancel, write=False, ask=False)
    unknown = [e for e in entries if e.repo_id not in wanted and _complete_current(held.get(e.dirname), e)]
    asked = gather({e.repo_id: partial(current_commit, e, hub) for e in unknown}, cancel)
    rows = []
    for entry in entries:
        path = _join(store.location, entry.dirname)
        item = held.get(entry.dirname)
        current = item.current if item is not None and item.repo_id == entry.repo_id else None
        answer = wanted.get(entry.repo_id) or asked.get(entry.repo_id)
        commit = answer.commit if isinstance(answer, HubAnswer) else answer if isinstance(answer, str) else None
        error = None
        if isinstance(answer, ModelFailed):
            # Offline or refused: say what is on the target, and why staleness is unknown.
            error = f"could not check for a newer commit: {answer}"
            log.warning("%s: %s", entry.repo_id, error)
        state = model_state(item, entry, commit)
        if current is not None:
            files, size = len(current.files), current.bytes
        else:
            files, size = (item.file_count, item.bytes) if item is not None else (0, 0)
        note = revisions_note(item) if item is not None and current is not None else None
        rows.append(
            ModelRow(
                entry.repo_id,
                path,
                state,
                current.manifest.commit if current is not None and current.manifest else None,
                files,
                size,
                error=error,
                note=note,
            )
        )
    found = orphans(held, catalog)
    orphan_rows = [OrphanRow(o.name, _join(store.location, o.name), o.files, o.bytes, o.repo_id) for o in found]
    return Summary(Operation.LIST, store.location, tuple(rows), tuple(orphan_rows))


def _complete_current(item: HeldModel | None, entry: ModelEntry) -> bool:
    """The cache wrote this entry's repo here, and what readers load is complete (at some commit)."""
    current = (
        item.current if item is not None and item.kind is Kind.DIRECTORY and item.repo_id == entry.repo_id else None
    )
    return current is not None and current.complete


def clear(
    entries: Sequence[ModelEntry] | None, catalog: Catalog, backend: Backend, request: Request, cancel: threading.Event
) -> list[ModelRow]:
    """Remove the selected models, or everything on the target when nothing is selected.

    Without `--yes` it refuses, listing what would go, and changes nothing at all: no prompt, so it
    never hangs in CI.
    """
    store = backend.store
    top = waiting(store.top, cancel)
    names = sorted(top) if entries is None else [e.dirname for e in entries if e.dirname in top]
    if not names:
        log.info("clear: nothing to remove on %s", store.location)
        return []
    held = waiting(lambda: {name: store.held(name, top[name]) for name in names}, cancel)
    total = sum(h.bytes for h in held.values())
    if not request.yes and not request.dry_run:
        listing = ", ".join(f"{n}/" for n in names)
        raise UsageError(
            f"clear would remove {len(names)} director{'y' if len(names) == 1 else 'ies'} "
            f"({human_bytes(total)}) from {store.location}: {listing}; add --yes to remove them "
            "(--dry-run only lists them)"
        )
    owners = {m.dirname: m.repo_id for m in catalog.models}
    rows = []
    if request.dry_run:
        lock: AbstractContextManager[None] = nullcontext()
    else:
        backend.check_writable()
        lock = backend.exclusive(request.lock_wait, cancel)
    with lock:
        for name in names:
            _stop_if(cancel)
            item = held[name]
            if not request.dry_run:
                store.remove(name)
                log.info("removed %s (%s)", _join(store.location, name), human_bytes(item.bytes))
            status = Status.WOULD_REMOVE if request.dry_run else Status.REMOVED
            owner = owners.get(name) or item.repo_id or name
            rows.append(ModelRow(owner, _join(store.location, name), status, None, item.file_count, item.bytes))
    return rows


def plan_changes(
    entries: Sequence[ModelEntry],
    catalog: Catalog,
    base: Catalog | None,
    backend: Backend | None,
    hub: Hub,
    cancel: threading.Event,
    request: Request,
) -> Summary:
    """What merging this list and its lock would change: models added, removed and changed, and what each costs.

    The new side is models.lock (what the merge applies; entries the lock lacks are resolved, and the
    run says so). The base side is the lock beside the base list when there is one, else the Hub. A
    repo the Hub refuses for lack of a token is `not-checked` when no HF_TOKEN is set: a fork's pull
    request cannot have one. A model the list removes says what leaves the volume; when its base entry
    does not resolve, its row says so without failing the plan. With a target, what it already holds
    is subtracted from what the merge transfers.
    """
    held = waiting(partial(survey, backend.store), cancel) if backend is not None else {}
    answers = desired_state(request, catalog, hub, held, cancel, write=False)
    base_models = {m.repo_id: m for m in (base.models if base else ())}
    base_locked = locked_answers(base)
    listed = {e.repo_id for e in catalog.models}
    revised = [
        old
        for e in entries
        if (old := base_models.get(e.repo_id)) is not None
        and old.revision != e.revision
        and old.repo_id not in base_locked
    ]
    dropped = [old for old in base_models.values() if old.repo_id not in listed]
    was_at = gather({old.repo_id: partial(current_commit, old, hub) for old in revised}, cancel)
    unlocked = {old.repo_id: partial(hub_answer, old, hub, held) for old in dropped if old.repo_id not in base_locked}
    leaving: dict[str, HubAnswer | ModelFailed] = {**base_locked, **gather(unlocked, cancel)}
    plans = {m.repo_id: m for m in plan_run(entries, as_facts(answers), held, catalog, prune=False).models}
    location = backend.store.location if backend is not None else "(no target)"
    rows = []
    for entry in entries:
        plan = plans[entry.repo_id]
        old = base_models.get(entry.repo_id)
        answer = answers[entry.repo_id]
        changes = _entry_changes(old, entry) if old is not None else []
        if isinstance(answer, ModelFailed):
            denied = isinstance(answer, AccessDenied) and not os.environ.get("HF_TOKEN")
            status = Status.NOT_CHECKED if denied else Status.FAILED
            note = "not checked: needs HF_TOKEN" if denied else None
            rows.append(
                ModelRow(
                    entry.repo_id,
                    _join(location, entry.dirname),
                    status,
                    entry.pinned_commit,
                    error=None if denied else str(answer),
                    note=note,
                )
            )
            continue
        before = base_locked.get(entry.repo_id)
        if before is not None and before.commit != answer.commit:
            moved = {f.path for f in set(before.files) ^ set(answer.files)}
            changes.append(f"commit {before.commit[:12]} → {answer.commit[:12]}, {len(moved)} file(s) changed")
        elif entry.repo_id in was_at:
            changes.append(_was_at(was_at[entry.repo_id]))
        status = Status.ADDED if old is None else Status.CHANGED if changes else Status.UNCHANGED
        if backend is not None:
            fetch = plan.fetch_bytes
        elif status is Status.UNCHANGED:
            fetch = 0
        else:
            # Without a target: files the base revision already has are linked, not transferred.
            known = {f.hash for f in before.files} if before is not None else set()
            fetch = sum(f.size for f in answer.files if f.hash not in known)
        note = "; ".join(changes) or None
        if backend is not None and plan.action is not Action.FAILED:
            note = "; ".join(filter(None, [note, f"on the target: {plan.action.value}"]))
        rows.append(
            ModelRow(
                entry.repo_id,
                _join(location, entry.dirname),
                status,
                answer.commit,
                len(plan.files),
                plan.total_bytes,
                fetch_bytes=fetch,
                note=note,
            )
        )
    for old in dropped:
        on_target = held.get(old.dirname) if backend is not None else None
        rows.append(_dropped_row(old, leaving[old.repo_id], _join(location, old.dirname), backend, on_target))
    return Summary(Operation.PLAN, location, tuple(rows))


def locked_answers(base: Catalog | None) -> dict[str, HubAnswer]:
    """What the lock beside the base list says of each base entry it still stands for."""
    locked = models_lock.read(lock_path(base)) if base is not None else None
    if base is None or locked is None:
        return {}
    return {e.repo_id: m.answer for e in base.models if (m := locked.get(e.repo_id)) and m.disagreement(e) is None}


def _dropped_row(
    old: ModelEntry, answer: HubAnswer | ModelFailed, path: str, backend: Backend | None, item: HeldModel | None
) -> ModelRow:
    """A model the list removes: the commit its base entry resolves to, and the files and bytes that leave with it."""
    notes = []
    if isinstance(answer, ModelFailed):
        log.warning("%s: removed from the list, and its base entry did not resolve: %s", old.repo_id, answer)
        commit, files, size = old.pinned_commit, 0, 0
        notes.append(f"the base entry did not resolve, so what leaves is unknown: {answer}")
    else:
        commit, files, size = answer.commit, len(answer.files), sum(f.size for f in answer.files)
    if backend is None:
        notes.append("download --prune removes it from the volume")
    elif item is None:
        notes.append("not on the target")
    else:
        notes.append(
            f"on the target: {item.file_count} file(s), {human_bytes(item.bytes)}; download --prune removes them"
        )
    return ModelRow(old.repo_id, path, Status.DROPPED, commit, files, size, note="; ".join(notes))


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


def _stop_if(cancel: threading.Event) -> None:
    if cancel.is_set():
        raise Cancelled


def _join(location: str, name: str) -> str:
    return f"{location.rstrip('/')}/{name}"
