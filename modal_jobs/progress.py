"""Progress for people: a byte bar with rate on a terminal, one line per model start and finish otherwise."""

from __future__ import annotations

import logging
import sys
import threading
import time
from types import TracebackType
from typing import Any

from tqdm import tqdm

from modal_jobs.summary import human_bytes

log = logging.getLogger("modal_jobs")


class ModelProgress:
    """Counts the bytes a model's download transfers; safe to call from many threads."""

    def __init__(self, label: str, total_bytes: int) -> None:
        self.label = label
        self.total_bytes = total_bytes
        self.transferred = 0
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._bar: tqdm[Any] | None = None
        if sys.stderr.isatty():
            self._bar = tqdm(total=total_bytes, unit="B", unit_scale=True, unit_divisor=1024, desc=label, leave=False)
        else:
            log.info("%s: downloading %s", label, human_bytes(total_bytes))

    def add(self, n: int) -> None:
        with self._lock:
            self.transferred += n
            if self._bar is not None:
                self._bar.update(n)

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
