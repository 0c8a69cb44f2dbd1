"""The Hugging Face Hub edge: resolve a revision, list a commit's files, download one file.

Everything that crosses the network goes through `huggingface_hub` (auth from `HF_TOKEN`,
redirects, Xet, resumable HTTP). What it does not do here, this module adds: one retry policy
for every call, bounded by time rather than by attempts (`Deadlines`), and error messages that
say what to do.

- A call that makes no progress (no response, no byte of a file) fails after `stall_seconds`,
  huggingface_hub's own resume loop included: its read timeout is set from the same deadline.
- A run that never reaches the Hub at all gives up after `connect_seconds`, once for the run,
  not once per model.

`huggingface_hub` is imported on first use: it is most of the CLI's start-up, and `verify`,
`list` on a pinned list and `clear` never need it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from modal_jobs.catalog import ModelEntry
from modal_jobs.errors import Cancelled, ModelFailed
from modal_jobs.model_dir import FileRecord, safe_relative_path

log = logging.getLogger(__name__)

T = TypeVar("T")

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
RETRY_BASE_SECONDS = 1.0
RETRY_MAX_SECONDS = 30.0
# A Hub that answers (429, 5xx) is asked this many times at most, deadline or not: it is up, and saying no.
ANSWERED_ATTEMPTS = 6
# huggingface_hub tries a stalled body this many times (first try included) before it gives up.
_HF_BODY_TRIES = 6

# hf_xet sizes its download buffers from the memory it detects (1.6 GB, 392 MB a file, growing to
# 6.3 GB on a 24 GB machine). The cache needs far less to keep a few transfers busy; the Modal image
# sets its own, sized to the container (modal_jobs/modal_app.py).
LOCAL_XET_BUFFERS = {
    "HF_XET_RECONSTRUCTION_DOWNLOAD_BUFFER_SIZE": str(256 << 20),
    "HF_XET_RECONSTRUCTION_DOWNLOAD_BUFFER_PERFILE_SIZE": str(64 << 20),
    "HF_XET_RECONSTRUCTION_DOWNLOAD_BUFFER_LIMIT": str(256 << 20),
}

STALL_SECONDS_ENV = "MODEL_CACHE_STALL_TIMEOUT"
CONNECT_SECONDS_ENV = "MODEL_CACHE_CONNECT_TIMEOUT"


@dataclass(frozen=True)
class Deadlines:
    """How long the cache waits on the Hub: without progress per call, and to reach it at all per run."""

    stall_seconds: float = 120.0
    connect_seconds: float = 10.0

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Deadlines:
        env = os.environ if environ is None else environ
        return cls(
            stall_seconds=_positive(env.get(STALL_SECONDS_ENV), cls.stall_seconds),
            connect_seconds=_positive(env.get(CONNECT_SECONDS_ENV), cls.connect_seconds),
        )

    @property
    def read_timeout(self) -> float:
        """huggingface_hub's socket read timeout, so that its own resume loop ends well inside the stall deadline."""
        return max(1.0, min(10.0, self.stall_seconds / (2 * _HF_BODY_TRIES)))

    @property
    def longest_call(self) -> float:
        """The longest one download call can go without a byte: every try of the resume loop timing out."""
        return _HF_BODY_TRIES * (self.read_timeout + 1.0)

    def xet_environment(self) -> dict[str, str]:
        """hf_xet's own timeouts, read from the environment when it first transfers.

        Its defaults (120 s without a byte, retries for 6 minutes) would hold a stalled Xet transfer
        far past the stall deadline, inside one call that the cache cannot interrupt. A stalled xorb
        costs hf_xet up to about twice its retry budget, so the budget is a quarter of the deadline.
        """
        return {
            "HF_XET_CLIENT_READ_TIMEOUT": f"{round(self.read_timeout * 1000)}ms",
            "HF_XET_CLIENT_RETRY_MAX_DURATION": f"{round(self.stall_seconds * 250)}ms",
            "HF_XET_CLIENT_CONNECT_TIMEOUT": f"{round(self.connect_seconds * 1000)}ms",
        }


def _positive(value: str | None, default: float) -> float:
    try:
        number = float(value) if value else default
    except ValueError:
        return default
    return number if number > 0 else default


