"""Log lines as people read them, on stderr: the same set-up for the CLI and inside the containers.

Errors and `interrupted:` lines stand alone, warnings say so, the rest is the message itself.
"""

from __future__ import annotations

import logging
import sys

log = logging.getLogger("modal_jobs")


def configure_logging() -> logging.Handler:
    """One handler on stderr for the cache's lines and huggingface_hub's warnings."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    log.setLevel(logging.INFO)
    return handler


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.levelno >= logging.ERROR or message.startswith(("error:", "interrupted:")):
            return message
        if record.levelno >= logging.WARNING:
            return f"warning: {message}"
        return message
