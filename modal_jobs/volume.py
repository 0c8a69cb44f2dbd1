"""The Modal Volume target: planned and inspected from this machine, written only by containers.

```
this machine                                   Modal
------------                                   -----
VolumeStore ── Volume client API ──────────►   Volume <name>          list, clear, manifests,
  (listdir / read_file / remove_file)            └── <model>/…          sizes: no container
ModalBackend.download
  plan: manifest + hub.resolve + is_current
  start only what needs work ── app.run() ──►  download_one(model)    one container per model,
                                               verify_one(model)      each writing only its dir
```

`list` and `clear` never build an image or start a container. A `download` where every model is
complete does not even start the app. Every Modal problem that can be seen before anything starts
(no credentials, no volume, Modal unreachable) is a one-line `TargetError` (exit 2).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from dataclasses import dataclass
from typing import Any, Protocol

import modal
import modal.config
import modal.exception
from modal.types import FileEntry, FileEntryType

from modal_jobs.catalog import Catalog, ModelEntry, VolumeSpec
from modal_jobs.engine import is_current, log_plan, plan_model, target_commit
from modal_jobs.errors import InterruptedRun, ModelFailed, TargetError
from modal_jobs.hub import Hub
from modal_jobs.model_dir import MANIFEST_NAME, RESERVED_NAMES, Manifest, parse_manifest
from modal_jobs.operations import Backend
from modal_jobs.store import Store
from modal_jobs.summary import ModelRow

log = logging.getLogger("modal_jobs")

POLL_SECONDS = 1.0
SETUP_HINT = "run `modal setup` (or set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET), or pass --local-dir DIR"


class VolumeClient(Protocol):
    """The part of `modal.Volume` this module uses; tests pass a stand-in over a directory."""

    def hydrate(self) -> object: ...

    def listdir(self, path: str, *, recursive: bool = False) -> list[FileEntry]: ...

    def read_file(self, path: str) -> Iterable[bytes]: ...

    def remove_file(self, path: str, recursive: bool = False) -> None: ...


# -- credentials and errors ----------------------------------------------------------------


def require_credentials(config: Any = modal.config.config) -> None:
    """Refuse early, without a network call, when modal's config holds no way to authenticate."""
    tokens = config.get("token_id") and config.get("token_secret")
    oauth = config.get("oauth_refresh_token") and config.get("oauth_client_id")
    if not (tokens or oauth):
        raise TargetError(f"no Modal credentials found; {SETUP_HINT}")


def environment_name(config: Any = modal.config.config) -> str:
    """Where names resolve, for messages: MODAL_ENVIRONMENT, else the profile's environment, else the default."""
    name = config.get("environment")
    return f"environment {name!r}" if name else "the default environment"


@contextmanager
def modal_errors(doing: str) -> Iterator[None]:
    """Turn what the Modal client raises when it cannot work at all into one line and exit code 2."""
    try:
        yield
    except modal.exception.AuthError as exc:
        raise TargetError(f"{doing}: Modal refused the credentials ({exc}); {SETUP_HINT}") from None
    except (modal.exception.ConnectionError, ConnectionError) as exc:
        raise TargetError(
            f"{doing}: cannot reach Modal ({type(exc).__name__}: {exc}); check the network and try again"
        ) from None


# -- the store -----------------------------------------------------------------------------


