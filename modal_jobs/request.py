"""What a person asked for, parsed once by the entry point and passed down to the operation."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from modal_jobs.model_list import ModelList
from modal_jobs.summary import Operation


class LockMode(StrEnum):
    """How a run treats models.lock, as uv does: bring it up to date first, refuse when stale, or take it as is."""

    UPDATE = "update"
    LOCKED = "locked"
    FROZEN = "frozen"


@dataclass(frozen=True)
class Request:
    """What the person asked for, already parsed."""

    operation: Operation
    sizes: tuple[str, ...] = ()
    repo_ids: tuple[str, ...] = ()
    dry_run: bool = False
    yes: bool = False
    prune: bool = False
    lock_wait: float = 60.0
    base_model_list: ModelList | None = None
    lock_mode: LockMode = LockMode.UPDATE
    upgrade: bool = False  # `lock --upgrade`: move branches and tags (of --model, or all)
    check: bool = False  # `lock --check`: say how the lock disagrees with the list, change nothing

    def __post_init__(self) -> None:
        object.__setattr__(self, "operation", Operation(self.operation))
