"""The Hugging Face Hub edge: resolve a revision, list a commit's files, download one file.

Everything that crosses the network goes through `huggingface_hub` (auth from `HF_TOKEN`,
redirects, Xet, resumable HTTP). What it does not do here, this module adds: one retry policy
for every call, bounded by time rather than by attempts (`modal_jobs.deadlines`), and error
messages that say what to do (`modal_jobs.hub_errors`).

`huggingface_hub` is imported on first use: it is most of the CLI's start-up, and `verify`,
`list` on a pinned list and `clear` never need it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from modal_jobs.deadlines import CONNECT_SECONDS_ENV, STALL_SECONDS_ENV, Deadlines
from modal_jobs.errors import Cancelled
from modal_jobs.hub_errors import (
    ANSWERED_ATTEMPTS,
    AccessDenied,
    HubError,
    answered,
    describe,
    is_access_denied,
    is_unreachable,
    retry_wait,
    wire_error,
)
from modal_jobs.model_dir import FileRecord, checked_record
from modal_jobs.model_list import ModelEntry, is_commit
from modal_jobs.progress import ByteCallback, ByteReports, byte_counter

if TYPE_CHECKING:
    from huggingface_hub import HfApi

log = logging.getLogger(__name__)

T = TypeVar("T")


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

    @property
    def has_token(self) -> bool:
        """Whether requests carry a token (HF_TOKEN or a saved login): a refused repo may only need one."""
        from huggingface_hub import get_token

        return get_token() is not None

    def resolve(self, entry: ModelEntry) -> str:
        """The commit the entry's revision points at now: one request."""
        info = self.call(
            lambda: self.api.model_info(entry.repo_id, revision=entry.revision),
            f"{entry.repo_id}@{entry.revision}: resolve revision",
            entry,
        )
        if not is_commit(info.sha):
            raise HubError(
                f"{entry.repo_id}: the Hub gave {info.sha!r} for revision {entry.revision!r}, not a 40-hex commit"
            )
        return str(info.sha)

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
            if item.lfs is not None:
                records.append(checked_record(item.path, item.lfs.size, f"sha256:{item.lfs.sha256}"))
            else:
                records.append(checked_record(item.path, item.size, f"git-sha1:{item.blob_id}"))
        if not records:
            raise HubError(
                f"{entry.repo_id}@{commit[:7]}: no files to download"
                + ("; check include/exclude in the model list" if entry.include or entry.exclude else "")
            )
        return records

    def download(self, entry: ModelEntry, commit: str, path: str, model_dir: Path, on_bytes: ByteCallback) -> None:
        """Fetch one file into the model directory; the caller has cleared its path."""
        from huggingface_hub import hf_hub_download

        reports = ByteReports(on_bytes)
        self.call(
            lambda: hf_hub_download(
                entry.repo_id,
                path,
                revision=commit,
                local_dir=model_dir,
                endpoint=self.endpoint,
                tqdm_class=cast(Any, byte_counter(reports)),
            ),
            f"{entry.repo_id}: {path}",
            entry,
            progress=lambda: reports.heard,
            longest_call=self.deadlines.longest_call,
        )
        reports.flush()

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
        started = time.monotonic()

        def idle(now: float) -> float:
            return now - max(started, progress() if progress else started)

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
                exc = wire_error(raised)
                wait = self._next_wait(exc, what, entry, attempt=attempt, idle=idle, longest_call=longest_call)
                if self.cancel.wait(wait):
                    raise Cancelled from exc
                continue
            with self._lock:
                self._reached = True
            return result

    def _next_wait(
        self,
        exc: Exception,
        what: str,
        entry: ModelEntry,
        *,
        attempt: int,
        idle: Callable[[float], float],
        longest_call: float,
    ) -> float:
        """Seconds until the next attempt; raises HubError when retrying cannot help or the deadlines forbid it."""
        wait = retry_wait(exc, attempt)
        if wait is None:
            error = AccessDenied if is_access_denied(exc) else HubError
            raise error(f"{what}: {describe(exc, entry)}") from exc
        deadlines = self.deadlines
        now = time.monotonic()
        if is_unreachable(exc):
            left = self._time_left_to_reach(now, exc, entry)
            if left is not None:
                if left <= 0:
                    raise HubError(f"{what}: {self._unreachable}") from exc
                if self._announce_unreachable():
                    log.warning("%s; trying again for up to %.0fs", describe(exc, entry), deadlines.connect_seconds)
                # The run's last attempt lands on the deadline, not a backoff step past it.
                return min(wait, left)
        if answered(exc) and attempt >= ANSWERED_ATTEMPTS:
            raise HubError(f"{what}: {describe(exc, entry)} (gave up after {attempt} attempts)") from exc
        stalled = idle(now)
        if stalled + wait + longest_call > deadlines.stall_seconds:
            raise HubError(
                f"{what}: {describe(exc, entry)} (no progress for {stalled:.0f}s, gave up after {attempt} "
                f"attempt(s); the deadline is {deadlines.stall_seconds:.0f}s, "
                f"set by --stall-timeout or {STALL_SECONDS_ENV})"
            ) from exc
        log.warning("%s: %s; attempt %d failed, next in %.1fs", what, describe(exc, entry), attempt, wait)
        return wait

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
