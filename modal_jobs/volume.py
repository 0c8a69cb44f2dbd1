"""The Modal Volume target: surveyed and planned from this machine, written only by containers.

```
this machine                                      Modal
------------                                      -----
VolumeStore ── 1 lookup, 1 root listing ─────►    Volume <name>
            ── per model: 1 listing, then ───►      └── <model>/…        list, clear, prune, plans:
               1 read per pointer, manifest                              no container
               or damage mark in it
ModalBackend.apply(plan)
  FETCH / REPAIR ── app.run(), spawn ────────►    apply_one(plan)       one container per model,
  log lines ◄────── ephemeral queue ──────────      verify_one(model)     each writing only its dir
```

Every Modal problem that can be seen before anything starts (no credentials, Modal unreachable,
no volume where one must exist) is a one-line `TargetError` (exit 2), within `CONNECT_SECONDS`.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from dataclasses import dataclass, field
from typing import Any, Protocol

import modal
import modal.config
import modal.exception
from modal.types import FileEntry, FileEntryType

from modal_jobs.catalog import Catalog, ModelEntry, VolumeSpec
from modal_jobs.decide.facts import NOT_A_FILE, HeldModel, Kind, is_record
from modal_jobs.decide.model_plan import Action, ModelPlan
from modal_jobs.engine import unverifiable_row
from modal_jobs.errors import InterruptedRun, TargetError
from modal_jobs.model_dir import MANIFEST_NAME, POINTER_NAME
from modal_jobs.rows import DONE_STATUS, row_for
from modal_jobs.store import Store
from modal_jobs.summary import ModelRow, Status

log = logging.getLogger("modal_jobs")

POLL_SECONDS = 1.0
# Modal's client retries a refused connection for about a minute; the first call gets this long.
CONNECT_SECONDS = 10.0
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


def within(seconds: float, call: Callable[[], Any], doing: str) -> Any:
    """Run the run's first Modal call with a deadline: the client's own retries would take about a minute."""
    outcome: dict[str, Any] = {}

    def go() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=go, name="modal-connect", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise TargetError(f"{doing}: no answer from Modal within {seconds:.0f}s; check the network and try again")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


# -- the store -----------------------------------------------------------------------------


class VolumeStore:
    """The volume through the client API: what planning, `list` and `clear` see, with no container."""

    def __init__(self, volume: VolumeClient, spec: VolumeSpec, environment: str = "") -> None:
        self.volume = volume
        self.spec = spec
        self.environment = environment
        self.location = spec.mount  # rows name what the inference service sees: <mount>/<model>
        self._exists: bool | None = None
        self._top: dict[str, FileEntry] | None = None

    def exists(self) -> bool:
        """Looked up once per run."""
        if self._exists is None:
            with modal_errors(f"Modal Volume {self.spec.name!r}"):
                try:
                    within(CONNECT_SECONDS, self.volume.hydrate, f"Modal Volume {self.spec.name!r}")
                    self._exists = True
                except modal.exception.NotFoundError:
                    self._exists = False
        return self._exists

    def require(self) -> None:
        if not self.exists():
            where = f" in {self.environment}" if self.environment else ""
            raise TargetError(
                f"the Modal Volume {self.spec.name!r} does not exist{where}; run `python -m modal_jobs "
                "download` to create it, or check MODAL_ENVIRONMENT"
            )

    def top(self) -> dict[str, Kind]:
        """Top-level names, hidden ones excluded: one root listing per run; a missing volume holds nothing."""
        if self._top is None:
            if not self.exists():
                return {}
            entries = (_relative(e, "") for e in self._listdir("/", recursive=False))
            self._top = {path: e for path, e in entries if path and "/" not in path and not path.startswith(".")}
        return {name: _kind(entry) for name, entry in self._top.items()}

    def held(self, name: str, kind: Kind) -> HeldModel:
        """One recursive listing of the model directory, and one read per pointer, manifest or damage mark in it."""
        if kind is not Kind.DIRECTORY:
            entry = (self._top or {}).get(name)
            return HeldModel(name, kind, {name: entry.size if entry and kind is Kind.FILE else 0})
        files: dict[str, int] = {}
        for entry in self._listdir(name, recursive=True):
            rel, item = _relative(entry, name)
            if rel and item.type != FileEntryType.DIRECTORY:
                files[rel] = item.size if item.type == FileEntryType.FILE else NOT_A_FILE
        texts = {}
        for rel, size in sorted(files.items()):
            if size >= 0 and is_record(rel):  # a link standing for one of our files is not trusted
                path = f"{name}/{rel}"
                with modal_errors(f"reading {path}"), suppress(FileNotFoundError):
                    texts[rel] = b"".join(self.volume.read_file(path))
        return HeldModel(name, kind, files, texts)

    def remove(self, name: str) -> None:
        kind = self.top().get(name)
        with modal_errors(f"removing {name}"):
            if kind is Kind.DIRECTORY:
                # The pointer and the manifest go first: an interrupted clear must leave a model that says
                # it is incomplete, never half of one that says otherwise.
                for ours in (POINTER_NAME, MANIFEST_NAME):
                    with suppress(FileNotFoundError, modal.exception.NotFoundError):
                        self.volume.remove_file(f"{name}/{ours}")
            # A link is removed as a link: the volume server deletes the path, it does not follow it.
            with suppress(FileNotFoundError, modal.exception.NotFoundError):
                self.volume.remove_file(name, recursive=True)
        if self._top is not None:
            self._top.pop(name, None)

    def _listdir(self, path: str, *, recursive: bool) -> list[FileEntry]:
        with modal_errors(f"listing {self.spec.name}:{path}"):
            try:
                return self.volume.listdir(path, recursive=recursive)
            except (modal.exception.NotFoundError, FileNotFoundError):
                return []


def _kind(entry: FileEntry) -> Kind:
    if entry.type == FileEntryType.DIRECTORY:
        return Kind.DIRECTORY
    return Kind.SYMLINK if entry.type == FileEntryType.SYMLINK else Kind.FILE


def _relative(entry: FileEntry, parent: str) -> tuple[str, FileEntry]:
    """The entry's path below `parent`, or "" when not below it; the server's paths have no leading '/'."""
    path = entry.path.strip("/")
    if not parent:
        return path, entry
    prefix = parent.strip("/") + "/"
    return (path[len(prefix) :] if path.startswith(prefix) else ""), entry


# -- the backend ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ContainerJob:
    """One container's work: `apply_one` takes a plan, `verify_one` an entry; both as plain data."""

    label: str  # the repo id, for log lines and failed rows
    path: str  # <mount>/<model>
    payload: dict[str, Any]
    commit: str | None = None


