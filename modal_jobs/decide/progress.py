"""How far a model's plan has got on the target, decided again right before each step that writes.

A plan is made from facts that may be minutes old by the time it is carried out: a container is
retried by Modal after it had finished part of its work, or another run changed the model in the
meantime. The executor gathers the model's facts once more and asks here before it writes:

```
START    ─► stage: write the plan's revision (files, then its manifest)
STAGED   ─► its revision is complete on the target: nothing to write but the pointer
CURRENT  ─► the pointer already names it: the plan is carried out, nothing to do
a reason ─► the model changed since the plan was made: nothing is written, the reason is reported
```

A revision a reader may be loading (the pointer's, or the one it keeps as previous) is never
written to: a plan that would write one is refused here.
"""

from __future__ import annotations

from enum import StrEnum

from modal_jobs.decide.facts import HeldModel, HeldRevision
from modal_jobs.decide.model_plan import ModelPlan
from modal_jobs.model_dir import set_digest

RUN_AGAIN = "run download again to plan from what the target holds now"


class Progress(StrEnum):
    """How far a plan got; anything else `progress` returns is the reason it no longer applies."""

    START = "start"
    STAGED = "staged"
    CURRENT = "current"


def progress(plan: ModelPlan, held: HeldModel | None) -> Progress | str:
    """Where `plan` stands on the target that holds `held`, or why it no longer applies."""
    assert plan.revision is not None, "FETCH and REPAIR only"
    pointer = held.pointer if held is not None else None
    revision = held.revisions.get(plan.revision) if held is not None else None
    done = revision is not None and _carries_out(revision, plan)
    if pointer is not None and pointer.revision == plan.revision and done:
        return Progress.CURRENT
    now = pointer.revision if pointer is not None else None
    if now != plan.replaces:
        return (
            f"another run changed {plan.name} since this run planned (its pointer names "
            f"{now or 'nothing'}, not {plan.replaces or 'nothing'}); {RUN_AGAIN}"
        )
    if done:
        return Progress.STAGED
    in_use = {pointer.revision, pointer.previous} if pointer is not None else set()
    if plan.revision in in_use:
        return f"revision {plan.revision} of {plan.name} is in use by readers and is never rewritten; {RUN_AGAIN}"
    return Progress.START


def _carries_out(revision: HeldRevision, plan: ModelPlan) -> bool:
    """The revision is complete, sound, and holds exactly the plan's commit and files."""
    manifest = revision.manifest
    return (
        manifest is not None
        and revision.complete
        and not revision.damaged
        and manifest.repo_id == plan.repo_id
        and manifest.commit == plan.commit
        and set_digest(manifest.files) == set_digest(plan.files)
        and (plan.entry is None or (manifest.include, manifest.exclude) == (plan.entry.include, plan.entry.exclude))
    )
