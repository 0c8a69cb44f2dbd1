"""Stand-ins for Modal: a volume over a directory, function calls, the app, its functions and queues.

`DirVolume` answers the `modal.Volume` client methods the store uses; `VolumeRecorder` is the volume
mounted in a container. `InProcessContainers` is the injected container starter: it runs the real
container bodies here, through `.local()`. The `fake_app` fixture stands in for the Modal app and its
two functions; `tests/conftest.py` registers this module as a plugin, so any test can ask for it.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import modal.exception
import pytest
from modal.types import FileEntry, FileEntryType

import modal_jobs.modal_app as jobs
import modal_jobs.modal_backend
from local_hub.server import LocalHub, hub_env
from modal_jobs.modal_backend import ContainerJob, ModalBackend, collect
from modal_jobs.model_dir import POINTER_NAME
from modal_jobs.model_list import ModelList
from modal_jobs.reader import ModelNotReady, model_path
from modal_jobs.summary import ModelRow, Status
from modal_jobs.volume import VolumeStore
from modal_jobs.volume_lease import VolumeLease
from tests.conftest import ROOT, Repos
from tests.modal_dict_stand_in import DictServer

MOUNT = "/vol/models"


# -- the stand-in volume ---------------------------------------------------------------------


class DirVolume:
    """The `modal.Volume` client methods the store uses, over a directory, answering with modal's `FileEntry`.

    Paths come back as the server sends them: relative to the volume root, no leading '/'. Like a
    filesystem, `read_file` follows links; `listdir` and `remove_file` do not.
    """

    def __init__(self, root: Path, fail_with: Exception | None = None) -> None:
        self.root = root
        self.fail_with = fail_with
        self.calls: list[tuple[str, str]] = []

    def hydrate(self) -> DirVolume:
        self.calls.append(("hydrate", ""))
        if self.fail_with is not None:
            raise self.fail_with
        if not self.root.is_dir():
            raise modal.exception.NotFoundError(f"Volume {self.root.name!r} not found")
        return self

    def listdir(self, path: str, *, recursive: bool = False) -> list[FileEntry]:
        self.calls.append(("listdir", path))
        target = self._resolve(path)
        if not os.path.lexists(target):
            raise modal.exception.NotFoundError(f"no such file or directory: {path}")
        if target.is_symlink() or not target.is_dir():
            return [self._entry(target)]
        return list(self._walk(target, recursive))

    def read_file(self, path: str) -> Iterator[bytes]:
        self.calls.append(("read_file", path))
        target = self._resolve(path)
        if not target.is_file():
            raise FileNotFoundError(path)
        yield target.read_bytes()

    def remove_file(self, path: str, recursive: bool = False) -> None:
        self.calls.append(("remove_file", path))
        target = self._resolve(path)
        if target.is_symlink() or target.is_file():
            target.unlink()
        elif target.is_dir():
            shutil.rmtree(target) if recursive else target.rmdir()
        else:
            raise FileNotFoundError(path)

    @contextmanager
    def batch_upload(self, force: bool = False) -> Iterator[Upload]:
        """Like modal's: the files are sent when the block ends, each set whole on the server in one request."""
        self.calls.append(("batch_upload", ""))
        batch = Upload()
        yield batch
        for data, remote in batch.files:
            self.calls.append(("put_file", remote))
            path = self._resolve(remote)
            if path.exists() and not force:
                raise FileExistsError(remote)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.upload")
            tmp.write_bytes(data)
            tmp.replace(path)

    def _walk(self, directory: Path, recursive: bool) -> Iterator[FileEntry]:
        for child in sorted(os.scandir(directory), key=lambda e: e.name):
            yield self._entry(Path(child.path))
            if recursive and child.is_dir(follow_symlinks=False):
                yield from self._walk(Path(child.path), recursive)

    def _entry(self, path: Path) -> FileEntry:
        st = path.lstat()
        kind = (
            FileEntryType.SYMLINK
            if stat.S_ISLNK(st.st_mode)
            else FileEntryType.DIRECTORY
            if stat.S_ISDIR(st.st_mode)
            else FileEntryType.FILE
        )
        return FileEntry(
            path=path.relative_to(self.root).as_posix(), type=kind, mtime=int(st.st_mtime), size=st.st_size
        )

    def _resolve(self, path: str) -> Path:
        rel = path.strip("/")
        return self.root / rel if rel else self.root


