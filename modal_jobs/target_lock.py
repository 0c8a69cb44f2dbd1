"""One writer at a time on a local target: `download`, `verify` and `clear` hold `<target>/.model-cache.lock`.

An advisory `flock`, released by the kernel when the process dies, so a killed run never leaves a
stale lock behind. On Modal no lock spans containers: the workflow's concurrency group is the guard.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from modal_jobs.errors import InterruptedRun, TargetError
from modal_jobs.model_dir import LOCK_NAME

log = logging.getLogger("modal_jobs")


@contextmanager
def target_lock(target: Path, wait_seconds: float, cancel: threading.Event | None = None) -> Iterator[None]:
    """Hold the target's lock; wait up to `wait_seconds` for another run (or a stop request), then refuse."""
    stop = cancel or threading.Event()
    target.mkdir(parents=True, exist_ok=True)
    fd = os.open(target / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        deadline = time.monotonic() + wait_seconds
        announced = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _holder(fd)
                if time.monotonic() >= deadline:
                    raise TargetError(
                        f"another run ({holder}) is working on {target}; wait for it to finish, "
                        "or pass a longer --lock-wait"
                    ) from None
                if not announced:
                    log.warning("another run (%s) is working on %s; waiting up to %.0fs", holder, target, wait_seconds)
                    announced = True
                if stop.wait(0.2):
                    raise InterruptedRun("interrupted while waiting for another run; nothing was changed") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)  # releases the lock


def _holder(fd: int) -> str:
    try:
        pid = os.pread(fd, 32, 0).decode().strip()
    except OSError:
        pid = ""
    return f"pid {pid}" if pid else "pid unknown"
