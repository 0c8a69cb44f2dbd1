"""The plan function alone: every state a target can be in gives one action, decided from data only."""

from __future__ import annotations

from pathlib import Path

import pytest

from modal_jobs.catalog import Catalog, ModelEntry, VolumeSpec
from modal_jobs.model_dir import FileRecord, Manifest
from modal_jobs.plan import NOT_A_FILE, Action, HeldModel, HubAnswer, Kind, ModelPlan, Orphan, plan_model, plan_run

A = "a" * 40
B = "b" * 40
ENTRY = ModelEntry("Qwen/Model", size="1B")
CONFIG = FileRecord("config.json", 10, "git-sha1:" + "1" * 40)
WEIGHTS = FileRecord("model.safetensors", 1000, "sha256:" + "2" * 64)
NEW_WEIGHTS = FileRecord("model.safetensors", 1200, "sha256:" + "3" * 64)
AT_A = HubAnswer(A, (CONFIG, WEIGHTS))
AT_B = HubAnswer(B, (CONFIG, NEW_WEIGHTS))


def manifest(commit: str = A, files: tuple[FileRecord, ...] = (CONFIG, WEIGHTS), **globs: tuple[str, ...]) -> Manifest:
    return Manifest("Qwen/Model", "main", commit, files, include=globs.get("include"), exclude=globs.get("exclude"))


def held(files: dict[str, int], held_manifest: Manifest | None = None, kind: Kind = Kind.DIRECTORY) -> HeldModel:
    return HeldModel("Model", kind, held_manifest, files)


COMPLETE_FILES = {"config.json": 10, "model.safetensors": 1000}

CASES = [
    # (name, hub answer, what the target holds, action, files fetched, files checked, leftovers)
    ("absent", AT_A, None, Action.FETCH, ["config.json", "model.safetensors"], [], []),
    ("empty directory", AT_A, held({}), Action.FETCH, ["config.json", "model.safetensors"], [], []),
    (
        "incomplete: no manifest, one file of the right size",
        AT_A,
        held({"config.json": 10}),
        Action.REPAIR,
        ["model.safetensors"],
        ["config.json"],
        [],
    ),
    ("complete at the commit", AT_A, held(COMPLETE_FILES, manifest()), Action.UP_TO_DATE, [], [], []),
    (
        "complete at another commit",
        AT_B,
        held(COMPLETE_FILES, manifest()),
        Action.FETCH,
        ["model.safetensors"],
        ["config.json"],
        [],
    ),
    (
        "complete with other globs",
        AT_A,
        held(COMPLETE_FILES, manifest(include=("*.json",))),
        Action.FETCH,
        [],
        ["config.json", "model.safetensors"],
        [],
    ),
    (
        "complete, but a file went missing",
        AT_A,
        held({"config.json": 10}, manifest()),
        Action.REPAIR,
        ["model.safetensors"],
        [],
        [],
    ),
    (
        "complete, but a file was resized",
        AT_A,
        held({"config.json": 10, "model.safetensors": 999}, manifest()),
        Action.REPAIR,
        ["model.safetensors"],
        [],
        [],
    ),
    (
        "complete, but a file became a link",
        AT_A,
        held({"config.json": 10, "model.safetensors": NOT_A_FILE}, manifest()),
        Action.REPAIR,
        ["model.safetensors"],
        [],
        [],
    ),
    (
        "an older commit's leftover",
        AT_A,
        held({**COMPLETE_FILES, "old.bin": 5}),
        Action.REPAIR,
        [],
        ["config.json", "model.safetensors"],
        ["old.bin"],
    ),
]