class VolumeStore:
    """The volume through the client API: a `Store` for `list`/`clear`, and the planner's view of it."""

    def __init__(self, volume: VolumeClient, spec: VolumeSpec, environment: str = "") -> None:
        self.volume = volume
        self.spec = spec
        self.environment = environment
        self.location = spec.mount  # rows name what the inference service sees: <mount>/<model>

    def exists(self) -> bool:
        with modal_errors(f"Modal Volume {self.spec.name!r}"):
            try:
                self.volume.hydrate()
            except modal.exception.NotFoundError:
                return False
        return True

    def names(self) -> list[str]:
        return sorted(self.top())

    def top(self) -> dict[str, FileEntry]:
        """Top-level entries by name, hidden ones excluded; a missing volume is a `TargetError`."""
        if not self.exists():
            where = f" in {self.environment}" if self.environment else ""
            raise TargetError(
                f"the Modal Volume {self.spec.name!r} does not exist{where}; run `python -m modal_jobs "
                "download` (or `modal run -m modal_jobs.download_models`) to create it, "
                "or check MODAL_ENVIRONMENT"
            )
        entries = (_relative(e, "") for e in self._listdir("/", recursive=False))
        return {path: entry for path, entry in entries if path and "/" not in path and not path.startswith(".")}

    def read_manifest(self, name: str) -> Manifest | None:
        if not self._is_dir(name):
            return None
        path = f"{name}/{MANIFEST_NAME}"
        if [e.type for e in self._listdir(path, recursive=False)] != [FileEntryType.FILE]:
            return None  # absent, or a link or a directory standing where the manifest goes
        with modal_errors(f"reading {path}"):
            try:
                data = b"".join(self.volume.read_file(path))
            except FileNotFoundError:
                return None
        return parse_manifest(data, f"{self.spec.name}:{path}")

    def usage(self, name: str) -> tuple[int, int]:
        entry = self.top().get(name)
        if entry is None:
            return (0, 0)
        if entry.type != FileEntryType.DIRECTORY:
            return (1, entry.size if entry.type == FileEntryType.FILE else 0)
        files = size = 0
        for rel, item in self._tree(name):
            if rel.split("/", 1)[0] in RESERVED_NAMES:
                continue
            files += 1
            size += item.size if item.type == FileEntryType.FILE else 0
        return files, size

    def files(self, name: str) -> dict[str, int]:
        """Relative path -> size of what a model directory holds, the cache's own state left out."""
        if not self._is_dir(name):
            return {}
        return {rel: item.size for rel, item in self._tree(name) if rel.split("/", 1)[0] not in RESERVED_NAMES}

    def remove(self, name: str) -> None:
        with modal_errors(f"removing {name}"):
            if self._is_dir(name):
                # The manifest goes first: an interrupted clear must not leave it over half a model.
                with suppress(FileNotFoundError):
                    self.volume.remove_file(f"{name}/{MANIFEST_NAME}")
            # A link is removed as a link: the volume server deletes the path, it does not follow it.
            with suppress(FileNotFoundError):
                self.volume.remove_file(name, recursive=True)

    def _is_dir(self, name: str) -> bool:
        entry = self.top().get(name)
        return entry is not None and entry.type == FileEntryType.DIRECTORY

    def _tree(self, name: str) -> Iterator[tuple[str, FileEntry]]:
        """Every non-directory entry below a model directory; links are listed, never entered."""
        for entry in self._listdir(name, recursive=True):
            rel, item = _relative(entry, name)
            if rel and item.type != FileEntryType.DIRECTORY:
                yield rel, item

    def _listdir(self, path: str, *, recursive: bool) -> list[FileEntry]:
        with modal_errors(f"listing {self.spec.name}:{path}"):
            try:
                return self.volume.listdir(path, recursive=recursive)
            except (modal.exception.NotFoundError, FileNotFoundError):
                return []


def _relative(entry: FileEntry, parent: str) -> tuple[str, FileEntry]:
    """The entry's path below `parent`, or "" when not below it; the server's paths have no leading '/'."""
    path = entry.path.strip("/")
    if not parent:
        return path, entry
    prefix = parent.strip("/") + "/"
    return (path[len(prefix) :] if path.startswith(prefix) else ""), entry


# -- the backend ---------------------------------------------------------------------------

# Starts one container per entry for "download" or "verify" and returns their rows in entry order.
StartContainers = Callable[[str, Sequence[ModelEntry], threading.Event], list[ModelRow]]


