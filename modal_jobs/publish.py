"""The last step of a download: make a complete revision current, then retire what is no longer kept.

```
gather the model again ─► decide.progress ─► STAGED: write the pointer, retire the rest
                                           ├► CURRENT: nothing to do (an earlier attempt did it)
                                           └► START or a reason: refused, the pointer stays where it is
```

The same sequence for a local directory and for the volume; each store writes in its own way: a
local target by `os.replace`, the volume through the client API from the caller, after the
container that wrote the revision committed it (the barrier: the listing must show every file of
the manifest at its size before the pointer names it).
"""

from __future__ import annotations

import logging
from typing import Protocol

from modal_jobs.decide.facts import HeldModel, Kind
from modal_jobs.decide.model_plan import ModelPlan
from modal_jobs.decide.progress import RUN_AGAIN, Progress, progress
from modal_jobs.errors import ModelFailed
from modal_jobs.model_dir import Pointer

log = logging.getLogger("modal_jobs")


class Publisher(Protocol):
    """What a store offers for the last step: a fresh look at one model, the pointer, and retiring."""

    def held(self, name: str, kind: Kind) -> HeldModel: ...

    def write_pointer(self, name: str, pointer: Pointer) -> None: ...

    def retire(self, model: HeldModel, revision: str) -> None: ...


def publish_model(plan: ModelPlan, store: Publisher) -> None:
    """Point readers at the plan's revision once the target shows it complete; raise ModelFailed if it does not."""
    assert plan.entry is not None and plan.revision is not None and plan.commit is not None, "FETCH and REPAIR only"
    held = store.held(plan.name, Kind.DIRECTORY)
    state = progress(plan, held)
    if not isinstance(state, Progress):
        raise ModelFailed(state)
    if state is Progress.START:
        raise ModelFailed(
            f"revision {plan.revision} of {plan.name} is not complete on the target after it was written "
            f"(a file or its manifest is missing); the pointer was not moved: {RUN_AGAIN}"
        )
    if state is Progress.STAGED:
        store.write_pointer(plan.name, Pointer(plan.entry.repo_id, plan.revision, plan.commit, plan.previous))
    for old in plan.retire:
        if old in held.revisions:
            _retire(store, held, old, plan.repo_id)


def _retire(store: Publisher, held: HeldModel, revision: str, repo_id: str) -> None:
    """Remove a revision no reader is sent to any more; a failure leaves it for the next download to retire."""
    try:
        store.retire(held, revision)
    except (OSError, ModelFailed) as exc:
        log.warning(
            "%s: could not remove the old revision %s (%s); the next download retires it", repo_id, revision, exc
        )
