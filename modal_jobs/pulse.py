"""When the next model of a local run starts: once those running receive no more bytes through Python.

A plain HTTP transfer runs in Python, a socket read at a time: on two cores, three models' transfers
at once cost more CPU per byte than one model's, and the run ends later (docs/performance.md). So a model
holds the next one back while its plain HTTP transfers report bytes. hf_xet's transfers run outside
Python and report from threads of their own, which do not count: a Xet transfer holds the next model
back only until `QUIET_SECONDS` after it begins, and three models at once fill the pauses between
hf_xet's requests. A model stops holding the next one back when its transfers are
over (its last hashes run beside the next model's transfers), or after `QUIET_SECONDS` without a
byte since a transfer began or last reported: one stuck model does not hold up the others, and a
trickle slower than one read per `QUIET_SECONDS` lets the next model start beside it. The engine is
woken when a model's transfers are over, and looks again when a model would go quiet (`next_look`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

# While reads arrive, they are reported at most `progress.REPORT_SECONDS` (0.1 s) apart.
QUIET_SECONDS = 0.3
# The engine's file workers: huggingface_hub reports a plain HTTP transfer's reads on the worker that
# called it; hf_xet reports a Xet transfer's bytes from threads of its own.
FETCH_THREADS = "fetch"


def on_file_worker() -> bool:
    """Whether a byte report is made on one of the engine's file workers: a plain HTTP transfer's reads, which
    hold the next model back (and a Xet file's last report, when huggingface_hub closes its bar)."""
    return threading.current_thread().name.startswith(FETCH_THREADS)


class Pulse:
    """One model's transfers, as the next model's start sees them."""

    def __init__(self, over: threading.Event | None = None) -> None:
        self.heard = time.monotonic()
        self._lock = threading.Lock()
        self._in_flight = 0
        self._begun = False
        self._over = over  # set when the model's transfers are over: the next may start now, not at a poll

    def beat(self) -> None:
        """A plain HTTP transfer of the model reported bytes."""
        self.heard = time.monotonic()

    @contextmanager
    def transfer(self) -> Iterator[None]:
        """One file's transfer: the wait for its first byte counts as receiving, as its bytes do."""
        with self._lock:
            self._in_flight += 1
            self._begun = True
            self.heard = time.monotonic()
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= 1
                if self._in_flight == 0 and self._over is not None:
                    self._over.set()

    def receiving(self, now: float) -> bool:
        # Before its first transfer the model is making room and linking: it is about to receive.
        # `heard + QUIET_SECONDS`, the sum `next_look` waits for, so the two agree to the last bit.
        return (self._in_flight > 0 or not self._begun) and now < self.heard + QUIET_SECONDS


def may_start(running: Sequence[Pulse], limit: int, now: float) -> bool:
    """Whether another model may start beside those running (at most `limit` at once), at `now` (monotonic)."""
    return len(running) < limit and not any(pulse.receiving(now) for pulse in running)


def next_look(running: Sequence[Pulse], now: float) -> float:
    """Seconds from `now` until the first model holding the next one back would stop, hearing no more bytes.

    Above 0: a model holds the next back only while `now` is short of the same sum (`Pulse.receiving`)."""
    return min((pulse.heard + QUIET_SECONDS - now for pulse in running if pulse.receiving(now)), default=QUIET_SECONDS)