@dataclass
class Upload:
    """What `Volume.batch_upload()` yields: `put_file` takes a file-like object and a path on the volume."""

    files: list[tuple[bytes, str]] = field(default_factory=list)

    def put_file(self, local_file: Any, remote_path: str) -> None:
        self.files.append((local_file.read(), remote_path.strip("/")))


class VolumeRecorder:
    """Stands in for the mounted `modal.Volume` inside a container: records reload/commit and what each commit shows."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.events: list[str] = []
        self.loadable_at_commit: list[list[str]] = []

    def reload(self) -> None:
        self.events.append("reload")

    def commit(self) -> None:
        self.events.append("commit")
        self.loadable_at_commit.append(loadable(self.root))


def loadable(root: Path) -> list[str]:
    """The repos a reader can load from `root` now: each pointer names its repo, the reader says yes or no."""
    found = []
    for pointer in sorted(root.glob(f"*/{POINTER_NAME}")):
        repo_id = str(json.loads(pointer.read_bytes())["repo_id"])
        try:
            model_path(root, repo_id)
        except ModelNotReady:
            continue
        found.append(repo_id)
    return found


# -- function calls, and containers in-process ----------------------------------------------


@dataclass
class FinishedCall:
    """A `FunctionCall` whose container already ran: `get` returns its value or raises its exception."""

    value: Any = None
    error: Exception | None = None
    cancelled: bool = False

    def get(self, timeout: float | None = None) -> Any:
        if self.error is not None:
            raise self.error
        return self.value

    def cancel(self, terminate_containers: bool = False) -> None:
        self.cancelled = terminate_containers


@dataclass
class SlowCall:
    """Answers "no output yet" (modal raises a bare TimeoutError) a few times, then its row."""

    row: ModelRow
    pending: int = 2
    cancelled: bool = False

    def get(self, timeout: float | None = None) -> Any:
        if self.pending:
            self.pending -= 1
            raise TimeoutError
        return self.row.__dict__

    def cancel(self, terminate_containers: bool = False) -> None:
        self.cancelled = terminate_containers


@dataclass
class InProcessContainers:
    """The injected container starter: counts what it starts and runs the real function bodies here."""

    mount: Path
    recorder: VolumeRecorder
    started: list[tuple[str, str]] = field(default_factory=list)
    crash: set[str] = field(default_factory=set)
    before_start: Callable[[], None] | None = None  # what happens between planning and the containers

    def __call__(self, operation: str, jobs_: Sequence[ContainerJob], cancel: threading.Event) -> list[ModelRow]:
        if self.before_start is not None:
            self.before_start()
        function = jobs.apply_one if operation == "download" else jobs.verify_one
        calls = []
        for job in jobs_:
            self.started.append((operation, job.label))
            if job.label in self.crash:
                calls.append(FinishedCall(error=RuntimeError("container exited with code 137")))
                continue
            calls.append(FinishedCall(function.local(job.payload, str(self.mount), cast(Any, self.recorder), None)))
        return collect(calls, jobs_, cancel)

    def count(self, operation: str = "download") -> int:
        return sum(1 for op, _ in self.started if op == operation)


# -- the app, its functions and queues ---------------------------------------------------------


class FakeFunction:
    """A function of the app: its options and each spawn are logged, and a spawned call has already finished."""

    def __init__(self, log: list[str], name: str, options: dict[str, Any] | None = None) -> None:
        self.log, self.name, self.options = log, name, options or {}
        self.configured: list[dict[str, Any]] = []

    def with_options(self, **options: Any) -> FakeFunction:
        self.configured.append(options)
        return FakeFunction(self.log, self.name, options)

    def spawn(self, payload: dict[str, Any], mount: str, volume: object, events: object) -> FinishedCall:
        secrets = [repr(s) for s in self.options["secrets"]]
        volumes = {path: str(v) for path, v in self.options["volumes"].items()}
        self.log.append(f"spawn {self.name} {payload['repo_id']} at {mount} volumes={volumes} secrets={secrets}")
        assert volume is self.options["volumes"][mount], "the call's volume argument is the one mounted"
        return FinishedCall(value=ModelRow(payload["repo_id"], f"{mount}/x", Status.OK).__dict__)


class FakeApp:
    """The Modal app: `run()` logs when it starts and stops."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    def run(self) -> AbstractContextManager[None]:
        @contextmanager
        def running() -> Iterator[None]:
            self.log.append("app.run")
            yield
            self.log.append("app stopped")

        return running()