# Starts one container per job for "download" or "verify" and returns their rows in job order.
StartContainers = Callable[[str, Sequence[ContainerJob], threading.Event], list[ModelRow]]


class ModalBackend:
    """Applies plans made on this machine: prunes through the client API, starts containers for the rest."""

    def __init__(self, store: VolumeStore, start: StartContainers) -> None:
        self.store: Store = store  # what `operations` sees
        self.volume_store = store  # the same, with the volume's own checks
        self.start = start

    def check_writable(self) -> None:
        return None  # containers mount the volume read-write; Modal refuses bad credentials before that

    def check_exists(self) -> None:
        self.volume_store.require()

    def exclusive(self, wait_seconds: float, cancel: threading.Event) -> AbstractContextManager[None]:
        # No lock spans this machine and the containers: the workflow's concurrency group is the guard,
        # and each container writes only its own model's directory.
        return nullcontext()

    def apply(self, models: Sequence[ModelPlan], cancel: threading.Event) -> list[ModelRow]:
        mount = self.store.location
        work = [m for m in models if m.action in (Action.FETCH, Action.REPAIR)]
        rows = {m.name: row_for(m, mount, DONE_STATUS[m.action]) for m in models if m not in work}
        if work:
            log.info("starting %d container(s): %s", len(work), ", ".join(m.repo_id for m in work))
            jobs = [ContainerJob(m.repo_id, _join(mount, m.name), m.to_wire(), m.commit) for m in work]
            rows.update((m.name, row) for m, row in zip(work, self.start("download", jobs, cancel), strict=True))
        else:
            log.info("no model needs a container; none started")
        return [rows[m.name] for m in models]

    def verify(self, entries: Sequence[ModelEntry], cancel: threading.Event) -> list[ModelRow]:
        """Hash in containers, one per model with a manifest; what has none is reported from here."""
        top = self.store.top()
        rows: dict[str, ModelRow] = {}
        work: list[ModelEntry] = []
        for entry in entries:
            kind = top.get(entry.dirname)
            held = self.store.held(entry.dirname, kind) if kind is not None else None
            current = held.current if held is not None and held.repo_id == entry.repo_id else None
            if current is not None and current.manifest is not None:
                work.append(entry)
                continue
            files, size = (held.file_count, held.bytes) if held is not None else (0, 0)
            path = _join(self.store.location, entry.dirname)
            rows[entry.repo_id] = unverifiable_row(entry.repo_id, path, held is not None, files, size)
        if work:
            log.info("starting %d container(s) to verify: %s", len(work), ", ".join(e.repo_id for e in work))
            jobs = [
                ContainerJob(e.repo_id, _join(self.store.location, e.dirname), e.to_wire(), e.pinned_commit)
                for e in work
            ]
            for entry, row in zip(work, self.start("verify", jobs, cancel), strict=True):
                rows[entry.repo_id] = row
        return [rows[e.repo_id] for e in entries]


# -- containers ----------------------------------------------------------------------------


class PendingCall(Protocol):
    """What `Function.spawn` returns, as far as collecting its result goes."""

    def get(self, timeout: float | None = None) -> Any: ...

    def cancel(self, terminate_containers: bool = False) -> None: ...


