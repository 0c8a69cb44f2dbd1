"""Where the bytes are: a `Backend` surveys its target through a `Store` and carries out a plan there.

`LocalBackend` is a directory on this machine; the Modal backend (`modal_jobs.modal_backend`) is the
volume. Both apply the same `ModelPlan`s; only how the bytes move differs.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Protocol

from modal_jobs.decide.facts import HeldModel
from modal_jobs.decide.model_plan import ModelPlan
from modal_jobs.hub import Hub
from modal_jobs.model_list import ModelEntry
from modal_jobs.rows import applied_row
from modal_jobs.store import LocalStore, Store, is_writable, require_writable
from modal_jobs.summary import ModelRow
from modal_jobs.target_lock import target_lock
from modal_jobs.verifying import verify_models


class Backend(Protocol):
    store: Store

    def check_writable(self) -> None:
        """Raise TargetError when the target cannot be written (download, clear)."""
        ...

    def absent(self) -> str | None:
        """Why the target does not exist (a sentence naming it), or None when it does: verify never creates one."""
        ...

    def exclusive(self, wait_seconds: float, cancel: threading.Event, operation: str) -> AbstractContextManager[None]:
        """Held while a run writes, so that two runs never interleave writes on one target.

        A second writer waits up to `wait_seconds` (`modal_jobs.writer_lock.wait_for_writer`), then
        refuses; the local target holds a flock, the volume a lease (`modal_jobs.volume_lease`).
        """
        ...

    def apply(self, models: Sequence[ModelPlan], cancel: threading.Event) -> list[ModelRow]:
        """Carry out the models' plans (no prune: that is `download`'s last step); one row each, in order."""
        ...

    def verify(
        self, entries: Sequence[ModelEntry], held: Mapping[str, HeldModel], cancel: threading.Event
    ) -> list[ModelRow]:
        """Re-hash the current revision of each entry that `verifiable` takes from what the target holds."""
        ...


class LocalBackend:
    """A directory this process writes directly."""

    def __init__(self, target: Path, hub: Hub | None = None) -> None:
        self.target = target
        self.store: Store = LocalStore(target)
        self.hub = hub or Hub()

    def check_writable(self) -> None:
        require_writable(self.target)

    def absent(self) -> str | None:
        return None if self.target.is_dir() else f"{self.target} does not exist (check --local-dir)"

    def exclusive(self, wait_seconds: float, cancel: threading.Event, operation: str) -> AbstractContextManager[None]:
        if self.target.exists() and not is_writable(self.target):
            return nullcontext()  # read-only: no writer can be working here through this mount
        return target_lock(self.target, wait_seconds, cancel, operation)

    def apply(self, models: Sequence[ModelPlan], cancel: threading.Event) -> list[ModelRow]:
        from modal_jobs.engine import apply_models  # the writer: imported by the runs that write, not by `list`

        outcomes = apply_models(models, self.target, self.hub, cancel)
        return [applied_row(m, self.store.target, outcomes.get(m.name)) for m in models]

    def verify(
        self, entries: Sequence[ModelEntry], held: Mapping[str, HeldModel], cancel: threading.Event
    ) -> list[ModelRow]:
        return verify_models(entries, self.target, cancel, writable=is_writable(self.target), held=held)
