"""How messages name things: many of them (the first few, then how many more), and the commands to run."""

from __future__ import annotations

from collections.abc import Iterable

from modal_jobs import reader

# What a message tells a person to run: works with a stock `python3` from the repository root (README, Install).
# The reader owns them: it is copied alone into inference images and must say the same.
LOCK_COMMAND = reader.LOCK_COMMAND
DOWNLOAD_COMMAND = reader.COMMAND


def shorten(items: Iterable[str], limit: int = 5) -> str:
    listed = list(items)
    shown = ", ".join(listed[:limit])
    return shown if len(listed) <= limit else f"{shown} ({len(listed) - limit} more)"