class ModalBackend:
    """Plans on this machine, and starts containers only for the models that need work."""

    def __init__(self, store: VolumeStore, hub: Hub, start: StartContainers) -> None:
        self.store: Store = store  # what `operations` sees
        self.volume_store = store  # the same, with what planning needs
        self.hub = hub
        self.start = start

    def exclusive(self, wait_seconds: float, cancel: threading.Event) -> AbstractContextManager[None]:
        # No lock spans this machine and the containers: the workflow's concurrency group is the guard,
        # and each container writes only its own model's directory.
        return nullcontext()

    def download(self, entries: Sequence[ModelEntry], *, dry_run: bool, cancel: threading.Event) -> list[ModelRow]:
        present = self.volume_store.top() if self.volume_store.exists() else {}
        rows: dict[str, ModelRow] = {}
        work: list[ModelEntry] = []
        for entry in entries:
            if cancel.is_set():
                raise InterruptedRun("interrupted while planning; nothing was started: run the same command again")
            row = self.plan_download(entry, present.get(entry.dirname), dry_run=dry_run)
            if row is None:
                work.append(entry)
            else:
                rows[entry.repo_id] = row
        if work:
            log.info("starting %d container(s): %s", len(work), ", ".join(e.repo_id for e in work))
            rows.update((row.repo_id, row) for row in self.start("download", work, cancel))
        elif not dry_run:
            log.info("no model needs a container; none started")
        return [rows[e.repo_id] for e in entries]

    def plan_download(self, entry: ModelEntry, top: FileEntry | None, *, dry_run: bool) -> ModelRow | None:
        """The row of a model that needs no container (complete, failed to resolve, or dry run), else None.

        The same decisions as `engine.download_model`, taken from the volume's client API.
        """
        path = _join(self.store.location, entry.dirname)
        started = time.monotonic()

        def row(status: str, commit: str | None, files: int, size: int, error: str | None = None) -> ModelRow:
            return ModelRow(entry.repo_id, path, status, commit, files, size, time.monotonic() - started, error)

        if top is not None and top.type == FileEntryType.SYMLINK:
            error = (
                f"{path} is a symlink; the cache writes only real directories inside the target: "
                "replace the link with a directory"
            )
            log.error("%s: failed: %s", entry.repo_id, error)
            return row("failed", entry.pinned_commit, 0, 0, error)
        manifest = self.store.read_manifest(entry.dirname) if top is not None else None
        commit = entry.pinned_commit
        try:
            commit = target_commit(entry, self.hub)
            if manifest is not None and is_current(manifest, entry, commit):
                return row("up-to-date", commit, len(manifest.files), manifest.total_bytes)
            if not dry_run:
                return None
            on_volume = self.volume_store.files(entry.dirname) if top is not None else {}
            plan = plan_model(commit, self.hub.list_files(entry, commit), on_volume)
        except ModelFailed as exc:
            log.error("%s: failed: %s", entry.repo_id, exc)
            return row("failed", commit, 0, 0, str(exc))
        log_plan(entry, plan)
        return row("planned", commit, len(plan.files), plan.fetch_bytes)

    def verify(self, entries: Sequence[ModelEntry]) -> list[ModelRow]:
        """Hash in containers, one per model with a manifest; what has none is reported from here."""
        present = self.volume_store.top()
        rows: dict[str, ModelRow] = {}
        work: list[ModelEntry] = []
        for entry in entries:
            top = present.get(entry.dirname)
            manifest = self.store.read_manifest(entry.dirname) if top is not None else None
            if manifest is not None and manifest.repo_id == entry.repo_id:
                work.append(entry)
                continue
            state = "missing" if top is None else "incomplete (no manifest)"
            is_dir = top is not None and top.type == FileEntryType.DIRECTORY
            files, size = self.store.usage(entry.dirname) if is_dir else (0, 0)
            path = _join(self.store.location, entry.dirname)
            error = f"{state}: run download to fetch it"
            rows[entry.repo_id] = ModelRow(entry.repo_id, path, "damaged", None, files, size, 0.0, error)
        if work:
            log.info("starting %d container(s) to verify: %s", len(work), ", ".join(e.repo_id for e in work))
            rows.update((row.repo_id, row) for row in self.start("verify", work, threading.Event()))
        return [rows[e.repo_id] for e in entries]


# -- containers ----------------------------------------------------------------------------


class PendingCall(Protocol):
    """What `Function.spawn` returns, as far as collecting its result goes."""

    def get(self, timeout: float | None = None) -> Any: ...

    def cancel(self, terminate_containers: bool = False) -> None: ...


