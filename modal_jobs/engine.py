"""The cache's operations on a directory the process can write: download and verify.

`download_model` is the whole life of one model: resolve, skip if complete, plan, fetch what is
missing or wrong, verify every file, drop what the commit no longer has, and record completion
last. The same function runs locally and inside a Modal container.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from modal_jobs.catalog import ModelEntry
from modal_jobs.errors import Cancelled, InterruptedRun, ModelFailed
from modal_jobs.hashing import StreamingHash, check_file
from modal_jobs.hub import Hub
from modal_jobs.model_dir import (
    RESERVED_NAMES,
    FileRecord,
    Manifest,
    invalidate,
    new_manifest,
    read_manifest,
    remove_downloader_state,
    remove_extras,
    remove_tree,
    usage,
    walk_files,
    write_manifest,
)
from modal_jobs.progress import ModelProgress
from modal_jobs.summary import ModelRow, human_bytes

log = logging.getLogger("modal_jobs")

DOWNLOAD_WORKERS = 8
# Below this, reading the file back costs less than following its transfer.
STREAM_HASH_MIN_BYTES = 8 << 20
HASH_WORKERS = max(2, os.cpu_count() or 2)


@dataclass(frozen=True)
class ModelPlan:
    """What a download of one model at one commit has to do, decided before any byte moves."""

    commit: str
    files: tuple[FileRecord, ...]
    fetch: tuple[FileRecord, ...]  # absent, or present with the wrong size
    check: tuple[FileRecord, ...]  # present with the right size: hashed, fetched only if wrong
    leftovers: tuple[str, ...]  # on disk, not in the commit

    @property
    def fetch_bytes(self) -> int:
        return sum(f.size for f in self.fetch)

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


def is_current(manifest: Manifest | None, entry: ModelEntry, commit: str | None) -> bool:
    """A manifest that vouches for this entry at this commit (None: commit not known, not checked)."""
    return (
        manifest is not None
        and manifest.repo_id == entry.repo_id
        and (commit is None or manifest.commit == commit)
        and manifest.include == entry.include
        and manifest.exclude == entry.exclude
    )


def target_commit(entry: ModelEntry, hub: Hub) -> str:
    """The commit the model must be at: the pinned one (no request), else what the revision points at now."""
    return entry.pinned_commit or hub.resolve(entry)


def log_plan(entry: ModelEntry, plan: ModelPlan) -> None:
    log.info(
        "%s: would download %d of %d files (%s), check %d present",
        entry.repo_id,
        len(plan.fetch),
        len(plan.files),
        human_bytes(plan.fetch_bytes),
        len(plan.check),
    )


def plan_model(commit: str, files: Sequence[FileRecord], on_disk: dict[str, int]) -> ModelPlan:
    """Split a commit's files by what the disk already holds (`on_disk`: relative path -> size)."""
    wanted = {f.path for f in files}
    return ModelPlan(
        commit=commit,
        files=tuple(files),
        fetch=tuple(f for f in files if on_disk.get(f.path) != f.size),
        check=tuple(f for f in files if on_disk.get(f.path) == f.size),
        leftovers=tuple(sorted(p for p in on_disk if p not in wanted)),
    )


def files_on_disk(model_dir: Path) -> dict[str, int]:
    return {rel: st.st_size for rel, st in walk_files(model_dir) if rel.split("/", 1)[0] not in RESERVED_NAMES}


