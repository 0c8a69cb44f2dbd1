"""The four operations over a target, as the CLI, nox and the workflows run them.

A `Backend` is where the bytes are: `LocalBackend` for a directory on this machine, the Modal
backend (`modal_jobs.volume`) for the volume. `list` and `clear` only need the backend's `Store`;
`download` and `verify` need the bytes and go through the backend.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from modal_jobs.catalog import ALL_SIZES, Catalog, ModelEntry, select_models
from modal_jobs.engine import download_model, is_current, verify_models
from modal_jobs.errors import Cancelled, InterruptedRun, UsageError
from modal_jobs.hub import Hub, HubError
from modal_jobs.lock import target_lock
from modal_jobs.store import LocalStore, Store
from modal_jobs.summary import ModelRow, OrphanRow, Summary, human_bytes

log = logging.getLogger("modal_jobs")


class Backend(Protocol):
    store: Store

    def exclusive(self, wait_seconds: float, cancel: threading.Event) -> AbstractContextManager[None]:
        """Held while a run writes, so that two runs never interleave writes on one target."""
        ...

    def download(self, entries: Sequence[ModelEntry], *, dry_run: bool, cancel: threading.Event) -> list[ModelRow]: ...

    def verify(self, entries: Sequence[ModelEntry]) -> list[ModelRow]: ...


class LocalBackend:
    """A directory this process writes directly."""

    def __init__(self, root: Path, hub: Hub | None = None) -> None:
        self.root = root
        self.store: Store = LocalStore(root)
        self.hub = hub or Hub()

    def exclusive(self, wait_seconds: float, cancel: threading.Event) -> AbstractContextManager[None]:
        return target_lock(self.root, wait_seconds, cancel)

    def download(self, entries: Sequence[ModelEntry], *, dry_run: bool, cancel: threading.Event) -> list[ModelRow]:
        if not dry_run:
            self.root.mkdir(parents=True, exist_ok=True)
        return [download_model(e, self.root, self.hub, dry_run=dry_run, cancel=cancel) for e in entries]

    def verify(self, entries: Sequence[ModelEntry]) -> list[ModelRow]:
        return verify_models(entries, self.root)


@dataclass(frozen=True)
class Request:
    """What the person asked for, already parsed."""

    operation: str
    sizes: tuple[str, ...] = ()
    repo_ids: tuple[str, ...] = ()
    dry_run: bool = False
    yes: bool = False
    lock_wait: float = 60.0

    @property
    def writes(self) -> bool:
        return self.operation in ("download", "verify", "clear") and not self.dry_run


def run(
    request: Request, catalog: Catalog, backend: Backend, hub: Hub, cancel: threading.Event | None = None
) -> Summary:
    """Select the models, hold the target while writing, and run the operation."""
    entries = select_models(catalog, request.sizes, request.repo_ids)
    selected = bool(request.sizes or request.repo_ids)
    cancel = cancel or threading.Event()
    store = backend.store
    try:
        with backend.exclusive(request.lock_wait, cancel) if request.writes else nullcontext():
            if request.operation == "download":
                rows = backend.download(entries, dry_run=request.dry_run, cancel=cancel)
                return Summary("download", store.location, tuple(rows))
            if request.operation == "list":
                rows, orphans = list_models(entries, catalog, store, hub.resolve)
                return Summary("list", store.location, tuple(rows), tuple(orphans))
            if request.operation == "verify":
                present = set(store.names())
                chosen = entries if selected else [e for e in entries if e.dirname in present]
                return Summary("verify", store.location, tuple(backend.verify(chosen)))
            if request.operation == "clear":
                rows = clear(clear_selection(entries, request) if selected else None, catalog, store, request)
                return Summary("clear", store.location, tuple(rows))
    except Cancelled:
        raise InterruptedRun("interrupted; nothing was marked complete: run the same command again to resume") from None
    raise UsageError(f"unknown operation {request.operation!r}; use download, list, verify or clear")


def clear_selection(entries: Sequence[ModelEntry], request: Request) -> list[ModelEntry]:
    """What a selective clear removes: a size label takes its own models, not the shared ones the others need."""
    if any(size.lower() in ALL_SIZES for size in request.sizes):
        return list(entries)
    return [e for e in entries if e.size is not None or e.repo_id in request.repo_ids]


def model_state(exists: bool, has_manifest: bool, current: bool) -> str:
    """`missing`, `incomplete`, `stale` (complete, but not what the list pins now) or `complete`."""
    if not exists:
        return "missing"
    if not has_manifest:
        return "incomplete"
    return "complete" if current else "stale"


def list_models(
    entries: Sequence[ModelEntry], catalog: Catalog, store: Store, resolve: Callable[[ModelEntry], str]
) -> tuple[list[ModelRow], list[OrphanRow]]:
    """Each model's state on the target; the Hub is asked only about models complete at some commit."""
    names = set(store.names())
    rows = []
    for entry in entries:
        path = _join(store.location, entry.dirname)
        if entry.dirname not in names:
            rows.append(ModelRow(entry.repo_id, path, "missing"))
            continue
        manifest = store.read_manifest(entry.dirname)
        if manifest is not None and manifest.repo_id != entry.repo_id:
            manifest = None
        files, size = store.usage(entry.dirname)
        error = None
        current = False
        if manifest is not None:
            try:
                commit = entry.pinned_commit or resolve(entry)
                current = is_current(manifest, entry, commit)
            except HubError as exc:
                # Offline or refused: say what is on the target, and why staleness is unknown.
                current = is_current(manifest, entry, None)
                error = f"could not check for a newer commit: {exc}"
                log.warning("%s: %s", entry.repo_id, error)
        state = model_state(True, manifest is not None, current)
        rows.append(
            ModelRow(entry.repo_id, path, state, manifest.commit if manifest else None, files, size, error=error)
        )
    owned = {m.dirname for m in catalog.models}
    orphans = [OrphanRow(name, _join(store.location, name), *store.usage(name)) for name in sorted(names - owned)]
    return rows, orphans


def clear(entries: Sequence[ModelEntry] | None, catalog: Catalog, store: Store, request: Request) -> list[ModelRow]:
    """Remove the selected models, or everything on the target when nothing is selected.

    Without `--yes` it refuses, listing what would go: no prompt, so it never hangs in CI.
    """
    present = store.names()
    names = present if entries is None else [e.dirname for e in entries if e.dirname in present]
    owners = {m.dirname: m.repo_id for m in catalog.models}
    sized = [(name, *store.usage(name)) for name in names]
    total = sum(size for _, _, size in sized)
    if not names:
        log.info("clear: nothing to remove on %s", store.location)
        return []
    if not request.yes and not request.dry_run:
        listing = ", ".join(f"{n}/" for n in names)
        raise UsageError(
            f"clear would remove {len(names)} director{'y' if len(names) == 1 else 'ies'} "
            f"({human_bytes(total)}) from {store.location}: {listing}; add --yes to remove them "
            "(--dry-run only lists them)"
        )
    rows = []
    for name, files, size in sized:
        if not request.dry_run:
            store.remove(name)
            log.info("removed %s (%s)", _join(store.location, name), human_bytes(size))
        status = "would-remove" if request.dry_run else "removed"
        rows.append(ModelRow(owners.get(name, name), _join(store.location, name), status, None, files, size))
    return rows


def _join(location: str, name: str) -> str:
    return f"{location.rstrip('/')}/{name}"
