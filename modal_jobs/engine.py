"""The cache's work on a directory this process writes: carry out a plan, and verify.

`apply_model` is the whole life of one planned model: make room, fetch and check what the plan
names, drop what the commit does not have, and record completion last. It decides nothing. The
same function runs on a local directory and inside a Modal container, on the volume.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Executor, Future, ThreadPoolExecutor, wait
from pathlib import Path, PurePosixPath

from modal_jobs.catalog import ModelEntry
from modal_jobs.decide.model_plan import Action, ModelPlan
from modal_jobs.errors import Cancelled, ModelFailed
from modal_jobs.hashing import StreamingHash, check_file
from modal_jobs.hub import Hub
from modal_jobs.messages import shorten
from modal_jobs.model_dir import (
    FileRecord,
    Pointer,
    invalidate,
    link_or_copy,
    mark_damaged,
    new_manifest,
    remove_downloader_state,
    remove_files,
    remove_tree,
    retire,
    revision_dir,
    write_manifest,
    write_pointer,
)
from modal_jobs.progress import ModelProgress
from modal_jobs.rows import DONE_STATUS, row_for
from modal_jobs.store import LocalStore
from modal_jobs.summary import ModelRow, Status, human_bytes

log = logging.getLogger("modal_jobs")

# File transfers in flight at once, shared by every model of a run.
DOWNLOAD_WORKERS = 8
FETCH_THREADS = "fetch"
# Models worked on at once on a local target: one stuck model does not hold up the others.
MODEL_WORKERS = 3
# Below this, reading the file back costs less than following its transfer.
STREAM_HASH_MIN_BYTES = 8 << 20
HASH_WORKERS = max(2, os.cpu_count() or 2)


def apply_models(plans: Sequence[ModelPlan], root: Path, hub: Hub, cancel: threading.Event) -> dict[str, ModelRow]:
    """Carry out the FETCH and REPAIR plans, a few models at a time over one shared pool of file workers.

    Space is claimed for every model in plan order before any starts, so that models running side by
    side never count the same free bytes twice. Raises Cancelled when the run is asked to stop, after
    dropping the downloader's partial files; nothing that was not complete was marked so.
    """
    work = [p for p in plans if p.action in (Action.FETCH, Action.REPAIR)]
    if not work:
        return {}
    root.mkdir(parents=True, exist_ok=True)
    rows: dict[str, ModelRow] = {}
    free = shutil.disk_usage(root).free
    started: list[ModelPlan] = []
    for plan in work:
        if plan.fetch_bytes > free:
            message = (
                f"not enough free space on {root}: needs {human_bytes(plan.fetch_bytes)}, {human_bytes(free)} free "
                "after the models before it; free some space or select fewer models"
            )
            log.error("%s: failed: %s", plan.repo_id, message)
            rows[plan.name] = row_for(plan, str(root), Status.FAILED, error=message)
        else:
            free -= plan.fetch_bytes
            started.append(plan)
    if not started:
        return rows
    transfers = ThreadPoolExecutor(max_workers=DOWNLOAD_WORKERS, thread_name_prefix=FETCH_THREADS)
    models = ThreadPoolExecutor(max_workers=min(MODEL_WORKERS, len(started)), thread_name_prefix="model")
    futures = {models.submit(apply_model, p, root, hub, cancel, transfers): p for p in started}
    pending = set(futures)
    try:
        while pending:
            _done, pending = wait(pending, timeout=0.2)
            _stop_if(cancel)
        rows.update((futures[f].name, f.result()) for f in futures)
        return rows
    except Cancelled:
        cancel.set()
        for plan in started:
            if plan.revision is not None:
                _discard_partial_files(revision_dir(root / plan.name, plan.revision))
        raise
    finally:
        # On a stop, do not wait for transfers in flight: the process leaves without them.
        stopping = cancel.is_set()
        models.shutdown(wait=not stopping, cancel_futures=True)
        transfers.shutdown(wait=not stopping, cancel_futures=True)


def apply_model(plan: ModelPlan, root: Path, hub: Hub, cancel: threading.Event, transfers: Executor) -> ModelRow:
    """Write one model's new revision beside the current one, then make it current in one step.

    Decides nothing: what to link, fetch, check and drop comes from the plan, the commit included.
    Until the pointer moves, readers see the revision they saw before; after, the new one, complete.
    """
    model_dir = root / plan.name
    started = time.monotonic()
    entry = plan.entry
    assert entry is not None and plan.commit is not None and plan.revision is not None, "FETCH and REPAIR only"
    work = revision_dir(model_dir, plan.revision)
    try:
        if model_dir.is_symlink():
            raise ModelFailed(
                f"{model_dir} is a symlink; the cache writes only real directories inside the target: "
                "replace the link with a directory"
            )
        _stop_if(cancel)
        work.mkdir(parents=True, exist_ok=True)
        invalidate(work)
        remove_downloader_state(work)
        # Once, before the workers start: two files of one folder must not race to clear a file standing in its place.
        _make_parents(work, [*plan.fetch, *plan.check, *(record for record, _ in plan.link)])
        for record, source in plan.link:
            _stop_if(cancel)
            _clear_path(work, record.path)
            link_or_copy(model_dir / source, work / record.path)
        if plan.link:
            linked = human_bytes(sum(record.size for record, _ in plan.link))
            log.info("%s: %d file(s) (%s) taken from the revisions on the target", plan.repo_id, len(plan.link), linked)
        fetch_and_verify(plan, work, hub, cancel, transfers)
        _stop_if(cancel)
        removed = remove_files(work, plan.leftovers)
        if removed:
            log.info("%s: removed %d files the commit does not have: %s", plan.repo_id, len(removed), shorten(removed))
        remove_downloader_state(work)
        write_manifest(
            work, new_manifest(entry.repo_id, entry.revision, plan.commit, plan.files, entry.include, entry.exclude)
        )
        write_pointer(model_dir, Pointer(entry.repo_id, plan.revision, plan.commit, plan.previous))
        for old in plan.retire:
            retire(model_dir, old)
        return row_for(plan, str(root), DONE_STATUS[plan.action], time.monotonic() - started)
    except (ModelFailed, OSError) as exc:
        message = str(exc) if isinstance(exc, ModelFailed) else f"{type(exc).__name__}: {exc}"
        log.error("%s: failed: %s", plan.repo_id, message)
        _discard_partial_files(work)
        return row_for(plan, str(root), Status.FAILED, time.monotonic() - started, message)
    except Cancelled:
        _discard_partial_files(work)
        raise


def _discard_partial_files(model_dir: Path) -> None:
    """After a failure or an interruption: drop `.incomplete` files; verified files stay for the next run."""
    with contextlib.suppress(OSError):
        remove_downloader_state(model_dir)


def _stop_if(cancel: threading.Event) -> None:
    if cancel.is_set():
        raise Cancelled


def fetch_and_verify(plan: ModelPlan, model_dir: Path, hub: Hub, cancel: threading.Event, transfers: Executor) -> None:
    """Bring every file of the plan to its verified state; raise ModelFailed naming the files that failed."""
    entry = plan.entry
    commit = plan.commit
    assert entry is not None and commit is not None
    with ModelProgress(plan.repo_id, plan.fetch_bytes, len(plan.fetch), len(plan.check)) as progress:

        def download_hashed(record: FileRecord) -> str | None:
            """Download one file; for a large one, also its hash, taken as the bytes arrived."""
            count = progress.file_counter(record.size)

            def counted(n: int) -> None:
                # A stop ends a plain HTTP transfer at its next chunk, raised on our own thread. Never inside
                # hf_xet's progress callback (another thread): there it would only print a traceback.
                if cancel.is_set() and threading.current_thread().name.startswith(FETCH_THREADS):
                    raise Cancelled
                count(n)

            if record.size < STREAM_HASH_MIN_BYTES:
                hub.download(entry, commit, record.path, model_dir, counted)
                return None
            with StreamingHash(model_dir, record) as streamed:

                def seen(n: int) -> None:
                    streamed.saw(n)
                    counted(n)

                hub.download(entry, commit, record.path, model_dir, seen)
            return streamed.result(model_dir / record.path)

        def settle(record: FileRecord, present: bool) -> None:
            _stop_if(cancel)
            target = model_dir / record.path
            if present:
                found = check_file(model_dir, record)
                if found is None:
                    return
                # The plan could only say "check": say what is fetched after all, and how much.
                log.info(
                    "%s: %s is damaged (%s); fetching it (%s)",
                    plan.repo_id,
                    record.path,
                    found,
                    human_bytes(record.size),
                )
                progress.expect(record.size)
            for attempt in (1, 2):
                _stop_if(cancel)
                _clear_path(model_dir, record.path)
                problem = check_file(model_dir, record, download_hashed(record))
                if problem is None:
                    return
                target.unlink(missing_ok=True)
                if attempt == 1:
                    log.warning(
                        "%s: %s failed verification (%s); downloading it again", plan.repo_id, record.path, problem
                    )
            raise ModelFailed(f"{record.path} failed verification twice ({problem}); the Hub may be serving a bad copy")

        # Files already present are hashed alongside the transfers rather than before them.
        jobs = [(r, False) for r in plan.fetch] + [(r, True) for r in plan.check]
        run_parallel(jobs, lambda job: settle(*job), transfers, cancel)


def run_parallel(
    items: Iterable[tuple[FileRecord, bool]],
    work: Callable[[tuple[FileRecord, bool]], None],
    pool: Executor,
    cancel: threading.Event,
) -> None:
    """Run `work` over items on a (shared) pool; wake often enough to notice `cancel`; collect failures."""
    failures: list[str] = []
    futures: dict[Future[None], str] = {pool.submit(work, item): item[0].path for item in items}
    pending = set(futures)
    try:
        while pending:
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_EXCEPTION)
            for future in done:
                exc = future.exception()
                if isinstance(exc, Cancelled):
                    cancel.set()
                elif isinstance(exc, ModelFailed):
                    failures.append(f"{futures[future]}: {exc}")
                elif exc is not None:
                    failures.append(f"{futures[future]}: {type(exc).__name__}: {exc}")
            _stop_if(cancel)
    finally:
        for future in pending:
            future.cancel()  # not started yet: never starts; in flight: notices `cancel` at its next step
    if failures:
        raise ModelFailed(f"{len(failures)} file(s) failed: {shorten(failures)}")


def _make_parents(model_dir: Path, records: Sequence[FileRecord]) -> None:
    """Every folder the files go in, made real: a file or symlink standing where one goes is removed, never followed."""
    for folder in sorted({str(PurePosixPath(r.path).parent) for r in records} - {"."}):
        current = model_dir
        for part in folder.split("/"):
            current = current / part
            if current.is_symlink() or (current.exists() and not current.is_dir()):
                current.unlink()
        current.mkdir(parents=True, exist_ok=True)


def _clear_path(model_dir: Path, rel: str) -> None:
    """Make room for a file: remove it and any symlink or file standing where one of its parents goes."""
    current = model_dir
    for part in rel.split("/")[:-1]:
        current = current / part
        if current.is_symlink() or (current.exists() and not current.is_dir()):
            current.unlink(missing_ok=True)
    target = model_dir / rel
    if target.is_symlink() or target.exists():
        if target.is_dir() and not target.is_symlink():
            remove_tree(target)
        else:
            target.unlink()


def unverifiable_row(repo_id: str, path: str, present: bool, files: int, size: int, seconds: float = 0.0) -> ModelRow:
    """The verify row of a model with nothing to check against: absent, or without the cache's manifest."""
    state = "incomplete (no manifest)" if present else "missing"
    return ModelRow(repo_id, path, Status.DAMAGED, None, files, size, seconds, f"{state}: run download to fetch it")


