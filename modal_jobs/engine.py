"""The cache's work on a directory this process writes: carry out a plan.

`apply_model` is the whole life of one planned model: make room, fetch and check what the plan
names, drop what the commit does not have, and record completion last. It decides nothing. The
same function runs on a local directory and inside a Modal container, on the volume.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from modal_jobs.decide.model_plan import Action, ModelPlan
from modal_jobs.decide.progress import Progress, progress
from modal_jobs.decide.run_plan import fitting
from modal_jobs.disk import (
    clear_path,
    invalidate,
    link_or_copy,
    links_work,
    make_parents,
    remove_downloader_state,
    remove_files,
    write_manifest,
)
from modal_jobs.errors import Cancelled, ModelFailed
from modal_jobs.hashing import StreamingHash, check_file
from modal_jobs.hub import Hub
from modal_jobs.messages import shorten
from modal_jobs.model_dir import FileRecord, new_manifest, revision_dir
from modal_jobs.outcome import Outcome
from modal_jobs.progress import ByteCallback, ModelProgress
from modal_jobs.publish import publish_model
from modal_jobs.pulse import FETCH_THREADS, Pulse, may_start, next_look, on_file_worker
from modal_jobs.store import LocalStore, held_model
from modal_jobs.summary import human_bytes
from modal_jobs.waits import POLL_SECONDS, run_parallel, stop_if

log = logging.getLogger("modal_jobs")

# File transfers in flight at once, shared by every model of a run.
DOWNLOAD_WORKERS = 8
# Models worked on at once on a local target, at most; the next one starts when those running receive no
# more bytes (`pulse`): one stuck model does not hold up the others.
MODEL_WORKERS = 3
# Below this, reading the file back costs less than following its transfer.
STREAM_HASH_MIN_BYTES = 8 << 20


def apply_models(
    plans: Sequence[ModelPlan], target: Path, hub: Hub, cancel: threading.Event, *, publish: bool = True
) -> dict[str, Outcome]:
    """Carry out the FETCH and REPAIR plans over one shared pool of file workers, models started as `pulse` allows.

    `publish=False` (a container on the volume): each revision is left complete, its pointer not moved.

    Returns each one's outcome by model name (the other plans have nothing to carry out).

    Raises Cancelled when the run is asked to stop, after dropping the downloader's partial files;
    nothing that was not complete was marked so.
    """
    work = [p for p in plans if p.action in (Action.FETCH, Action.REPAIR)]
    if not work:
        return {}
    target.mkdir(parents=True, exist_ok=True)
    started, outcomes = _claim_space(work, target)
    if not started:
        return outcomes
    transfers = ThreadPoolExecutor(max_workers=DOWNLOAD_WORKERS, thread_name_prefix=FETCH_THREADS)
    models = ThreadPoolExecutor(max_workers=min(MODEL_WORKERS, len(started)), thread_name_prefix="model")
    waiting = list(started)
    running: dict[Future[Outcome], tuple[ModelPlan, Pulse]] = {}
    look = threading.Event()  # a model ended, or its transfers are over: look again now, not at the next poll
    try:
        while waiting or running:
            pulses, now = [pulse for _, pulse in running.values()], time.monotonic()
            if waiting and may_start(pulses, MODEL_WORKERS, now):
                plan, pulse = waiting.pop(0), Pulse(look)
                future = models.submit(apply_model, plan, target, hub, cancel, transfers, publish, pulse)
                future.add_done_callback(lambda _: look.set())
                running[future] = plan, pulse
                continue
            look.wait(min(POLL_SECONDS, next_look(pulses, now)) if waiting else POLL_SECONDS)
            look.clear()
            done = [f for f in running if f.done()]
            outcomes.update((running.pop(f)[0].name, f.result()) for f in done)
            stop_if(cancel)
        return outcomes
    except Cancelled:
        cancel.set()
        for plan in started:
            if plan.revision is not None:
                _discard_partial_files(revision_dir(target / plan.name, plan.revision))
        raise
    finally:
        # On a stop, do not wait for transfers in flight: the process leaves without them.
        stopping = cancel.is_set()
        models.shutdown(wait=not stopping, cancel_futures=True)
        transfers.shutdown(wait=not stopping, cancel_futures=True)


def _claim_space(work: Sequence[ModelPlan], target: Path) -> tuple[list[ModelPlan], dict[str, Outcome]]:
    """The plans that fit on the disk (`fitting` decides), and a failed outcome for each that does not."""
    # Where links are refused, linked files are copies: they take space too.
    links = not any(p.link for p in work) or links_work(target)
    started, refused = fitting(work, shutil.disk_usage(target).free, str(target), links=links)
    for plan in work:
        if plan.name in refused:
            log.error("%s: failed: %s", plan.repo_id, refused[plan.name])
    return started, {name: Outcome(error=message) for name, message in refused.items()}


def apply_model(
    plan: ModelPlan,
    target: Path,
    hub: Hub,
    cancel: threading.Event,
    transfers: Executor,
    publish: bool,
    pulse: Pulse,
) -> Outcome:
    """Write one model's new revision beside the current one, then (`publish`) make it current in one step.

    Decides nothing: what to link, fetch, check and drop comes from the plan, the commit included.
    Until the pointer moves, readers see the revision they saw before; after, the new one, complete.
    Run twice, or after another run changed the model, it writes nothing it must not (`decide.progress`).
    Without `publish` it stops once the revision is complete: the caller checks it and moves the pointer.
    """
    model_dir = target / plan.name
    started = time.monotonic()
    assert plan.entry is not None and plan.commit is not None and plan.revision is not None, "FETCH and REPAIR only"
    work = revision_dir(model_dir, plan.revision)
    staging = False
    try:
        if model_dir.is_symlink():
            raise ModelFailed(
                f"{model_dir} is a symlink; the cache writes only real directories inside the target: "
                "replace the link with a directory"
            )
        stop_if(cancel)
        state = progress(plan, held_model(target, plan.name))
        if not isinstance(state, Progress):
            raise ModelFailed(state)
        if state is Progress.CURRENT:
            log.info("%s: revision %s is current already; nothing to do", plan.repo_id, plan.revision)
        elif state is Progress.START:
            staging = True
            _stage(plan, model_dir, work, hub, cancel, transfers, pulse)
        if publish:
            publish_model(plan, LocalStore(target))
        return Outcome(seconds=time.monotonic() - started)
    except (ModelFailed, OSError) as exc:
        message = str(exc) if isinstance(exc, ModelFailed) else f"{type(exc).__name__}: {exc}"
        log.error("%s: failed: %s", plan.repo_id, message)
        if staging:
            _discard_partial_files(work)
        return Outcome(message, time.monotonic() - started)
    except Cancelled:
        if staging:
            _discard_partial_files(work)
        raise


def _stage(
    plan: ModelPlan, model_dir: Path, work: Path, hub: Hub, cancel: threading.Event, transfers: Executor, pulse: Pulse
) -> None:
    """The plan's revision made complete beside the current one, its manifest last; no reader looks at it yet."""
    work.mkdir(parents=True, exist_ok=True)
    invalidate(work)
    remove_downloader_state(work)
    # Once, before the workers start: two files of one folder must not race to clear a file standing in its place.
    make_parents(work, [*plan.fetch, *plan.check, *(record for record, _ in plan.link)])
    _link_from_revisions(plan, model_dir, work, cancel)
    fetch_and_verify(plan, work, hub, cancel, transfers, pulse)
    stop_if(cancel)
    _complete(plan, work)


