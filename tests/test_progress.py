"""Where a plan stands when it is carried out: decided again from the target's facts right before each write.

A container may run twice (Modal's retries) and another run may have changed the model since the
plan was made; `decide.progress` says what is left to do, or why the plan no longer applies.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from modal_jobs.decide.facts import HeldModel
from modal_jobs.decide.model_plan import Action, ModelPlan, plan_model
from modal_jobs.decide.progress import Progress, progress
from modal_jobs.decide.run_plan import fitting
from tests.test_plan import AT_A, AT_B, COMPLETE_FILES, ENTRY, NEW_WEIGHTS, B, held, manifest

B_FILES = {"config.json": 10, "model.safetensors": 1200}
B_MANIFEST = manifest(B, (AT_B.files[0], NEW_WEIGHTS))


A_CURRENT = held(revisions={"a": (COMPLETE_FILES, manifest())}, current="a")
UPDATE = plan_model(ENTRY, AT_B, A_CURRENT)


@pytest.mark.parametrize(
    ("why", "now", "expected"),
    [
        ("nothing of it written yet", A_CURRENT, Progress.START),
        (
            "half written by an earlier attempt",
            held(revisions={"a": (COMPLETE_FILES, manifest()), B: ({"config.json": 10}, None)}, current="a"),
            Progress.START,
        ),
        (
            "complete, its pointer not moved (an attempt whose commit raised)",
            held(revisions={"a": (COMPLETE_FILES, manifest()), B: (B_FILES, B_MANIFEST)}, current="a"),
            Progress.STAGED,
        ),
        (
            "current already (the caller published it, then the container ran again)",
            held(revisions={"a": (COMPLETE_FILES, manifest()), B: (B_FILES, B_MANIFEST)}, current=B, previous="a"),
            Progress.CURRENT,
        ),
    ],
)
def test_a_plan_resumes_from_what_the_target_holds(why: str, now: HeldModel, expected: Progress):
    assert UPDATE.action is Action.FETCH and UPDATE.revision == B and UPDATE.replaces == "a"
    assert progress(UPDATE, now) is expected, why


def test_a_plan_whose_model_another_run_changed_is_refused():
    moved = held(revisions={"a": (COMPLETE_FILES, manifest()), "c": (COMPLETE_FILES, manifest())}, current="c")
    why = progress(UPDATE, moved)
    assert not isinstance(why, Progress)
    assert why.startswith("another run changed Model since this run planned (its pointer names c, not a)")
    assert why.endswith("run download again to plan from what the target holds now")


def test_a_revision_readers_may_load_is_never_rewritten():
    """A plan that would write into the pointer's revision, or the one it keeps, is refused."""
    damaged = held(revisions={"a": ({"config.json": 10}, manifest())}, current="a")
    into_current = replace(plan_model(ENTRY, AT_A, damaged), revision="a")
    why = progress(into_current, damaged)
    assert why == "revision a of Model is in use by readers and is never rewritten; " + (
        "run download again to plan from what the target holds now"
    )


def test_going_back_to_the_kept_revision_plans_only_the_pointer():
    at_b = held(revisions={"a": (COMPLETE_FILES, manifest()), B: (B_FILES, B_MANIFEST)}, current=B, previous="a")
    plan = plan_model(ENTRY, AT_A, at_b)
    assert (plan.action, plan.revision, plan.previous, plan.replaces) == (Action.FETCH, "a", B, B)
    assert (plan.fetch, plan.check, plan.link, plan.retire) == ((), (), (), ())
    assert plan.reason == "revision a is complete on the target already: only the pointer moves"
    assert progress(plan, at_b) is Progress.STAGED


def test_a_damaged_kept_revision_is_not_gone_back_to():
    at_b = held(
        revisions={"a": (COMPLETE_FILES, manifest()), B: (B_FILES, B_MANIFEST)},
        current=B,
        previous="a",
        damaged={"a": ["model.safetensors"]},
    )
    plan = plan_model(ENTRY, AT_A, at_b)
    assert plan.revision != "a" and plan.fetch == (AT_A.files[1],)


def test_linked_bytes_count_as_space_where_links_are_refused():
    plan = ModelPlan("Model", "Qwen/Model", Action.FETCH, fetch=(AT_B.files[1],), link=((AT_B.files[0], "x"),))
    assert fitting([plan], 1205, "/vol/models", links=True)[0] == [plan]
    fit, refused = fitting([plan], 1205, "/vol/models", links=False)
    assert fit == []
    assert refused == {
        "Model": "not enough free space on /vol/models: needs 1.2 KiB (with 10 B copied: no hard links here), "
        "1.2 KiB free after the models before it; free some space or select fewer models"
    }
