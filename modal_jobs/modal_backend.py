"""The Modal Volume as a target: planned on this machine, written only by containers, one per model.

```
this machine                                      Modal
------------                                      -----
VolumeStore ── 1 lookup, 1 root listing ─────►    Volume <name>
            ── per model: 1 listing, then ───►      └── <model>/…        list, clear, prune, plans:
               1 read per pointer, manifest                              no container
               or damage mark in it
ModalBackend.exclusive ── put, renew, pop ──►    Dict <…>-writers[<name>]  download, verify, clear:
                                                                         the writer lease (volume_lease)
ModalBackend.apply(plan)
  FETCH / REPAIR ── app.run(), spawn ────────►    apply_one(plan)       one container per model,
  log lines ◄────── ephemeral queue ──────────      verify_one(model)     each writing only its dir
```

The store is `modal_jobs.volume`; the app the containers run (image, functions) is `modal_jobs.modal_app`.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import modal
import modal.exception

from modal_jobs.decide.facts import HeldModel
from modal_jobs.decide.model_plan import Action, ModelPlan
from modal_jobs.decide.selection import verifiable
from modal_jobs.errors import Cancelled, ModelFailed
from modal_jobs.model_list import ModelEntry, ModelList
from modal_jobs.outcome import Outcome
from modal_jobs.publish import publish_model
from modal_jobs.rows import applied_row, target_path, unchecked_row, unverifiable_row
from modal_jobs.store import Store
from modal_jobs.summary import ModelRow, Status
from modal_jobs.volume import VolumeStore, modal_errors, open_volume_store
from modal_jobs.volume_lease import VolumeLease

log = logging.getLogger("modal_jobs")

POLL_SECONDS = 1.0
LOST = Outcome(error="the container ended without an answer")  # the error is replaced by what collect saw


@dataclass(frozen=True)
class ContainerJob:
    """One container's work: `apply_one` takes a plan, `verify_one` an entry; both as plain data."""

    label: str  # the repo id, for log lines
    payload: dict[str, Any]
    # The model's row if its container ends without one: the numbers a local run would report, status failed.
    lost: ModelRow


# Starts one container per job for "download" or "verify" and returns their rows in job order.
StartContainers = Callable[[str, Sequence[ContainerJob], threading.Event], list[ModelRow]]