def set_up_huggingface_hub(deadlines: Deadlines) -> None:
    """The one place the cache changes huggingface_hub's and hf_xet's settings: once, at start-up.

    Called by the CLI driver and by each container before anything talks to the Hub.
    """
    import huggingface_hub.constants
    import huggingface_hub.utils.logging  # adds huggingface_hub's own stderr handler, removed below

    # Hand each socket read to the file as it comes. The default gathers 10 MiB per chunk and copies
    # it out: 40% of a download's CPU, and 10 MiB of memory per transfer in flight.
    huggingface_hub.constants.DOWNLOAD_CHUNK_SIZE = None  # type: ignore[assignment]
    # Its resume loop on a stalled body must end inside our stall deadline (see Deadlines).
    huggingface_hub.constants.HF_HUB_DOWNLOAD_TIMEOUT = deadlines.read_timeout  # type: ignore[assignment]
    # hf_xet reads its timeouts and buffer sizes from the environment when it starts; a value the person set wins.
    for name, value in {**deadlines.xet_environment(), **LOCAL_XET_BUFFERS}.items():
        os.environ.setdefault(name, value)
    # Its records reach the run's one stderr handler; its own handler would print each warning twice.
    logging.getLogger("huggingface_hub").handlers.clear()
    logging.getLogger("huggingface_hub").propagate = True


class HubError(ModelFailed):
    """The Hub would not give what a model needs; the message says what to do."""


class AccessDenied(HubError):
    """The repo is gated or private, and the token (if any) does not open it."""


ByteCallback = Callable[[int], None]

if TYPE_CHECKING:
    from huggingface_hub import HfApi