def _link_from_revisions(plan: ModelPlan, model_dir: Path, work: Path, cancel: threading.Event) -> None:
    """The files the plan takes from the revisions already on the target, without the network."""
    for record, source in plan.link:
        stop_if(cancel)
        clear_path(work, record.path)
        link_or_copy(model_dir / source, work / record.path)
    if plan.link:
        linked = human_bytes(sum(record.size for record, _ in plan.link))
        log.info("%s: %d file(s) (%s) taken from the revisions on the target", plan.repo_id, len(plan.link), linked)


def _complete(plan: ModelPlan, work: Path) -> None:
    """Drop what the commit does not have, then record the revision complete: its manifest, written last."""
    entry = plan.entry
    assert entry is not None and plan.commit is not None
    removed = remove_files(work, plan.leftovers)
    if removed:
        log.info("%s: removed %d files the commit does not have: %s", plan.repo_id, len(removed), shorten(removed))
    remove_downloader_state(work)
    write_manifest(
        work, new_manifest(entry.repo_id, entry.revision, plan.commit, plan.files, entry.include, entry.exclude)
    )


def _discard_partial_files(model_dir: Path) -> None:
    """After a failure or an interruption: drop `.incomplete` files; verified files stay for the next run."""
    with contextlib.suppress(OSError):
        remove_downloader_state(model_dir)