class LineSource(Protocol):
    """The caller's end of the containers' log queue (`modal.Queue`)."""

    def get_many(self, n_values: int, block: bool = True, timeout: float | None = None) -> list[Any]: ...


@dataclass
class ModalContainers:
    """Starts `apply_one`/`verify_one` in parallel, inside `app.run()` unless `modal run` started it."""

    catalog: Catalog
    volume: Any  # the hydrated modal.Volume the store looked up: attached to each call, never looked up again
    app_running: bool = False
    # What the containers' engine must see as this run does: the Hub's address and the time limits.
    env: dict[str, str] = field(default_factory=dict)
    secrets: list[modal.Secret] | None = field(default=None)
    # Where the containers' log lines come back: an ephemeral modal.Queue, for the duration of the calls.
    open_lines: Callable[[], AbstractContextManager[Any]] = field(default=modal.Queue.ephemeral)

    def __call__(self, operation: str, jobs: Sequence[ContainerJob], cancel: threading.Event) -> list[ModelRow]:
        from modal_jobs import modal_app as app_module

        mount = self.catalog.volume.mount
        running: AbstractContextManager[object] = nullcontext() if self.app_running else app_module.app.run()
        with modal_errors("starting the Modal app"), running, self.open_lines() as events:
            function = app_module.apply_one if operation == "download" else app_module.verify_one
            secrets = self.secrets if self.secrets is not None else hf_secrets(os.environ, app_module.HF_SECRET_NAME)
            # with_options replaces volumes and secrets as a whole: both are given every time.
            function = function.with_options(volumes={mount: self.volume}, secrets=secrets, env=dict(self.env))
            calls = [function.spawn(job.payload, mount, self.volume, events) for job in jobs]
            return collect(calls, jobs, cancel, events)


def collect(
    calls: Sequence[PendingCall], jobs: Sequence[ContainerJob], cancel: threading.Event, lines: LineSource | None = None
) -> list[ModelRow]:
    """Each call's row, in job order, printing the containers' log lines as they arrive.

    A container that raised becomes one `failed` row, not a crash. A stop request cancels every
    call still running, and terminates its container.
    """
    results: dict[int, ModelRow] = {}
    started = time.monotonic()
    while len(results) < len(calls):
        if cancel.is_set():
            for j, other in enumerate(calls):
                if j not in results:
                    other.cancel(terminate_containers=True)
            raise InterruptedRun(
                "interrupted; the containers still running were stopped and what they wrote is not "
                "marked complete: run the same command again to resume"
            )
        _print_lines(lines)
        for i, call in enumerate(calls):
            if i in results:
                continue
            try:
                value = call.get(timeout=0 if lines is not None else POLL_SECONDS)
            except TimeoutError as exc:
                if not exc.args:  # modal's "no output yet"; a container's own TimeoutError carries a message
                    continue
                value = exc
            except Exception as exc:
                value = exc
            results[i] = _row(value, jobs[i], time.monotonic() - started)
            log.info("%s: %s", jobs[i].label, results[i].status)
    _print_lines(lines, wait=0.0)
    return [results[i] for i in range(len(calls))]


def _print_lines(lines: LineSource | None, wait: float = POLL_SECONDS) -> None:
    """The containers' log lines so far (waiting up to `wait` for the first), each printed as it came."""
    if lines is None:
        return
    block = wait > 0
    while True:
        try:
            batch = lines.get_many(100, block=block, timeout=wait if block else None)
        except queue.Empty:
            return
        for line in batch:
            log.info("%s", line)
        if len(batch) < 100:
            return
        block = False  # more may be waiting: take it now, without waiting again


def _row(value: object, job: ContainerJob, seconds: float) -> ModelRow:
    if isinstance(value, Mapping):
        try:
            return ModelRow(**{**value, "status": Status(value["status"])})
        except (TypeError, KeyError, ValueError) as exc:
            value = exc
    error = f"container failed: {type(value).__name__}: {value}" if isinstance(value, BaseException) else (
        f"container returned {type(value).__name__}, not a row"
    )  # fmt: skip
    log.error("%s: %s", job.label, error)
    return ModelRow(job.label, job.path, Status.FAILED, job.commit, 0, 0, seconds, error)


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


def open_volume_backend(
    catalog: Catalog, *, create: bool, app_running: bool = False, env: Mapping[str, str] | None = None
) -> ModalBackend:
    """The volume named in the model list, checked for credentials before anything touches the network.

    `create`: a download that writes makes the volume when it does not exist; nothing else does.
    `env`: set in every container, so that its engine talks to the same Hub within the same limits.
    """
    require_credentials()
    volume = modal.Volume.from_name(catalog.volume.name, create_if_missing=create)
    store = VolumeStore(volume, catalog.volume, environment_name())
    containers = ModalContainers(catalog, volume, app_running=app_running, env=dict(env or {}))
    return ModalBackend(store, containers)


def _join(location: str, name: str) -> str:
    return f"{location.rstrip('/')}/{name}"