class Lines:
    """Stands in for the ephemeral `modal.Queue` the containers' log lines come back through."""

    def __init__(self, log: list[str], lines: Sequence[str] = ()) -> None:
        self.log, self.lines = log, list(lines)

    @contextmanager
    def open(self) -> Iterator[Lines]:
        self.log.append("queue open")
        yield self
        self.log.append("queue closed")

    def get_many(self, n_values: int, block: bool = True, timeout: float | None = None) -> list[Any]:
        batch, self.lines = self.lines[:n_values], self.lines[n_values:]
        return batch


class QueueLines:
    """What `apply_one` puts on the caller's `modal.Queue`, kept in a list."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def put(self, line: str) -> None:
        self.lines.append(line)


class NamedVolume:
    """A volume looked up by name, shown by its name where the starter attaches it."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __str__(self) -> str:
        return f"Volume({self.name})"


@pytest.fixture
def fake_app(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The app and its two functions stood in; the list returned logs what the starter did, in order."""
    log: list[str] = []
    monkeypatch.setattr(jobs, "app", FakeApp(log))
    monkeypatch.setattr(jobs, "apply_one", FakeFunction(log, "apply_one"))
    monkeypatch.setattr(jobs, "verify_one", FakeFunction(log, "verify_one"))
    return log


# -- the local entrypoint, with the volume stood in -------------------------------------------


@dataclass
class EntrypointTarget:
    """What `open_volume_backend` hands the entrypoint: a stand-in volume, and containers that record."""

    root: Path
    started: list[str]
    opened_with: list[dict[str, Any]]
    failing: set[str]
    writers: DictServer = field(default_factory=DictServer)

    def open(self, model_list: ModelList, **options: Any) -> ModalBackend:
        self.opened_with.append(options)
        lease = VolumeLease(model_list.volume.name, self.writers.opener("entrypoint"))
        return ModalBackend(VolumeStore(DirVolume(self.root), model_list.volume), self.start, lease)

    def start(self, operation: str, jobs_: Sequence[ContainerJob], cancel: threading.Event) -> list[ModelRow]:
        """Verify containers answer `ok` unread; download containers run their real body here, on the stand-in."""
        self.started.extend(job.label for job in jobs_)
        if operation == "download":
            return InProcessContainers(self.root, VolumeRecorder(self.root), crash=set(self.failing))(
                operation, jobs_, cancel
            )
        return [
            job.lost if job.label in self.failing else replace(job.lost, status=Status.OK, error=None) for job in jobs_
        ]


@pytest.fixture
def entrypoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hub: LocalHub, repos: Repos) -> EntrypointTarget:
    root = tmp_path / "volume"
    root.mkdir()
    target = EntrypointTarget(root, [], [], set())
    monkeypatch.setattr(modal_jobs.modal_backend, "open_volume_backend", target.open)
    for key, value in hub_env(hub, tmp_path / "hf-home").items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    # The repository's list, in a directory of its own: the download writes models.lock beside it.
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "models.toml").write_text((ROOT / "models.toml").read_text())
    monkeypatch.chdir(checkout)
    return target
