"""The line each operation ends with when SIGINT or SIGTERM stops it: what it did, and what it left undone.

The driver prints it as `interrupted: <line>` and exits 130. Each is said where the operation knows
what it left (the names it removed, the models it was fetching or hashing); a stop before the
operation changed anything gets `before_any_change`.
"""

from __future__ import annotations

from collections.abc import Sequence

from modal_jobs.messages import shorten
from modal_jobs.summary import Operation

AGAIN = "run the same command again"


def before_any_change(operation: Operation) -> str:
    """A stop while the operation was still gathering facts: nothing was written anywhere yet."""
    if operation is Operation.LOCK:
        return "lock stopped before it had every answer; models.lock was not written"
    if operation is Operation.DOWNLOAD:
        return f"download stopped while planning, before it changed the target; {AGAIN} to download"
    if operation is Operation.VERIFY:
        return f"verify stopped before it checked any model; nothing was changed: {AGAIN} for the verdict"
    if operation is Operation.CLEAR:
        return f"clear stopped before it removed anything; nothing was changed: {AGAIN} to remove"
    return f"{operation} stopped before it had every answer; nothing was changed"


def download_stopped(fetching: Sequence[str]) -> str:
    """A stop while models were being fetched: the finished ones are complete, the rest resume from what they have."""
    if not fetching:
        return before_any_change(Operation.DOWNLOAD)
    return (
        f"download stopped while fetching {shorten(fetching)}: {AGAIN} to resume them (the files already "
        "fetched are kept; nothing half-written was marked complete, and readers keep what they had)"
    )


def prune_stopped(pruned: Sequence[str], left: Sequence[str]) -> str:
    """A stop between the removals of a prune: every download was done by then."""
    done = f"pruned {shorten(pruned)}" if pruned else "pruned nothing"
    return f"download stopped while pruning, its downloads done: {done}; {shorten(left)} still to prune: {AGAIN}"


def verify_stopped(checked: Sequence[str], unchecked: Sequence[str]) -> str:
    """A stop while hashing: which models were hashed in full, which were not; no verdict either way."""
    done = f"checked {shorten(checked)}" if checked else "checked none of the models it hashes"
    rest = f"; not {shorten(unchecked)}" if unchecked else ""
    return f"verify stopped before its verdict: {done}{rest}: {AGAIN} for the verdict"


def clear_stopped(removed: Sequence[str], remaining: Sequence[str], target: str) -> str:
    """A stop between two removals: which directories went, which are still on the target."""
    gone = f"removed {shorten([f'{n}/' for n in removed])}" if removed else "removed nothing"
    left = shorten([f"{n}/" for n in remaining])
    remain = "remains" if len(remaining) == 1 else "remain"
    return f"clear stopped: {gone} from {target}; {left} {remain}: {AGAIN} to remove them"