@dataclass
class ModalContainers:
    """Starts `download_one`/`verify_one` in parallel, inside `app.run()` unless `modal run` started it."""

    catalog: Catalog
    app_running: bool = False

    def __call__(self, operation: str, entries: Sequence[ModelEntry], cancel: threading.Event) -> list[ModelRow]:
        from modal_jobs import download_models as jobs

        if jobs.CATALOG.volume != self.catalog.volume:
            wanted, built = self.catalog.volume, jobs.CATALOG.volume
            raise TargetError(
                f"{self.catalog.path} names the volume {wanted.name!r} at {wanted.mount}, but the Modal app "
                f"is built from {jobs.CATALOG_PATH} ({built.name!r} at {built.mount}); keep the two in step, "
                "or use --local-dir"
            )
        function = jobs.download_one if operation == "download" else jobs.verify_one
        running: AbstractContextManager[object] = nullcontext() if self.app_running else jobs.app.run()
        with modal_errors("starting the Modal app"), running:
            if operation == "download":
                secrets = hf_secrets(os.environ, jobs.HF_SECRET_NAME)
                if secrets:
                    function = function.with_options(secrets=secrets)
            calls = [function.spawn(*jobs.entry_args(entry)) for entry in entries]
            return collect(calls, entries, self.catalog.volume.mount, cancel)


def collect(
    calls: Sequence[PendingCall], entries: Sequence[ModelEntry], mount: str, cancel: threading.Event
) -> list[ModelRow]:
    """Each call's row, in entry order; a container that raised becomes one `failed` row, not a crash."""
    results: dict[int, ModelRow] = {}
    started = time.monotonic()
    while len(results) < len(calls):
        for i, call in enumerate(calls):
            if i in results:
                continue
            if cancel.is_set():
                for j, other in enumerate(calls):
                    if j not in results:
                        other.cancel(terminate_containers=True)
                raise InterruptedRun(
                    "interrupted; the containers still running were stopped and what they wrote is not "
                    "marked complete: run the same command again to resume"
                )
            try:
                value = call.get(timeout=POLL_SECONDS)
            except TimeoutError as exc:
                if not exc.args:  # modal's "no output yet"; a container's own TimeoutError carries a message
                    continue
                value = exc
            except Exception as exc:
                value = exc
            results[i] = _row(value, entries[i], mount, time.monotonic() - started)
            log.info("%s: %s", entries[i].repo_id, results[i].status)
    return [results[i] for i in range(len(calls))]


def _row(value: object, entry: ModelEntry, mount: str, seconds: float) -> ModelRow:
    if isinstance(value, Mapping):
        try:
            return ModelRow(**value)
        except TypeError as exc:
            value = exc
    error = f"container failed: {type(value).__name__}: {value}" if isinstance(value, BaseException) else (
        f"container returned {type(value).__name__}, not a row"
    )  # fmt: skip
    log.error("%s: %s", entry.repo_id, error)
    return ModelRow(entry.repo_id, _join(mount, entry.dirname), "failed", entry.pinned_commit, 0, 0, seconds, error)


def hf_secrets(
    environ: Mapping[str, str],
    secret_name: str,
    find_secret: Callable[[str], modal.Secret | None] | None = None,
) -> list[modal.Secret]:
    """The Hub token for the containers: HF_TOKEN from here, else the named Modal secret, else none.

    The token travels as a Modal secret built now, at call time; it is never logged or printed.
    """
    token = environ.get("HF_TOKEN")
    if token:
        log.info("passing HF_TOKEN from this environment to the containers")
        return [modal.Secret.from_dict({"HF_TOKEN": token})]
    secret = (find_secret or _named_secret)(secret_name)
    if secret is None:
        return []  # public repos need no token
    log.info("using the Modal secret %r for the Hub", secret_name)
    return [secret]


def _named_secret(name: str) -> modal.Secret | None:
    secret = modal.Secret.from_name(name)
    try:
        secret.hydrate()
    except modal.exception.NotFoundError:
        return None
    return secret


def open_volume_backend(catalog: Catalog, hub: Hub, *, app_running: bool = False) -> Backend:
    """The volume named in the model list, checked for credentials before anything touches the network."""
    require_credentials()
    store = VolumeStore(modal.Volume.from_name(catalog.volume.name), catalog.volume, environment_name())
    return ModalBackend(store, hub, ModalContainers(catalog, app_running=app_running))


def _join(location: str, name: str) -> str:
    return f"{location.rstrip('/')}/{name}"