class Hub:
    """The Hub as the cache sees it, bound to one endpoint (`HF_ENDPOINT`, default huggingface.co)."""

    def __init__(
        self,
        endpoint: str | None = None,
        cancel: threading.Event | None = None,
        deadlines: Deadlines | None = None,
    ) -> None:
        self.endpoint = endpoint or os.environ.get("HF_ENDPOINT") or None
        # Set when the run is asked to stop: backoff waits end at once instead of sleeping on.
        self.cancel = cancel or threading.Event()
        self.deadlines = deadlines or Deadlines.from_env()
        self._lock = threading.Lock()
        self._reached = False  # any answer from the Hub this run
        self._first_unreachable: float | None = None
        self._unreachable: str | None = None  # set once the run gave up reaching the Hub
        self._warned_unreachable = False

    def container_env(self) -> dict[str, str]:
        """What a container's own `Hub()` needs to behave as this one: the endpoint and the deadlines."""
        env = {
            STALL_SECONDS_ENV: repr(self.deadlines.stall_seconds),
            CONNECT_SECONDS_ENV: repr(self.deadlines.connect_seconds),
        }
        if self.endpoint:
            env["HF_ENDPOINT"] = self.endpoint
        return env

    @cached_property
    def api(self) -> HfApi:
        from huggingface_hub import HfApi

        # No token argument: huggingface_hub reads HF_TOKEN (or a saved login) itself.
        return HfApi(endpoint=self.endpoint)

    def resolve(self, entry: ModelEntry) -> str:
        """The commit the entry's revision points at now: one request."""
        info = self.call(
            lambda: self.api.model_info(entry.repo_id, revision=entry.revision),
            f"{entry.repo_id}@{entry.revision}: resolve revision",
            entry,
        )
        if not info.sha:
            raise HubError(f"{entry.repo_id}: the Hub gave no commit for revision {entry.revision!r}")
        return info.sha

    def list_files(self, entry: ModelEntry, commit: str) -> list[FileRecord]:
        """The commit's files after the entry's include/exclude globs, with the hashes to check them by."""

        from huggingface_hub.hf_api import RepoFile
        from huggingface_hub.utils import filter_repo_objects  # type: ignore[attr-defined]  # public, not in __all__

        def fetch() -> list[RepoFile]:
            tree = self.api.list_repo_tree(entry.repo_id, revision=commit, recursive=True)
            return [item for item in tree if isinstance(item, RepoFile)]

        remote = self.call(fetch, f"{entry.repo_id}@{commit[:7]}: list files", entry)
        chosen = filter_repo_objects(
            remote,
            allow_patterns=list(entry.include) if entry.include else None,
            ignore_patterns=list(entry.exclude) if entry.exclude else None,
            key=lambda f: f.path,
        )
        records = []
        for item in chosen:
            safe_relative_path(item.path)
            if item.lfs is not None:
                records.append(FileRecord(item.path, item.lfs.size, f"sha256:{item.lfs.sha256}"))
            else:
                records.append(FileRecord(item.path, item.size, f"git-sha1:{item.blob_id}"))
        if not records:
            raise HubError(
                f"{entry.repo_id}@{commit[:7]}: no files to download"
                + ("; check include/exclude in the model list" if entry.include or entry.exclude else "")
            )
        return records

    def download(self, entry: ModelEntry, commit: str, path: str, model_dir: Path, on_bytes: ByteCallback) -> None:
        """Fetch one file into the model directory; the caller has cleared its path."""
        from huggingface_hub import hf_hub_download

        self.api  # noqa: B018 - sets up huggingface_hub for downloads
        last_byte = time.monotonic()

        def counted(n: int) -> None:
            nonlocal last_byte
            last_byte = time.monotonic()
            on_bytes(n)

        self.call(
            lambda: hf_hub_download(
                entry.repo_id,
                path,
                revision=commit,
                local_dir=model_dir,
                endpoint=self.endpoint,
                tqdm_class=cast(Any, _byte_counter(counted)),
            ),
            f"{entry.repo_id}: {path}",
            entry,
            progress=lambda: last_byte,
            longest_call=self.deadlines.longest_call,
        )

    def call(
        self,
        call: Callable[[], T],
        what: str,
        entry: ModelEntry,
        *,
        progress: Callable[[], float] | None = None,
        longest_call: float = 0.0,
    ) -> T:
        """Run a Hub call, retrying 429/5xx and dropped connections (Retry-After honoured) within the deadlines.

        A new attempt starts only if it can end before the call has gone `stall_seconds` without progress
        (`progress` tells when the last byte came). Connection failures before the Hub ever answered count
        against `connect_seconds` for the whole run.
        """
        deadlines = self.deadlines
        started = time.monotonic()
        attempt = 0
        while True:
            if self.cancel.is_set():
                raise Cancelled
            if self._unreachable:
                raise HubError(f"{what}: {self._unreachable}")
            attempt += 1
            try:
                result = call()
            except Cancelled:
                raise
            except Exception as raised:
                # huggingface_hub wraps a failed HEAD in LocalEntryNotFoundError; judge by what happened on the wire.
                exc = _wire_error(raised)
                wait = _retry_wait(exc, attempt)
                if wait is None:
                    error = AccessDenied if _is_access_denied(exc) else HubError
                    raise error(f"{what}: {describe(exc, entry)}") from exc
                now = time.monotonic()
                if _is_unreachable(exc):
                    left = self._time_left_to_reach(now, exc, entry)
                    if left is not None:
                        if left <= 0:
                            raise HubError(f"{what}: {self._unreachable}") from exc
                        # The run's last attempt lands on the deadline, not a backoff step past it.
                        wait = min(wait, left)
                        if self._announce_unreachable():
                            log.warning(
                                "%s; trying again for up to %.0fs", describe(exc, entry), deadlines.connect_seconds
                            )
                        if self.cancel.wait(wait):
                            raise Cancelled from exc
                        continue
                if _answered(exc) and attempt >= ANSWERED_ATTEMPTS:
                    raise HubError(f"{what}: {describe(exc, entry)} (gave up after {attempt} attempts)") from exc
                idle = now - max(started, progress() if progress else started)
                if idle + wait + longest_call > deadlines.stall_seconds:
                    raise HubError(
                        f"{what}: {describe(exc, entry)} (no progress for {idle:.0f}s, gave up after {attempt} "
                        f"attempt(s); the deadline is {deadlines.stall_seconds:.0f}s, "
                        f"set by --stall-timeout or {STALL_SECONDS_ENV})"
                    ) from exc
                log.warning("%s: %s; attempt %d failed, next in %.1fs", what, describe(exc, entry), attempt, wait)
                if self.cancel.wait(wait):
                    raise Cancelled from exc
                continue
            with self._lock:
                self._reached = True
            return result

    def _time_left_to_reach(self, now: float, exc: Exception, entry: ModelEntry) -> float | None:
        """Seconds this run has left to reach the Hub at all, 0 once it gave up; None once the Hub ever answered.

        The deadline is the run's, not the call's: without a network, every model gives up together.
        """
        with self._lock:
            if self._reached:
                return None
            if self._first_unreachable is None:
                self._first_unreachable = now
            waited = now - self._first_unreachable
            left = self.deadlines.connect_seconds - waited
            if left <= 0 and self._unreachable is None:
                self._unreachable = (
                    f"{describe(exc, entry)} (no answer for {waited:.0f}s; the deadline is "
                    f"{self.deadlines.connect_seconds:.0f}s, set by --connect-timeout or {CONNECT_SECONDS_ENV})"
                )
            return max(0.0, left)

    def _announce_unreachable(self) -> bool:
        """True the first time only: one line says the Hub cannot be reached, not one per model and attempt."""
        with self._lock:
            first = not self._warned_unreachable
            self._warned_unreachable = True
            return first


