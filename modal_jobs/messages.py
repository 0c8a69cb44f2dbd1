"""How a message names many things: the first few, then how many more."""

from __future__ import annotations

from collections.abc import Iterable


def shorten(items: Iterable[str], limit: int = 5) -> str:
    listed = list(items)
    shown = ", ".join(listed[:limit])
    return shown if len(listed) <= limit else f"{shown} ({len(listed) - limit} more)"
