"""One writer at a time on a local target: `download`, `verify` and `clear` hold `<target>/.model-cache.lock`.

An advisory `flock`, released by the kernel when the process dies, so a killed run never leaves a
stale lock behind: there is nothing to break. The holder writes who it is into the file
(`modal_jobs.writer_lock.Writer`), for the message a second run prints. The Modal Volume has the
same shape with a lease (`modal_jobs.volume_lease`).
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from modal_jobs.model_dir import LOCK_NAME
from modal_jobs.writer_lock import Writer, this_writer, unknown_writer, wait_for_writer

# How often a second run looks whether the lock is free (and whether it was asked to stop).
POLL_SECONDS = 0.2


@contextmanager
def target_lock(
    target: Path, wait_seconds: float, cancel: threading.Event | None = None, operation: str = "a writer"
) -> Iterator[None]:
    """Hold the target's lock; wait up to `wait_seconds` for another run (or a stop request), then refuse."""
    stop = cancel or threading.Event()
    target.mkdir(parents=True, exist_ok=True)
    fd = os.open(target / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        wait_for_writer(lambda: _take(fd), wait_seconds, stop, where=str(target), poll=POLL_SECONDS)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(this_writer(operation, time.time()).to_record()).encode() + b"\n")
        yield
    finally:
        os.close(fd)  # releases the lock


def _take(fd: int) -> Writer | None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return None
    except BlockingIOError:
        return _holder(fd)


def _holder(fd: int) -> Writer:
    """Who the file says holds it; read back as hostile input (another version, or anyone, wrote it)."""
    try:
        record = json.loads(os.pread(fd, 4096, 0))
    except (OSError, ValueError):
        return unknown_writer()
    return Writer.from_record(record) or unknown_writer()