def _answered(exc: Exception) -> bool:
    from huggingface_hub.errors import HfHubHTTPError

    return isinstance(exc, HfHubHTTPError)


def _is_unreachable(exc: Exception) -> bool:
    import httpx2

    return isinstance(exc, httpx2.ConnectError | httpx2.ConnectTimeout)


def _is_access_denied(exc: Exception) -> bool:
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    status = getattr(getattr(exc, "response", None), "status_code", None)
    return isinstance(exc, GatedRepoError) or (status in (401, 403) and not isinstance(exc, RepositoryNotFoundError))


def _wire_error(exc: Exception) -> Exception:
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, HfHubHTTPError | httpx2.TransportError):
            return cause
        cause = cause.__cause__
    return exc


def _retry_wait(exc: Exception, attempt: int) -> float | None:
    """Seconds to wait before the next attempt, or None when retrying cannot help."""
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    backoff = min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2.0 ** (attempt - 1))
    if isinstance(exc, HfHubHTTPError):
        response = exc.response
        if response is None or response.status_code not in RETRY_STATUSES:
            return None
        header: str | None = response.headers.get("Retry-After")
        retry_after = _parse_retry_after(header)
        return backoff if retry_after is None else min(retry_after, RETRY_MAX_SECONDS)
    if isinstance(exc, httpx2.TransportError):
        return backoff
    return None


def _parse_retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def describe(exc: BaseException, entry: ModelEntry) -> str:
    """One line for a Hub failure: what happened and what to do. Never includes a token."""
    import httpx2
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(exc, GatedRepoError) or (status in (401, 403) and not isinstance(exc, RepositoryNotFoundError)):
        return (
            f"access denied (HTTP {status}): the repo may be gated or private; accept its terms on the Hub "
            "and set HF_TOKEN to a token with read access"
        )
    if isinstance(exc, RepositoryNotFoundError):
        return (
            f"repository {entry.repo_id} not found (HTTP {status}); check repo_id in the model list, "
            "or set HF_TOKEN if it is private or gated"
        )
    if isinstance(exc, RevisionNotFoundError):
        return f"revision {entry.revision!r} not found in {entry.repo_id}; check revision in the model list"
    if isinstance(exc, RemoteEntryNotFoundError):
        return f"file not found at this commit (HTTP {status}); the listing changed mid-run: run again"
    if isinstance(exc, HfHubHTTPError):
        if status in RETRY_STATUSES:
            return f"the Hub answered HTTP {status}; it is busy or down: try again later"
        return f"the Hub answered HTTP {status}"
    if isinstance(exc, httpx2.ConnectError | httpx2.ConnectTimeout):
        return f"cannot reach the Hub ({type(exc).__name__}: {exc}); check the network or HF_ENDPOINT"
    if isinstance(exc, httpx2.TimeoutException):
        return f"the transfer stalled: the Hub stopped sending ({type(exc).__name__}: {exc})"
    if isinstance(exc, httpx2.TransportError):
        return f"the connection to the Hub broke ({type(exc).__name__}: {exc}); check the network or HF_ENDPOINT"
    return f"{type(exc).__name__}: {exc}"


class _ByteCounter:
    """Stands in for huggingface_hub's per-file tqdm bar: counts bytes, draws nothing."""

    def __init__(self, on_bytes: ByteCallback, **_: object) -> None:
        self._on_bytes = on_bytes

    def __enter__(self) -> _ByteCounter:
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def update(self, n: int | float = 1) -> None:
        self._on_bytes(int(n))

    # huggingface_hub's Xet reporter also feeds these; the bytes are counted once, through update().
    def update_transfer(self, n: int | float = 1) -> None:
        return None

    def set_postfix_str(self, *_: object, **__: object) -> None:
        return None

    def set_transfer_postfix_str(self, *_: object, **__: object) -> None:
        return None

    def close(self) -> None:
        return None


def _byte_counter(on_bytes: ByteCallback) -> type[_ByteCounter]:
    """A class, not a function: huggingface_hub looks for `update_transfer` on it to use one bar per file."""

    class Counter(_ByteCounter):
        def __init__(self, **kwargs: object) -> None:
            super().__init__(on_bytes, **kwargs)

    return Counter
