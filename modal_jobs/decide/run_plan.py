"""The whole run's plan: one `ModelPlan` per selected entry, then what the list does not own.

What no entry owns is left alone and reported (an orphan), unless `--prune` asks for the models of
ours the list dropped to be removed, and every model of the list resolved.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from modal_jobs.decide.facts import HeldModel, HubAnswer, Kind
from modal_jobs.decide.model_plan import Action, ModelPlan, plan_model
from modal_jobs.messages import shorten
from modal_jobs.model_list import ModelEntry, ModelList
from modal_jobs.summary import human_bytes


@dataclass(frozen=True)
class Orphan:
    """A top-level name no entry of the list owns; `repo_id` is set when it holds one of our manifests."""

    name: str
    files: int
    bytes: int
    repo_id: str | None = None


@dataclass(frozen=True)
class Plan:
    models: tuple[ModelPlan, ...]
    orphans: tuple[Orphan, ...] = ()  # left alone: unknown directories, and dropped models when not pruning
    prune_refused: str | None = None  # why --prune was not planned, when it was asked for


def orphans(held: Mapping[str, HeldModel], model_list: ModelList) -> list[Orphan]:
    """Top-level names no entry owns; those holding our manifest for a repo the list no longer names carry it."""
    owned = {m.dirname for m in model_list.models}
    listed = {m.repo_id for m in model_list.models}
    found = []
    for name in sorted(set(held) - owned):
        item = held[name]
        repo_id = item.repo_id if item.kind is Kind.DIRECTORY else None
        dropped = repo_id if repo_id is not None and repo_id not in listed else None
        found.append(Orphan(name, item.file_count, item.bytes, dropped))
    return found


def plan_run(
    entries: Sequence[ModelEntry],
    answers: Mapping[str, HubAnswer | str],
    held: Mapping[str, HeldModel],
    model_list: ModelList,
    *,
    prune: bool,
) -> Plan:
    """The whole run: one plan per selected entry, then what the list does not own (pruned, or reported).

    A prune is planned only when every model of the list (selected or not) has an answer that is not a
    failure: a list with a typo must never make a listed model look dropped and empty the volume.
    """
    models = [plan_model(e, answers[e.repo_id], held.get(e.dirname)) for e in entries]
    left = orphans(held, model_list)
    if not prune:
        return Plan(models=tuple(models), orphans=tuple(left))
    unresolved = [m.repo_id for m in model_list.models if not isinstance(answers.get(m.repo_id), HubAnswer)]
    if unresolved:
        refused = f"not pruning: {shorten(unresolved)} did not resolve; fix the model list and run again"
        return Plan(models=tuple(models), orphans=tuple(left), prune_refused=refused)
    pruned = [
        ModelPlan(
            name=o.name,
            repo_id=o.repo_id,
            action=Action.PRUNE,
            held_files=o.files,
            held_bytes=o.bytes,
            reason="no longer in the model list",
        )
        for o in left
        if o.repo_id is not None
    ]
    return Plan(models=tuple(models + pruned), orphans=tuple(o for o in left if o.repo_id is None))


def fitting(
    plans: Sequence[ModelPlan], free: int, target: str, *, links: bool = True
) -> tuple[list[ModelPlan], dict[str, str]]:
    """The plans whose writes fit in `free` bytes, and why each other one cannot start, by model name.

    What is fetched takes space; what is linked takes none, unless `links` is False (the target
    refuses hard links, so every link is a copy). Space is claimed in plan order before any starts,
    so that models running side by side never count the same free bytes twice.
    """
    fit: list[ModelPlan] = []
    refused: dict[str, str] = {}
    for plan in plans:
        needed = plan.fetch_bytes + (0 if links else plan.link_bytes)
        if needed > free:
            copies = (
                "" if links or not plan.link else f" (with {human_bytes(plan.link_bytes)} copied: no hard links here)"
            )
            refused[plan.name] = (
                f"not enough free space on {target}: needs {human_bytes(needed)}{copies}, {human_bytes(free)} free "
                "after the models before it; free some space or select fewer models"
            )
        else:
            free -= needed
            fit.append(plan)
    return fit, refused


def prune_refused_after(failed: Sequence[str]) -> str | None:
    """Why a planned prune does not run: it is the run's last step, taken only when no model of the run failed."""
    return "not pruning: a model of this run failed; fix it and run again" if failed else None