def verify_models(
    entries: Sequence[ModelEntry], root: Path, cancel: threading.Event | None = None, *, writable: bool = True
) -> list[ModelRow]:
    """Hash every file of each model's current revision on one pool, so that small and large files share the cores.

    Damage is recorded beside the revision (`mark_damaged`) for the next download, which writes a
    repaired revision beside it; readers keep the revision they have until then. On a read-only
    target the row says that it could not be recorded.
    """
    stop = cancel or threading.Event()
    started = time.monotonic()
    store = LocalStore(root)
    top = store.top()
    held = {e.repo_id: store.held(e.dirname, top[e.dirname]) for e in entries if e.dirname in top}
    current = {repo_id: h.current for repo_id, h in held.items() if h.repo_id == repo_id}
    jobs = [
        (e, record)
        for e in entries
        if (r := current.get(e.repo_id)) is not None and r.manifest is not None
        for record in r.manifest.files
    ]
    problems: dict[str, list[tuple[str, str]]] = {e.repo_id: [] for e in entries}

    def check(job: tuple[ModelEntry, FileRecord]) -> str | None:
        _stop_if(stop)
        revision = current[job[0].repo_id]
        assert revision is not None
        return check_file(revision_dir(root / job[0].dirname, revision.name), job[1])

    pool = ThreadPoolExecutor(max_workers=HASH_WORKERS, thread_name_prefix="hash")
    try:
        futures = [pool.submit(check, job) for job in jobs]
        pending = set(futures)
        while pending:
            _done, pending = wait(pending, timeout=0.2)
            _stop_if(stop)
        for (entry, record), future in zip(jobs, futures, strict=True):
            problem = future.result()
            if problem is not None:
                problems[entry.repo_id].append((record.path, problem))
    finally:
        pool.shutdown(wait=not stop.is_set(), cancel_futures=True)

    rows = []
    for entry in entries:
        model = held.get(entry.repo_id)
        revision = current.get(entry.repo_id)
        seconds = time.monotonic() - started
        path = str(root / entry.dirname)
        if model is None or revision is None or revision.manifest is None:
            files, size = (model.file_count, model.bytes) if model is not None else (0, 0)
            rows.append(unverifiable_row(entry.repo_id, path, model is not None, files, size, seconds))
            continue
        manifest = revision.manifest
        bad = problems[entry.repo_id]
        if not bad:
            rows.append(
                ModelRow(
                    entry.repo_id, path, Status.OK, manifest.commit, len(manifest.files), manifest.total_bytes, seconds
                )
            )
            continue
        described = [f"{rel} ({problem})" for rel, problem in bad]
        error = f"{len(bad)} damaged file(s): {shorten(described)}; run download to repair"
        if writable:
            mark_damaged(revision_dir(root / entry.dirname, revision.name), [rel for rel, _ in bad])
            log.error("%s: %d damaged file(s): %s", entry.repo_id, len(bad), ", ".join(described))
        else:
            unmarked = f"the target is read-only: could not mark {entry.dirname} for repair"
            error += f" ({unmarked})"
            log.error("%s: %d damaged file(s): %s; %s", entry.repo_id, len(bad), ", ".join(described), unmarked)
        rows.append(
            ModelRow(
                entry.repo_id,
                path,
                Status.DAMAGED,
                manifest.commit,
                len(manifest.files),
                manifest.total_bytes,
                seconds,
                error,
            )
        )
    return rows