def fetch_and_verify(
    plan: ModelPlan, model_dir: Path, hub: Hub, cancel: threading.Event, transfers: Executor, pulse: Pulse
) -> None:
    """Bring every file of the plan to its verified state; raise ModelFailed naming the files that failed."""
    with ModelProgress(plan.repo_id, plan.fetch_bytes, len(plan.fetch), len(plan.check)) as progress:
        files = _ModelFiles(plan, model_dir, hub, cancel, progress, pulse)
        # Files already present are hashed alongside the transfers rather than before them.
        jobs = [(r.path, (r, False)) for r in plan.fetch] + [(r.path, (r, True)) for r in plan.check]
        run_parallel(jobs, lambda job: files.settle(*job), transfers, cancel)


@dataclass(frozen=True)
class _ModelFiles:
    """One model's files on their way to their verified state, each settled on a worker of the shared pool."""

    plan: ModelPlan
    model_dir: Path
    hub: Hub
    cancel: threading.Event
    progress: ModelProgress
    pulse: Pulse

    def settle(self, record: FileRecord, present: bool) -> None:
        """Check a present file; fetch it when absent or damaged, and once more if the fetched copy fails its check."""
        stop_if(self.cancel)
        plan, model_dir = self.plan, self.model_dir
        if present:
            found = check_file(model_dir, record)
            if found is None:
                return
            # The plan could only say "check": say what is fetched after all, and how much.
            log.info(
                "%s: %s is damaged (%s); fetching it (%s)", plan.repo_id, record.path, found, human_bytes(record.size)
            )
            self.progress.expect(record.size)
        for attempt in (1, 2):
            stop_if(self.cancel)
            clear_path(model_dir, record.path)
            problem = check_file(model_dir, record, self.download(record))
            if problem is None:
                return
            (model_dir / record.path).unlink(missing_ok=True)
            if attempt == 1:
                log.warning("%s: %s failed verification (%s); downloading it again", plan.repo_id, record.path, problem)
        raise ModelFailed(f"{record.path} failed verification twice ({problem}); the Hub may be serving a bad copy")

    def download(self, record: FileRecord) -> str | None:
        """Download one file; for a large one, also its hash, taken as the bytes arrived."""
        counted = self._counter(record)
        if record.size < STREAM_HASH_MIN_BYTES:
            self._transfer(record, counted)
            return None
        with StreamingHash(self.model_dir, record) as streamed:

            def seen(n: int) -> None:
                streamed.saw(n)
                counted(n)

            self._transfer(record, seen)
        return streamed.result(self.model_dir / record.path)

    def _transfer(self, record: FileRecord, on_bytes: ByteCallback) -> None:
        entry, commit = self.plan.entry, self.plan.commit
        assert entry is not None and commit is not None
        with self.pulse.transfer():
            self.hub.download(entry, commit, record.path, self.model_dir, on_bytes)

    def _counter(self, record: FileRecord) -> ByteCallback:
        count = self.progress.file_counter(record.size)
        cancel, beat = self.cancel, self.pulse.beat

        def counted(n: int) -> None:
            if on_file_worker():
                # A stop ends it at its next report (a block, or 0.1 s). Never inside hf_xet's progress
                # callback: there it would only print a traceback.
                if cancel.is_set():
                    raise Cancelled
                beat()
            count(n)

        return counted
