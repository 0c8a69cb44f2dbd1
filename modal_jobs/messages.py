"""How messages name things: many of them (the first few, then how many more), and the commands to run."""

from __future__ import annotations

from collections.abc import Iterable

# What a message tells a person to run: works with a stock `python3` from the repository root (README, Install).
LOCK_COMMAND = "python3 tools/nox_locked.py -s lock"
DOWNLOAD_COMMAND = "python3 tools/nox_locked.py -s download"


def shorten(items: Iterable[str], limit: int = 5) -> str:
    listed = list(items)
    shown = ", ".join(listed[:limit])
    return shown if len(listed) <= limit else f"{shown} ({len(listed) - limit} more)"
