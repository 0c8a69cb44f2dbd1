"""The plan alone: every state a target can be in gives one action and one `list` state, decided from data only.

One table drives both `plan_model` and `model_state`, so that `download` and `list`
cannot disagree about what a target holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from modal_jobs.decide.facts import NOT_A_FILE, HeldModel, HubAnswer, Kind
from modal_jobs.decide.model_plan import Action, ModelPlan, plan_model
from modal_jobs.decide.run_plan import Orphan, fitting, plan_run, prune_refused_after
from modal_jobs.decide.states import model_state
from modal_jobs.model_dir import DAMAGED_NAME, LEGACY, MANIFEST_NAME, POINTER_NAME, FileRecord, Manifest, Pointer
from modal_jobs.model_list import ModelEntry, ModelList, VolumeSpec
from modal_jobs.summary import Status

A = "a" * 40
B = "b" * 40
C = "c" * 40
ENTRY = ModelEntry("Qwen/Model", size="1B")
CONFIG = FileRecord("config.json", 10, "git-sha1:" + "1" * 40)
WEIGHTS = FileRecord("model.safetensors", 1000, "sha256:" + "2" * 64)
NEW_WEIGHTS = FileRecord("model.safetensors", 1200, "sha256:" + "3" * 64)
AT_A = HubAnswer(A, (CONFIG, WEIGHTS))
AT_B = HubAnswer(B, (CONFIG, NEW_WEIGHTS))
COMPLETE_FILES = {"config.json": 10, "model.safetensors": 1000}


def manifest(
    commit: str = A,
    files: tuple[FileRecord, ...] = (CONFIG, WEIGHTS),
    repo_id: str = "Qwen/Model",
    **globs: tuple[str, ...],
) -> Manifest:
    return Manifest(repo_id, "main", commit, files, include=globs.get("include"), exclude=globs.get("exclude"))


Revision = tuple[Mapping[str, int], Manifest | None]


def held(
    revisions: Mapping[str, Revision] | None = None,
    *,
    current: str | None = None,
    previous: str | None = None,
    legacy: Revision | None = None,
    damaged: Mapping[str, list[str]] | None = None,
    name: str = "Model",
    repo_id: str = "Qwen/Model",
) -> HeldModel:
    """A model directory as a store reports it: every file by size, and the cache's small files' contents."""
    files: dict[str, int] = {}
    texts: dict[str, bytes] = {}

    def add(prefix: str, revision: Revision) -> None:
        content, written = revision
        files.update({prefix + path: size for path, size in content.items()})
        if written is not None:
            texts[prefix + MANIFEST_NAME] = written.to_json().encode()
            files[prefix + MANIFEST_NAME] = len(texts[prefix + MANIFEST_NAME])

    for revision_name, revision in (revisions or {}).items():
        add(f".revisions/{revision_name}/", revision)
    if legacy is not None:
        add("", legacy)
    for revision_name, paths in (damaged or {}).items():
        prefix = "" if revision_name == LEGACY else f".revisions/{revision_name}/"
        texts[prefix + DAMAGED_NAME] = ('{"damaged": ["' + '", "'.join(paths) + '"]}').encode()
        files[prefix + DAMAGED_NAME] = len(texts[prefix + DAMAGED_NAME])
    if current is not None:
        commit = (revisions or {})[current][1]
        texts[POINTER_NAME] = Pointer(repo_id, current, commit.commit if commit else A, previous).to_json().encode()
        files[POINTER_NAME] = len(texts[POINTER_NAME])
    return HeldModel(name, Kind.DIRECTORY, files, texts)


AT_A_COMPLETE = held({A: (COMPLETE_FILES, manifest())}, current=A)

CASES = [
    # (name, answer, target holds, action, fetched, checked, linked, leftovers, what `list` says)
    ("absent", AT_A, None, Action.FETCH, ["config.json", "model.safetensors"], [], [], [], Status.MISSING),
    (
        "a file at its name",
        AT_A,
        HeldModel("Model", Kind.FILE, {"Model": 7}),
        Action.FAILED,
        [],
        [],
        [],
        [],
        Status.FAILED,
    ),
    ("a link at its name", AT_A, HeldModel("Model", Kind.SYMLINK, {}), Action.FAILED, [], [], [], [], Status.FAILED),
    (
        "another repo's revision",
        AT_A,
        held({A: (COMPLETE_FILES, manifest(repo_id="Qwen/Other"))}, current=A, repo_id="Qwen/Other"),
        Action.FETCH,
        ["config.json", "model.safetensors"],
        [],
        [],
        [],
        Status.INCOMPLETE,
    ),
    (
        "empty directory",
        AT_A,
        held(),
        Action.FETCH,
        ["config.json", "model.safetensors"],
        [],
        [],
        [],
        Status.INCOMPLETE,
    ),
    (
        "an unfinished revision of the commit is resumed",
        AT_A,
        held({A: ({"config.json": 10, "old.bin": 5}, None)}),
        Action.FETCH,
        ["model.safetensors"],
        ["config.json"],
        [],
        ["old.bin"],
        Status.INCOMPLETE,
    ),
    ("current at the commit", AT_A, AT_A_COMPLETE, Action.UP_TO_DATE, [], [], [], [], Status.COMPLETE),
    (
        "current at another commit: unchanged files are linked",
        AT_B,
        AT_A_COMPLETE,
        Action.FETCH,
        ["model.safetensors"],
        [],
        ["config.json"],
        [],
        Status.STALE,
    ),
    (
        "current with other globs",
        AT_A,
        held({A: (COMPLETE_FILES, manifest(include=("*.json",)))}, current=A),
        Action.FETCH,
        [],
        [],
        ["config.json", "model.safetensors"],
        [],
        Status.STALE,
    ),
    (
        "current, but a file went missing",
        AT_A,
        held({A: ({"config.json": 10}, manifest())}, current=A),
        Action.REPAIR,
        ["model.safetensors"],
        [],
        ["config.json"],
        [],
        Status.INCOMPLETE,
    ),
    (
        "current, but a file was resized",
        AT_A,
        held({A: ({"config.json": 10, "model.safetensors": 999}, manifest())}, current=A),
        Action.REPAIR,
        ["model.safetensors"],
        [],
        ["config.json"],
        [],
        Status.INCOMPLETE,
    ),
    (
        "current, but a file became a link",
        AT_A,
        held({A: ({"config.json": 10, "model.safetensors": NOT_A_FILE}, manifest())}, current=A),
        Action.REPAIR,
        ["model.safetensors"],
        [],
        ["config.json"],
        [],
        Status.INCOMPLETE,
    ),
    (
        "current, but verify found a file damaged",
        AT_A,
        held({A: (COMPLETE_FILES, manifest())}, current=A, damaged={A: ["model.safetensors"]}),
        Action.REPAIR,
        ["model.safetensors"],
        [],
        ["config.json"],
        [],
        Status.INCOMPLETE,
    ),
    (
        "the layout before revisions, at the commit: adopted without a download",
        AT_A,
        held(legacy=(COMPLETE_FILES, manifest())),
        Action.FETCH,
        [],
        [],
        ["config.json", "model.safetensors"],
        [],
        Status.COMPLETE,
    ),
    (
        "the layout before revisions, at another commit",
        AT_B,
        held(legacy=(COMPLETE_FILES, manifest())),
        Action.FETCH,
        ["model.safetensors"],
        [],
        ["config.json"],
        [],
        Status.STALE,
    ),
    (
        "the layout before revisions, unfinished: linked, then hashed",
        AT_A,
        held(legacy=(COMPLETE_FILES, None)),
        Action.FETCH,
        [],
        ["config.json", "model.safetensors"],
        ["config.json", "model.safetensors"],
        [],
        Status.INCOMPLETE,
    ),
]


@pytest.mark.parametrize(
    ("answer", "target", "action", "fetch", "check", "link", "leftovers", "state"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_each_state_gives_one_action_and_one_list_state(
    answer: HubAnswer,
    target: HeldModel | None,
    action: Action,
    fetch: list[str],
    check: list[str],
    link: list[str],
    leftovers: list[str],
    state: Status,
):
    plan = plan_model(ENTRY, answer, target)
    assert plan.action is action
    assert plan.commit == answer.commit
    assert [f.path for f in plan.fetch] == fetch
    assert [f.path for f in plan.check] == check
    assert [f.path for f, _ in plan.link] == link
    assert list(plan.leftovers) == leftovers
    assert plan.fetch_bytes == sum(f.size for f in plan.files if f.path in fetch)
    assert model_state(target, ENTRY, answer.commit) is state
    if action in (Action.FETCH, Action.REPAIR):
        current = target.pointer.revision if target is not None and target.pointer else None
        assert plan.revision != current, "the current revision is never written to"


def test_an_update_keeps_the_current_revision_as_previous_and_retires_the_rest():
    """A → B → C: once C is current, B stays for running readers and a rollback; A goes."""
    target = held({A: (COMPLETE_FILES, manifest()), B: (COMPLETE_FILES, manifest(B))}, current=B, previous=A)
    plan = plan_model(ENTRY, HubAnswer(C, (CONFIG, WEIGHTS)), target)
    assert (plan.action, plan.revision, plan.previous, plan.retire) == (Action.FETCH, C, B, (A,))
    assert [source for _, source in plan.link] == [f".revisions/{B}/config.json", f".revisions/{B}/model.safetensors"]


def test_a_repair_is_written_beside_the_damaged_revision_and_keeps_the_previous_one():
    target = held(
        {A: (COMPLETE_FILES, manifest()), B: (COMPLETE_FILES, manifest(B))},
        current=B,
        previous=A,
        damaged={B: ["model.safetensors"]},
    )
    plan = plan_model(ENTRY, HubAnswer(B, (CONFIG, WEIGHTS)), target)
    assert (plan.action, plan.revision, plan.previous, plan.retire) == (Action.REPAIR, f"{B}.1", B, (A,))
    # Fetched although the previous revision has the same bytes: a hard link there may be the same damaged inode.
    assert [f.path for f in plan.fetch] == ["model.safetensors"]
    assert [(f.path, source) for f, source in plan.link] == [("config.json", f".revisions/{B}/config.json")]


def test_adopting_the_old_layout_keeps_it_for_readers_of_either_version():
    plan = plan_model(ENTRY, AT_A, held(legacy=(COMPLETE_FILES, manifest())))
    assert (plan.revision, plan.previous, plan.retire) == (A, LEGACY, ())
    assert [source for _, source in plan.link] == ["config.json", "model.safetensors"]
    assert plan.reason and "adopting" in plan.reason


def test_a_model_the_hub_refused_fails_with_the_reason():
    plan = plan_model(ENTRY, "access denied (HTTP 401): set HF_TOKEN", AT_A_COMPLETE)
    assert plan.action is Action.FAILED
    assert plan.reason == "access denied (HTTP 401): set HF_TOKEN"
    assert plan.fetch == ()


@pytest.mark.parametrize("kind", [Kind.SYMLINK, Kind.FILE])
def test_something_other_than_a_directory_is_never_written_through(kind: Kind):
    plan = plan_model(ENTRY, AT_A, HeldModel("Model", kind, {"Model": 0}))
    assert plan.action is Action.FAILED
    assert f"is a {kind.value}, not a directory" in (plan.reason or "")


def model_list(*entries: ModelEntry) -> ModelList:
    return ModelList(Path("models.toml"), VolumeSpec(), entries)


DROPPED = held(
    {A: ({"model.safetensors": 1000}, manifest(files=(WEIGHTS,), repo_id="Qwen/Dropped"))},
    current=A,
    name="Dropped",
    repo_id="Qwen/Dropped",
)
UNKNOWN = HeldModel("notes", Kind.DIRECTORY, {"readme.txt": 7})


def test_prune_takes_only_dropped_models_with_our_manifest():
    plan = plan_run(
        [ENTRY], {ENTRY.repo_id: AT_A}, {"Dropped": DROPPED, "notes": UNKNOWN}, model_list(ENTRY), prune=True
    )
    pruned = [m for m in plan.models if m.action is Action.PRUNE]
    assert [(m.name, m.repo_id, m.held_files, m.held_bytes) for m in pruned] == [("Dropped", "Qwen/Dropped", 1, 1000)]
    assert plan.orphans == (Orphan("notes", 1, 7, None),)
    assert plan.prune_refused is None


def test_without_prune_both_kinds_are_reported_not_removed():
    plan = plan_run(
        [ENTRY], {ENTRY.repo_id: AT_A}, {"Dropped": DROPPED, "notes": UNKNOWN}, model_list(ENTRY), prune=False
    )
    assert [m.action for m in plan.models] == [Action.FETCH]
    assert plan.orphans == (Orphan("Dropped", 1, 1000, "Qwen/Dropped"), Orphan("notes", 1, 7, None))


def test_a_model_that_failed_to_resolve_cancels_every_prune():
    other = ModelEntry("Qwen/Other")
    answers: dict[str, HubAnswer | str] = {ENTRY.repo_id: AT_A, other.repo_id: "repository not found"}
    plan = plan_run([ENTRY, other], answers, {"Dropped": DROPPED}, model_list(ENTRY, other), prune=True)
    assert [m.action for m in plan.models] == [Action.FETCH, Action.FAILED]
    assert plan.prune_refused and "not pruning" in plan.prune_refused
    assert plan.orphans == (Orphan("Dropped", 1, 1000, "Qwen/Dropped"),)


def test_a_directory_a_listed_model_owns_is_never_pruned_even_with_another_manifest():
    """Only a name no entry owns can be pruned: a listed model's directory is replanned, not removed."""
    foreign = held({A: (COMPLETE_FILES, manifest(repo_id="Other/Model"))}, current=A, repo_id="Other/Model")
    plan = plan_run([ENTRY], {ENTRY.repo_id: AT_A}, {"Model": foreign}, model_list(ENTRY), prune=True)
    assert [m.action for m in plan.models] == [Action.FETCH]
    assert plan.models[0].link == (), "another repo's files vouch for nothing"


