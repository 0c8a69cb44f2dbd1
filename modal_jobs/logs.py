"""Log lines as people read them, on stderr: the same set-up for the CLI and inside the containers.

Errors and `interrupted:` lines stand alone, warnings say so, the rest is the message itself.
A container also sends each line to the caller, which prints it as it comes
(`modal_jobs.modal_backend.collect`): one log for the run, wherever its models were worked on.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Protocol

log = logging.getLogger("modal_jobs")


class LineSink(Protocol):
    """Where a container's log lines go: the caller's `modal.Queue`."""

    def put(self, v: Any) -> None: ...


def configure_logging() -> logging.Handler:
    """One handler on stderr for the cache's lines and huggingface_hub's warnings."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    log.setLevel(logging.INFO)
    return handler


def forward_logs(events: LineSink | None) -> None:
    """In a container: log to stderr (the container's log) and, when the caller listens, to its queue."""
    handler = configure_logging()
    if events is not None:
        forwarded = ForwardedLines(events)
        forwarded.setFormatter(handler.formatter)
        logging.getLogger().addHandler(forwarded)


class ForwardedLines(logging.Handler):
    """Sends a container's log lines to the caller, formatted as they would be printed here."""

    def __init__(self, events: LineSink) -> None:
        super().__init__(logging.INFO)
        self.events = events

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.events.put(self.format(record))
        except Exception:
            self.handleError(record)


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.levelno >= logging.ERROR or message.startswith(("error:", "interrupted:")):
            return message
        if record.levelno >= logging.WARNING:
            return f"warning: {message}"
        return message
