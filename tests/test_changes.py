"""The `plan` diff alone: what merging a changed list does, decided from gathered answers, asking nothing."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from modal_jobs.decide.changes import BaseFacts, dropped_bases, merge_changes, revised_bases
from modal_jobs.decide.facts import HubAnswer
from modal_jobs.errors import ModelFailed
from modal_jobs.hub_errors import AccessDenied
from modal_jobs.model_dir import FileRecord
from modal_jobs.model_list import ModelEntry, ModelList, VolumeSpec
from modal_jobs.summary import Status

A = "a" * 40
B = "b" * 40
CONFIG = FileRecord("config.json", 10, "git-sha1:" + "1" * 40)
WEIGHTS = FileRecord("model.safetensors", 1000, "sha256:" + "2" * 64)
KEPT = ModelEntry("Qwen/Kept", size="1B")
GATED = ModelEntry("Qwen/Gated", size="1B")
GONE = ModelEntry("Qwen/Gone", size="2B")


def model_list(*entries: ModelEntry) -> ModelList:
    return ModelList(Path("models.toml"), VolumeSpec(), entries)


def base_facts(
    *entries: ModelEntry,
    locked: Mapping[str, HubAnswer] | None = None,
    leaving: Mapping[str, HubAnswer | ModelFailed] | None = None,
) -> BaseFacts:
    return BaseFacts({e.repo_id: e for e in entries}, locked or {}, {}, leaving or {})


def test_a_refused_repo_is_not_checked_without_a_token_and_fails_with_one():
    new = model_list(GATED)
    answers = {GATED.repo_id: AccessDenied("access denied (HTTP 401): set HF_TOKEN")}

    (without,) = merge_changes([GATED], new, answers, base_facts(GATED), None, has_token=False)
    (with_token,) = merge_changes([GATED], new, answers, base_facts(GATED), None, has_token=True)

    assert (without.status, without.note, without.error) == (Status.NOT_CHECKED, "not checked: needs HF_TOKEN", None)
    assert (with_token.status, with_token.error) == (Status.FAILED, "access denied (HTTP 401): set HF_TOKEN")


def test_only_what_the_base_lock_does_not_cover_is_asked_of_the_hub():
    moved = ModelEntry("Qwen/Kept", size="1B", revision="v2")
    locked = {GONE.repo_id: HubAnswer(A, (CONFIG,))}

    assert revised_bases([moved], {KEPT.repo_id: KEPT}, {}) == [KEPT]
    assert revised_bases([moved], {KEPT.repo_id: KEPT}, {KEPT.repo_id: HubAnswer(A, (CONFIG,))}) == []
    assert revised_bases([KEPT], {KEPT.repo_id: KEPT}, locked) == []
    assert dropped_bases(model_list(KEPT), {KEPT.repo_id: KEPT, GONE.repo_id: GONE}) == [GONE]


def test_a_commit_the_lock_moved_and_a_dropped_model_say_what_changes_and_what_leaves():
    answers = {KEPT.repo_id: HubAnswer(B, (CONFIG, WEIGHTS))}
    facts = base_facts(
        KEPT,
        GONE,
        locked={KEPT.repo_id: HubAnswer(A, (CONFIG,))},
        leaving={GONE.repo_id: HubAnswer(A, (CONFIG, WEIGHTS))},
    )

    kept, gone = merge_changes([KEPT], model_list(KEPT), answers, facts, None, has_token=False)

    assert (kept.status, kept.commit, kept.note) == (
        Status.CHANGED,
        B,
        f"commit {A[:12]} → {B[:12]}, 1 file(s) changed",
    )
    assert kept.fetch_bytes == WEIGHTS.size  # the base revision's config.json is linked, not transferred
    assert (gone.status, gone.files, gone.bytes) == (Status.DROPPED, 2, 1010)
    assert gone.note == "download --prune removes it from the volume"