def download_model(
    entry: ModelEntry,
    root: Path,
    hub: Hub,
    *,
    dry_run: bool = False,
    cancel: threading.Event | None = None,
) -> ModelRow:
    """Make `root/<model>` hold exactly the entry's files at its current commit, verified."""
    model_dir = root / entry.dirname
    started = time.monotonic()
    cancel = cancel or threading.Event()

    def row(status: str, commit: str | None, files: int, size: int, error: str | None = None) -> ModelRow:
        return ModelRow(entry.repo_id, str(model_dir), status, commit, files, size, time.monotonic() - started, error)

    commit: str | None = entry.pinned_commit
    try:
        if model_dir.is_symlink():
            raise ModelFailed(
                f"{model_dir} is a symlink; the cache writes only real directories inside the target: "
                "replace the link with a directory"
            )
        manifest = read_manifest(model_dir)
        commit = target_commit(entry, hub)
        _stop_if(cancel)
        if manifest is not None and is_current(manifest, entry, commit):
            return row("up-to-date", commit, len(manifest.files), manifest.total_bytes)

        plan = plan_model(commit, hub.list_files(entry, commit), files_on_disk(model_dir))
        if dry_run:
            log_plan(entry, plan)
            return row("planned", commit, len(plan.files), plan.fetch_bytes)

        had_partial_copy = manifest is None and model_dir.exists() and bool(plan.check or plan.leftovers)
        _stop_if(cancel)
        require_space(root, plan.fetch_bytes)
        model_dir.mkdir(parents=True, exist_ok=True)
        invalidate(model_dir)
        remove_downloader_state(model_dir)
        fetch_and_verify(entry, plan, model_dir, hub, cancel)
        removed = remove_extras(model_dir, keep={f.path for f in plan.files})
        if removed:
            log.info(
                "%s: removed %d files the commit does not have: %s",
                entry.repo_id,
                len(removed),
                _shorten(removed),
            )
        remove_downloader_state(model_dir)
        write_manifest(
            model_dir,
            new_manifest(entry.repo_id, entry.revision, commit, plan.files, entry.include, entry.exclude),
        )
        status = "repaired" if had_partial_copy else "downloaded"
        return row(status, commit, len(plan.files), plan.total_bytes)
    except (ModelFailed, OSError) as exc:
        message = str(exc) if isinstance(exc, ModelFailed) else f"{type(exc).__name__}: {exc}"
        log.error("%s: failed: %s", entry.repo_id, message)
        _discard_partial_files(model_dir)
        return row("failed", commit, 0, 0, message)
    except Cancelled:
        _discard_partial_files(model_dir)
        raise InterruptedRun(
            f"interrupted while downloading {entry.repo_id}; nothing was marked complete: run the same command again"
            " to resume"
        ) from None


def require_space(root: Path, needed: int) -> None:
    """Refuse before transferring when the bytes still needed exceed the free space: never fill a disk halfway."""
    free = shutil.disk_usage(root if root.exists() else root.parent).free
    if needed > free:
        raise ModelFailed(
            f"not enough free space on {root}: needs {human_bytes(needed)}, {human_bytes(free)} free; "
            "free some space or select fewer models"
        )


def _discard_partial_files(model_dir: Path) -> None:
    """After a failure or an interruption: drop `.incomplete` files; verified files stay for the next run."""
    with contextlib.suppress(OSError):
        remove_downloader_state(model_dir)


def _stop_if(cancel: threading.Event) -> None:
    if cancel.is_set():
        raise Cancelled


def fetch_and_verify(entry: ModelEntry, plan: ModelPlan, model_dir: Path, hub: Hub, cancel: threading.Event) -> None:
    """Bring every file of the plan to its verified state; raise ModelFailed naming the files that failed."""
    with ModelProgress(entry.repo_id, plan.fetch_bytes) as progress:

        def on_bytes(n: int) -> None:
            _stop_if(cancel)
            progress.add(n)

        def download_hashed(record: FileRecord) -> str | None:
            """Download one file; for a large one, also its hash, taken as the bytes arrived."""
            if record.size < STREAM_HASH_MIN_BYTES:
                hub.download(entry, plan.commit, record.path, model_dir, on_bytes)
                return None
            with StreamingHash(model_dir, record) as streamed:

                def counted(n: int) -> None:
                    streamed.saw(n)
                    on_bytes(n)

                hub.download(entry, plan.commit, record.path, model_dir, counted)
            return streamed.result(model_dir / record.path)

        def settle(record: FileRecord, present: bool) -> None:
            _stop_if(cancel)
            target = model_dir / record.path
            if present and check_file(model_dir, record) is None:
                return
            for attempt in (1, 2):
                _clear_path(model_dir, record.path)
                problem = check_file(model_dir, record, download_hashed(record))
                if problem is None:
                    return
                target.unlink(missing_ok=True)
                if attempt == 1:
                    log.warning(
                        "%s: %s failed verification (%s); downloading it again",
                        entry.repo_id,
                        record.path,
                        problem,
                    )
            raise ModelFailed(f"{record.path} failed verification twice ({problem}); the Hub may be serving a bad copy")

        # Files already present are hashed alongside the transfers rather than before them.
        jobs = [(r, False) for r in plan.fetch] + [(r, True) for r in plan.check]
        run_parallel(jobs, lambda job: settle(*job), DOWNLOAD_WORKERS, cancel)