class ModalBackend:
    """Applies plans made on this machine: prunes through the client API, starts containers for the rest."""

    def __init__(self, store: VolumeStore, start: StartContainers, lease: VolumeLease | None = None) -> None:
        self.store: Store = store  # what `operations` sees
        self.volume_store = store  # the same, with the volume's own checks
        self.start = start
        self.lease = lease or VolumeLease(store.spec.name)  # in the Modal Dict; tests pass one over a stand-in

    def check_writable(self) -> None:
        return None  # containers mount the volume read-write; Modal refuses bad credentials before that

    def absent(self) -> str | None:
        return self.volume_store.absent()

    def exclusive(self, wait_seconds: float, cancel: threading.Event, operation: str) -> AbstractContextManager[None]:
        # The volume first: the run's first Modal call keeps its deadline (and a download creates the volume).
        self.volume_store.exists()
        return self.lease.held(wait_seconds, cancel, operation)

    def apply(self, models: Sequence[ModelPlan], cancel: threading.Event) -> list[ModelRow]:
        target = self.store.target
        work = [m for m in models if m.action in (Action.FETCH, Action.REPAIR)]
        rows = {m.name: applied_row(m, target, None) for m in models if m not in work}
        if work:
            log.info("starting %d container(s): %s", len(work), ", ".join(m.repo_id for m in work))
            jobs = [ContainerJob(m.repo_id, m.to_wire(), applied_row(m, target, LOST)) for m in work]
            written = zip(work, self.start("download", jobs, cancel), strict=True)
            rows.update((m.name, row if row.failed else self._publish(m, row)) for m, row in written)
        else:
            log.info("no model needs a container; none started")
        return [rows[m.name] for m in models]

    def _publish(self, model: ModelPlan, row: ModelRow) -> ModelRow:
        """The barrier, from here: the container committed its revision; the listing must show it whole before
        the pointer names it."""
        try:
            publish_model(model, self.volume_store)
        except ModelFailed as exc:
            log.error("%s: failed: %s", model.repo_id, exc)
            return replace(row, status=Status.FAILED, error=str(exc))
        return row

    def verify(
        self, entries: Sequence[ModelEntry], held: Mapping[str, HeldModel], cancel: threading.Event
    ) -> list[ModelRow]:
        """Hash in containers, one per model with a manifest; what has none is reported from here."""
        rows: dict[str, ModelRow] = {}
        work: list[ModelEntry] = []
        jobs: list[ContainerJob] = []
        for entry in entries:
            model = held.get(entry.dirname)
            revision = verifiable(entry, model)
            path = target_path(self.store.target, entry.dirname)
            if revision is not None and revision.manifest is not None:
                lost = unchecked_row(entry.repo_id, path, revision.manifest, str(LOST.error))
                work.append(entry)
                jobs.append(ContainerJob(entry.repo_id, entry.to_wire(), lost))
                continue
            rows[entry.repo_id] = unverifiable_row(entry, path, model)
        if work:
            log.info("starting %d container(s) to verify: %s", len(work), ", ".join(e.repo_id for e in work))
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

    model_list: ModelList
    volume: Any  # the hydrated modal.Volume the store looked up: attached to each call, never looked up again
    app_running: bool = False
    # What the containers' engine must see as this run does: the Hub's address and the time limits.
    env: dict[str, str] = field(default_factory=dict)
    secrets: list[modal.Secret] | None = field(default=None)
    # Where the containers' log lines come back: an ephemeral modal.Queue, for the duration of the calls.
    open_lines: Callable[[], AbstractContextManager[Any]] = field(default=modal.Queue.ephemeral)

    def __call__(self, operation: str, jobs: Sequence[ContainerJob], cancel: threading.Event) -> list[ModelRow]:
        from modal_jobs import modal_app as app_module

        mount = self.model_list.volume.mount
        running: AbstractContextManager[object] = nullcontext() if self.app_running else app_module.app.run()
        with modal_errors("starting the Modal app"), running, self.open_lines() as events:
            function = app_module.apply_one if operation == "download" else app_module.verify_one
            # Only a download's containers call the Hub: a verify container gets no token at all.
            secrets = self.secrets if self.secrets is not None else hf_secrets(os.environ, app_module.HF_SECRET_NAME)
            secrets = secrets if function is app_module.apply_one else []
            # with_options replaces volumes and secrets as a whole: both are given every time.
            function = function.with_options(volumes={mount: self.volume}, secrets=secrets, env=dict(self.env))
            calls = [function.spawn(job.payload, mount, self.volume, events) for job in jobs]
            return collect(calls, jobs, cancel, events)


def collect(
    calls: Sequence[PendingCall], jobs: Sequence[ContainerJob], cancel: threading.Event, lines: LineSource | None = None
) -> list[ModelRow]:
    """Each call's row, in job order, printing the containers' log lines as they arrive.

    A container that raised becomes one `failed` row, not a crash. A stop request cancels every
    call still running, terminates its container, and raises Cancelled naming the jobs that had answered.
    """
    results: dict[int, ModelRow] = {}
    started = time.monotonic()
    while len(results) < len(calls):
        if cancel.is_set():
            for j, other in enumerate(calls):
                if j not in results:
                    other.cancel(terminate_containers=True)
            log.warning("stopped the %d container(s) still running", len(calls) - len(results))
            raise Cancelled(jobs[i].label for i in results)  # the operation's line says what the stop left
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
    return replace(job.lost, seconds=seconds, error=error)


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
    model_list: ModelList, *, create: bool, app_running: bool = False, env: Mapping[str, str] | None = None
) -> ModalBackend:
    """The volume named in the model list, checked for credentials before anything touches the network.

    `create`: a download that writes makes the volume when it does not exist; nothing else does.
    `env`: set in every container, so that its engine talks to the same Hub within the same limits.
    """
    store = open_volume_store(model_list.volume, create=create)
    containers = ModalContainers(model_list, store.volume, app_running=app_running, env=dict(env or {}))
    return ModalBackend(store, containers)
