"""Progress for people: a byte bar on a terminal; otherwise start, finish, and a line every 30 s while bytes flow.

The lines go through the `modal_jobs` logger, so a container's progress reaches the caller by the
same path as its other messages (see `modal_jobs.logs`), and an Actions log gets tens of lines
for a multi-GB model, not thousands. huggingface_hub's own per-file bars are replaced by a counter
(`byte_counter`) that feeds these, a block at a time (`ByteReports`).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from modal_jobs.summary import human_bytes

if TYPE_CHECKING:
    from tqdm import tqdm

log = logging.getLogger("modal_jobs")

ByteCallback = Callable[[int], None]

PROGRESS_SECONDS_ENV = "MODEL_CACHE_PROGRESS_SECONDS"
DEFAULT_PROGRESS_SECONDS = 30.0
# huggingface_hub's byte reports are passed on at most once a block, or once this often (`ByteReports`).
REPORT_BYTES = 1 << 20
REPORT_SECONDS = 0.1


def progress_interval() -> float:
    try:
        return max(0.1, float(os.environ.get(PROGRESS_SECONDS_ENV, DEFAULT_PROGRESS_SECONDS)))
    except ValueError:
        return DEFAULT_PROGRESS_SECONDS


class ModelProgress:
    """Counts the bytes a model's download transfers; safe to call from many threads."""

    def __init__(self, label: str, total_bytes: int, fetch_files: int = 0, check_files: int = 0) -> None:
        self.label = label
        self.total_bytes = total_bytes
        self.transferred = 0
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._interval = progress_interval()
        self._next_line = self._started + self._interval
        self._bar: tqdm[Any] | None = None
        if sys.stderr.isatty():
            from tqdm import tqdm  # only a terminal draws a bar: a pipe or a log never imports it

            self._bar = tqdm(total=total_bytes, unit="B", unit_scale=True, unit_divisor=1024, desc=label, leave=False)
        elif fetch_files:
            checking = f", checking {check_files} present" if check_files else ""
            log.info("%s: fetching %d file(s), %s%s", label, fetch_files, human_bytes(total_bytes), checking)
        else:
            log.info("%s: checking %d present file(s); any that is damaged is fetched", label, check_files)

    def add(self, n: int) -> None:
        line = None
        with self._lock:
            self.transferred += n
            if self._bar is not None:
                self._bar.update(n)
            now = time.monotonic()
            if self._bar is None and now >= self._next_line:
                self._next_line = now + self._interval
                line = self._line(now)
        if line:
            log.info("%s", line)

    def expect(self, n: int) -> None:
        """More bytes to transfer than planned: a present file turned out damaged."""
        with self._lock:
            self.total_bytes += n
            if self._bar is not None:
                self._bar.total = self.total_bytes
                self._bar.refresh()

    def file_counter(self, size: int) -> ByteCallback:
        """A byte callback for one file that counts each of its bytes once, across resumes and restarts."""
        counted = 0
        lock = threading.Lock()

        def count(n: int) -> None:
            nonlocal counted
            with lock:
                step = max(0, min(n, size - counted))
                counted += step
            if step:
                self.add(step)

        return count

    def _line(self, now: float) -> str:
        seconds = max(now - self._started, 1e-6)
        rate = human_bytes(int(self.transferred / seconds))
        return f"{self.label}: {human_bytes(self.transferred)} of {human_bytes(self.total_bytes)} ({rate}/s)"

    def __enter__(self) -> ModelProgress:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.close()
        seconds = max(time.monotonic() - self._started, 1e-6)
        rate = human_bytes(int(self.transferred / seconds))
        outcome = "finished" if exc_type is None else "stopped"
        log.info(
            "%s: %s, %s transferred in %.1fs (%s/s)",
            self.label,
            outcome,
            human_bytes(self.transferred),
            seconds,
            rate,
        )


class ByteReports:
    """One file's byte reports from huggingface_hub, passed on a block at a time.

    huggingface_hub reports every socket read, of up to 1 MiB (`deadlines.SOCKET_READ_BYTES`), and of
    far less when bytes come slowly. Passing each one through the counters, the hash's wake-ups and the
    stop check is Python work per read that none of them needs (about 0.1 s of CPU for 1.5 GB in 64 KiB
    reads, measured); a block at a time, or every `REPORT_SECONDS` when bytes trickle, serves every
    reader of them. The first report passes at once (the file exists now), a rewind at once, and what is
    left when the transfer ends.
    """

    def __init__(self, on_bytes: ByteCallback) -> None:
        self._on_bytes = on_bytes
        self._pending = 0
        self._due = 0.0
        # When the last report came, however small: the stall deadline counts from it.
        self.heard = time.monotonic()

    def add(self, n: int) -> None:
        now = self.heard = time.monotonic()
        pending = self._pending + n
        if n >= 0 and pending < REPORT_BYTES and now < self._due:
            self._pending = pending
            return
        self._due = now + REPORT_SECONDS
        if n < 0:
            self.flush()
            self._on_bytes(n)
            return
        self._pending = 0
        self._on_bytes(pending)

    def flush(self) -> None:
        pending, self._pending = self._pending, 0
        if pending:
            self._on_bytes(pending)


class _ByteCounter:
    """Stands in for huggingface_hub's per-file tqdm bar: counts bytes, draws nothing."""

    def __init__(self, reports: ByteReports, **_: object) -> None:
        self._reports = reports

    def __enter__(self) -> _ByteCounter:
        return self

    def __exit__(self, *_: object) -> None:
        self._reports.flush()

    def update(self, n: int | float = 1) -> None:
        self._reports.add(int(n))

    # huggingface_hub's Xet reporter also feeds these; the bytes are counted once, through update().
    def update_transfer(self, n: int | float = 1) -> None:
        return None

    def set_postfix_str(self, *_: object, **__: object) -> None:
        return None

    def set_transfer_postfix_str(self, *_: object, **__: object) -> None:
        return None

    def close(self) -> None:
        self._reports.flush()


def byte_counter(reports: ByteReports) -> type[_ByteCounter]:
    """A class, not a function: huggingface_hub looks for `update_transfer` on it to use one bar per file."""

    class Counter(_ByteCounter):
        def __init__(self, **kwargs: object) -> None:
            super().__init__(reports, **kwargs)

    return Counter