def run_parallel(
    items: Iterable[tuple[FileRecord, bool]],
    work: Callable[[tuple[FileRecord, bool]], None],
    workers: int,
    cancel: threading.Event,
) -> None:
    """Run `work` over items on a thread pool; wake often enough to notice `cancel`; collect failures."""
    failures: list[str] = []
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fetch")
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
        # On a stop, do not wait for transfers in flight: they notice at their next chunk.
        pool.shutdown(wait=not cancel.is_set(), cancel_futures=True)
    if failures:
        raise ModelFailed(f"{len(failures)} file(s) failed: {_shorten(failures)}")


def _clear_path(model_dir: Path, rel: str) -> None:
    """Make room for a file: remove it and any symlink or file standing where one of its parents goes."""
    current = model_dir
    for part in rel.split("/")[:-1]:
        current = current / part
        if current.is_symlink() or (current.exists() and not current.is_dir()):
            current.unlink()
    target = model_dir / rel
    if target.is_symlink() or target.exists():
        if target.is_dir() and not target.is_symlink():
            remove_tree(target)
        else:
            target.unlink()


def verify_models(entries: Sequence[ModelEntry], root: Path) -> list[ModelRow]:
    """Hash every file of every selected model on one pool, so that small and large files share the cores."""
    started = time.monotonic()
    manifests = {e.repo_id: read_manifest(root / e.dirname) for e in entries}
    jobs = [
        (e, record)
        for e in entries
        if (m := manifests[e.repo_id]) is not None and m.repo_id == e.repo_id
        for record in m.files
    ]
    problems: dict[str, list[str]] = {e.repo_id: [] for e in entries}
    with ThreadPoolExecutor(max_workers=HASH_WORKERS, thread_name_prefix="hash") as pool:
        results = pool.map(lambda job: check_file(root / job[0].dirname, job[1]), jobs)
        for (entry, record), problem in zip(jobs, results, strict=True):
            if problem is not None:
                problems[entry.repo_id].append(f"{record.path} ({problem})")

    rows = []
    for entry in entries:
        model_dir = root / entry.dirname
        manifest = manifests[entry.repo_id]
        seconds = time.monotonic() - started
        if manifest is None or manifest.repo_id != entry.repo_id:
            state = "missing" if not model_dir.exists() else "incomplete (no manifest)"
            files, size = usage(model_dir) if model_dir.is_dir() else (0, 0)
            rows.append(
                ModelRow(
                    entry.repo_id,
                    str(model_dir),
                    "damaged",
                    None,
                    files,
                    size,
                    seconds,
                    f"{state}: run download to fetch it",
                )
            )
            continue
        bad = problems[entry.repo_id]
        if bad:
            invalidate(model_dir)
            log.error("%s: %d damaged file(s): %s", entry.repo_id, len(bad), ", ".join(bad))
            error = f"{len(bad)} damaged file(s): {_shorten(bad)}; run download to repair"
            rows.append(
                ModelRow(
                    entry.repo_id,
                    str(model_dir),
                    "damaged",
                    manifest.commit,
                    len(manifest.files),
                    manifest.total_bytes,
                    seconds,
                    error,
                )
            )
        else:
            rows.append(
                ModelRow(
                    entry.repo_id,
                    str(model_dir),
                    "ok",
                    manifest.commit,
                    len(manifest.files),
                    manifest.total_bytes,
                    seconds,
                )
            )
    return rows


def _shorten(items: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown} ({len(items) - limit} more)"