def test_a_plan_crosses_the_wire_unchanged():
    target = held({A: (COMPLETE_FILES, manifest()), B: (COMPLETE_FILES, manifest(B))}, current=B, previous=A)
    plan = plan_model(ModelEntry("Qwen/Model", include=("*.json",)), AT_A, target)
    assert plan.link and plan.retire
    assert ModelPlan.from_wire(plan.to_wire()) == plan


def test_space_is_claimed_in_plan_order_and_never_counted_twice():
    first = plan_model(ENTRY, AT_A, None)  # fetches 1010 bytes
    second = plan_model(ModelEntry("Qwen/Second", size="1B"), AT_A, None)
    third = plan_model(ModelEntry("Qwen/Third", size="1B"), HubAnswer(A, (CONFIG,)), None)  # 10 bytes
    fit, refused = fitting([first, second, third], 1500, "/vol/models")
    assert [p.name for p in fit] == ["Model", "Third"]
    assert refused == {
        "Second": "not enough free space on /vol/models: needs 1010 B, 490 B free after the models before it; "
        "free some space or select fewer models"
    }


def test_a_prune_waits_for_a_run_without_failures():
    assert prune_refused_after([]) is None
    assert prune_refused_after(["Qwen/Model"]) == "not pruning: a model of this run failed; fix it and run again"