@pytest.mark.parametrize(
    ("answer", "target", "action", "fetch", "check", "leftovers"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_each_state_gives_one_action(
    answer: HubAnswer,
    target: HeldModel | None,
    action: Action,
    fetch: list[str],
    check: list[str],
    leftovers: list[str],
):
    plan = plan_model(ENTRY, answer, target)
    assert plan.action is action
    assert plan.commit == answer.commit
    assert [f.path for f in plan.fetch] == fetch
    assert [f.path for f in plan.check] == check
    assert list(plan.leftovers) == leftovers
    assert plan.fetch_bytes == sum(f.size for f in plan.files if f.path in fetch)


def test_a_model_the_hub_refused_fails_with_the_reason():
    plan = plan_model(ENTRY, "access denied (HTTP 401): set HF_TOKEN", held(COMPLETE_FILES, manifest()))
    assert plan.action is Action.FAILED
    assert plan.reason == "access denied (HTTP 401): set HF_TOKEN"
    assert plan.fetch == ()


@pytest.mark.parametrize("kind", [Kind.SYMLINK, Kind.FILE])
def test_something_other_than_a_directory_is_never_written_through(kind: Kind):
    plan = plan_model(ENTRY, AT_A, held({"Model": 0}, kind=kind))
    assert plan.action is Action.FAILED
    assert f"is a {kind.value}, not a directory" in (plan.reason or "")


def catalog(*entries: ModelEntry) -> Catalog:
    return Catalog(Path("models.toml"), VolumeSpec(), entries)


DROPPED = HeldModel(
    "Dropped", Kind.DIRECTORY, Manifest("Qwen/Dropped", "main", A, (WEIGHTS,)), {"model.safetensors": 1000}
)
UNKNOWN = HeldModel("notes", Kind.DIRECTORY, None, {"readme.txt": 7})


def test_prune_takes_only_dropped_models_with_our_manifest():
    plan = plan_run([ENTRY], {ENTRY.repo_id: AT_A}, {"Dropped": DROPPED, "notes": UNKNOWN}, catalog(ENTRY), prune=True)
    pruned = [m for m in plan.models if m.action is Action.PRUNE]
    assert [(m.name, m.repo_id, m.held_files, m.held_bytes) for m in pruned] == [("Dropped", "Qwen/Dropped", 1, 1000)]
    assert plan.orphans == (Orphan("notes", 1, 7, None),)
    assert plan.prune_refused is None


def test_without_prune_both_kinds_are_reported_not_removed():
    plan = plan_run([ENTRY], {ENTRY.repo_id: AT_A}, {"Dropped": DROPPED, "notes": UNKNOWN}, catalog(ENTRY), prune=False)
    assert [m.action for m in plan.models] == [Action.FETCH]
    assert plan.orphans == (Orphan("Dropped", 1, 1000, "Qwen/Dropped"), Orphan("notes", 1, 7, None))


def test_a_model_that_failed_to_resolve_cancels_every_prune():
    other = ModelEntry("Qwen/Other")
    answers: dict[str, HubAnswer | str] = {ENTRY.repo_id: AT_A, other.repo_id: "repository not found"}
    plan = plan_run([ENTRY, other], answers, {"Dropped": DROPPED}, catalog(ENTRY, other), prune=True)
    assert [m.action for m in plan.models] == [Action.FETCH, Action.FAILED]
    assert plan.prune_refused and "not pruning" in plan.prune_refused
    assert plan.orphans == (Orphan("Dropped", 1, 1000, "Qwen/Dropped"),)


def test_a_directory_a_listed_model_owns_is_never_pruned_even_with_another_manifest():
    """Only a name no entry owns can be pruned: a listed model's directory is replanned, not removed."""
    foreign = HeldModel("Model", Kind.DIRECTORY, Manifest("Other/Model", "main", A, (WEIGHTS,)), COMPLETE_FILES)
    plan = plan_run([ENTRY], {ENTRY.repo_id: AT_A}, {"Model": foreign}, catalog(ENTRY), prune=True)
    assert [m.action for m in plan.models] == [Action.FETCH]


def test_a_plan_crosses_the_wire_unchanged():
    plan = plan_model(ModelEntry("Qwen/Model", include=("*.json",)), AT_B, held(COMPLETE_FILES, manifest()))
    assert ModelPlan.from_wire(plan.to_wire()) == plan
