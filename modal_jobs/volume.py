"""The Modal Volume through the client API, from this machine: what planning, `list` and `clear` see and remove.

One lookup and one root listing per run; per model, one recursive listing and one read per
pointer, manifest or damage mark in it. No container starts for any of it; what containers do
is `modal_jobs.modal_backend`.

Every Modal problem that can be seen before anything starts (no credentials, Modal unreachable)
is a one-line `TargetError` (exit 2), within `CONNECT_SECONDS`. A volume that does not exist holds
nothing, and only a download that writes creates it.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from typing import Any, Protocol

import modal
import modal.config
import modal.exception
from modal.types import FileEntry, FileEntryType

from modal_jobs.decide.facts import NOT_A_FILE, HeldModel, Kind, is_record
from modal_jobs.errors import TargetError
from modal_jobs.model_dir import DAMAGED_NAME, LEGACY, MANIFEST_NAME, POINTER_NAME, REVISIONS_DIR, Pointer
from modal_jobs.model_list import VolumeSpec

# Modal's client retries a refused connection for about a minute; the first call gets this long.
CONNECT_SECONDS = 10.0
MODAL_SETUP = "run `modal setup` (or set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET)"
SETUP_HINT = f"{MODAL_SETUP}, or pass --local-dir DIR"


class VolumeClient(Protocol):
    """The part of `modal.Volume` this module uses; tests pass a stand-in over a directory."""

    def hydrate(self) -> object: ...

    def listdir(self, path: str, *, recursive: bool = False) -> list[FileEntry]: ...

    def read_file(self, path: str) -> Iterable[bytes]: ...

    def remove_file(self, path: str, recursive: bool = False) -> None: ...

    def batch_upload(self, force: bool = False) -> AbstractContextManager[Any]: ...


# -- credentials and errors ----------------------------------------------------------------


def require_credentials(config: Any = modal.config.config, hint: str = SETUP_HINT) -> None:
    """Refuse early, without a network call, when modal's config holds no way to authenticate."""
    tokens = config.get("token_id") and config.get("token_secret")
    oauth = config.get("oauth_refresh_token") and config.get("oauth_client_id")
    if not (tokens or oauth):
        raise TargetError(f"no Modal credentials found; {hint}")


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


def open_volume_store(spec: VolumeSpec, *, create: bool = False) -> VolumeStore:
    """The volume the model list names, once credentials are known to be there; created only when `create`."""
    require_credentials()
    return VolumeStore(modal.Volume.from_name(spec.name, create_if_missing=create), spec, environment_name())


class VolumeStore:
    """The volume through the client API: what planning, `list` and `clear` see, with no container."""

    def __init__(self, volume: VolumeClient, spec: VolumeSpec, environment: str = "") -> None:
        self.volume = volume
        self.spec = spec
        self.environment = environment
        self.target = spec.mount  # rows name what the inference service sees: <mount>/<model>
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

    def absent(self) -> str | None:
        """Why there is nothing to read (the volume does not exist, where), or None; looks it up without creating it."""
        if self.exists():
            return None
        where = f" in {self.environment}" if self.environment else ""
        return f"the Modal Volume {self.spec.name!r} does not exist{where} (check MODAL_ENVIRONMENT)"

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

    def write_pointer(self, name: str, pointer: Pointer) -> None:
        """Upload the pointer over the old one: the server sets a file's blocks in one request, so a reader
        that starts (or reloads) sees the old pointer or the new one, never half of one."""
        with modal_errors(f"writing {name}/{POINTER_NAME}"), self.volume.batch_upload(force=True) as batch:
            batch.put_file(io.BytesIO(pointer.to_json().encode()), f"{name}/{POINTER_NAME}")

    def retire(self, model: HeldModel, revision: str) -> None:
        """Remove a revision no pointer names, its manifest first: a partial removal says it is incomplete."""
        if revision == LEGACY:
            ours = [MANIFEST_NAME, DAMAGED_NAME]
            rest = sorted({path.split("/", 1)[0] for path in model.files} - {POINTER_NAME, REVISIONS_DIR, *ours})
        else:
            ours, rest = [f"{REVISIONS_DIR}/{revision}/{MANIFEST_NAME}"], [f"{REVISIONS_DIR}/{revision}"]
        with modal_errors(f"removing revision {revision} of {model.name}"):
            for path in [*ours, *rest]:
                with suppress(FileNotFoundError, modal.exception.NotFoundError):
                    self.volume.remove_file(f"{model.name}/{path}", recursive=path in rest)

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
