"""How long the cache waits on the Hub, and the one place huggingface_hub's globals are set to match.

- A call that makes no progress (no response, no byte of a file) fails after `stall_seconds`,
  huggingface_hub's own resume loop included: its read timeout is set from the same deadline.
- A run that never reaches the Hub at all gives up after `connect_seconds`, once for the run,
  not once per model.

The CLI's flags and these environment variables set both; a container gets them as environment
from the caller (`Hub.container_env`).
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass

STALL_SECONDS_ENV = "MODEL_CACHE_STALL_TIMEOUT"
CONNECT_SECONDS_ENV = "MODEL_CACHE_CONNECT_TIMEOUT"

# huggingface_hub tries a stalled body this many times (first try included) before it gives up.
_HF_BODY_TRIES = 6

# hf_xet sizes its download buffers from the memory it detects (1.6 GB, 392 MB a file, growing to
# 6.3 GB on a 24 GB machine). The cache needs far less to keep a few transfers busy: with 128 MiB
# (32 MiB a file) a cold download peaks near 210 MB instead of 330-350 MB with 256 MiB, at the same
# speed (docs/performance.md). The Modal image sets its own, sized to the container (modal_jobs/modal_app.py).
LOCAL_XET_BUFFERS = {
    "HF_XET_RECONSTRUCTION_DOWNLOAD_BUFFER_SIZE": str(128 << 20),
    "HF_XET_RECONSTRUCTION_DOWNLOAD_BUFFER_PERFILE_SIZE": str(32 << 20),
    "HF_XET_RECONSTRUCTION_DOWNLOAD_BUFFER_LIMIT": str(128 << 20),
}

# The most a plain HTTP transfer takes from its socket in one read (httpcore's default: 64 KiB).
# Python's work is per read: side by side, 1 MiB reads took a cold download of the benchmark's
# workload from 3.97-4.20 s to 3.50-3.66 s (huggingface_hub alone: 3.8-4.0 s to 2.96-3.47 s);
# 4 MiB reads cost 1.6 s more system time (docs/performance.md).
SOCKET_READ_BYTES = 1 << 20


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
    import huggingface_hub.file_download
    import huggingface_hub.utils.logging  # adds huggingface_hub's own stderr handler, removed below

    # A file's HEAD that fails (5xx, 429, a dropped connection) is asked again by hf_hub_download itself,
    # up to 6 more times with its own backoff, inside each of our attempts: 42 asks and minutes of sleep
    # per file. The cache's policy (`Hub.call`: Retry-After honoured, 6 asks, the deadlines) is the only one.
    huggingface_hub.file_download._DEFAULT_RETRY_ON_EXCEPTIONS = ()  # type: ignore[attr-defined]
    huggingface_hub.file_download._DEFAULT_RETRY_ON_STATUS_CODES = ()  # type: ignore[attr-defined]

    # Hand each socket read to the file as it comes. The default gathers 10 MiB per chunk and copies
    # it out: 40% of a download's CPU, and 10 MiB of memory per transfer in flight.
    huggingface_hub.constants.DOWNLOAD_CHUNK_SIZE = None  # type: ignore[assignment]
    # ...and let each socket read take up to 1 MiB: huggingface_hub 2's HTTP client is httpx2 over httpcore2
    # (a client without it loses only the speed; tests/test_bench.py checks that this one has it).
    with contextlib.suppress(ImportError):
        import httpcore2

        httpcore2.HTTP11Connection.READ_NUM_BYTES = SOCKET_READ_BYTES
    # Its resume loop on a stalled body must end inside our stall deadline (see Deadlines).
    huggingface_hub.constants.HF_HUB_DOWNLOAD_TIMEOUT = deadlines.read_timeout  # type: ignore[assignment]
    # hf_xet reads its timeouts and buffer sizes from the environment when it starts; a value the person set wins.
    for name, value in {**deadlines.xet_environment(), **LOCAL_XET_BUFFERS}.items():
        os.environ.setdefault(name, value)
    # Its records reach the run's one stderr handler; its own handler would print each warning twice.
    logging.getLogger("huggingface_hub").handlers.clear()
    logging.getLogger("huggingface_hub").propagate = True
