"""Every prefix of a run's writes on the volume stand-in, as a background commit could publish it, read by a reader.

Modal commits a mounted volume in the background every few seconds, and a retried or a second
writer may start at any moment: whatever a run has done so far may be what a new container sees.
Here every change to a name on the filesystem (`os.link`, `os.replace`, `os.rename`, `os.unlink`,
`os.rmdir`, `os.mkdir`, a file created by `os.open`) made by the container (run in-process) and by
the caller (through the stand-in client API) is recorded, and after each one, with the other
threads held, `modal_jobs.reader.model_path` reads the volume as it is. Like SQLite's crash tests
and the ALICE study, a guarantee "any prefix is safe" is checked by enumerating the prefixes: the
reader must be handed, byte for byte, the Hub's files of one commit (the old one, then the new
one), never an error and never a mix. Files being written between two changes of names are inside
a revision no pointer names.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest

import modal_jobs.modal_app as jobs
from local_hub.server import LocalHub
from modal_jobs.disk import walk_files
from modal_jobs.download import make_plan
from modal_jobs.modal_backend import ModalBackend
from modal_jobs.model_dir import DAMAGED_NAME, LEGACY, POINTER_NAME, RESERVED_NAMES, REVISIONS_DIR
from modal_jobs.model_list import ModelList, VolumeSpec, parse_model_list
from modal_jobs.operations import run
from modal_jobs.reader import ModelNotReady, model_path
from modal_jobs.request import Request
from modal_jobs.store import LocalStore
from modal_jobs.summary import Operation, Summary, human_bytes
from modal_jobs.volume import VolumeStore
from tests.conftest import MODEL_LIST, SMALL, TOKENIZER, Repos, assert_complete
from tests.modal_dict_stand_in import DictServer
from tests.modal_stand_ins import MOUNT, DirVolume, VolumeRecorder
from tests.test_revisions import new_revision, write_old_layout
from tests.test_volume_revisions import SMALL_DIR, move_to, on_the_volume
from tests.twin_targets import Twins, stand_in

NAME_CHANGES = ("link", "replace", "rename", "unlink", "remove", "rmdir", "mkdir", "symlink")
Labels = Mapping[str, Mapping[str, bytes]]


@dataclass
class Prefixes:
    """What a reader got after each recorded change: (the change, {repo: the label of what it got})."""

    volume: Path
    expected: Mapping[str, Labels]
    lock: threading.RLock = field(default_factory=threading.RLock)
    seen: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def check(self, change: str) -> None:
        got = {repo: reader_gets(self.volume, repo, labels) for repo, labels in self.expected.items()}
        self.seen.append((change, got))

    def of(self, repo_id: str) -> list[str]:
        return [got[repo_id] for _, got in self.seen]

    def changes(self, below: Path) -> list[str]:
        """The recorded changes of names below `below` (each as "op path")."""
        return [change for change, _ in self.seen if change.split(" ", 1)[-1].startswith(f"{below}/")]


@contextmanager
def every_prefix(
    monkeypatch: pytest.MonkeyPatch, volume: Path, expected: Mapping[str, Labels], link_error: int | None = None
) -> Iterator[Prefixes]:
    """While the block runs, each change of a name is followed, under one lock, by a reader's look at the volume."""
    prefixes = Prefixes(volume, expected)

    def recorded(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def change(*args: Any, **kwargs: Any) -> Any:
            with prefixes.lock:
                if name == "link" and link_error is not None:
                    raise OSError(link_error, os.strerror(link_error), str(args[0]))
                result = real(*args, **kwargs)
                where = args[-1] if name in ("link", "replace", "rename", "symlink") else args[0]
                prefixes.check(f"{name} {os.fsdecode(where)}")
                return result

        return change

    real_open = os.open

    def opened(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if not flags & os.O_CREAT:
            return real_open(path, flags, *args, **kwargs)
        with prefixes.lock:
            fd = real_open(path, flags, *args, **kwargs)
            prefixes.check(f"create {os.fsdecode(path)}")
            return fd

    prefixes.check("start")
    with monkeypatch.context() as patch:
        for name in NAME_CHANGES:
            patch.setattr(os, name, recorded(name, getattr(os, name)))
        patch.setattr(os, "open", opened)
        yield prefixes
    prefixes.check("end")


def reader_gets(volume: Path, repo_id: str, expected: Labels) -> str:
    """The label of the file set the reader's directory holds (the cache's own names left out), or what it got."""
    try:
        found = model_path(volume, repo_id)
        files = {
            rel: (found / rel).read_bytes()
            for rel, _ in walk_files(found)
            if rel.split("/", 1)[0] not in RESERVED_NAMES
        }
    except (ModelNotReady, OSError) as exc:
        return f"error: {exc}"
    label = next((label for label, content in expected.items() if files == content), None)
    return label or f"mixed: {sorted(files)} at {found.relative_to(volume)}"


def old_then_new(outcomes: list[str], old: str, new: str) -> bool:
    """The reader got `old` up to one change, and `new` from then on (both at least once)."""
    if old not in outcomes or new not in outcomes:
        return False
    switch = outcomes.index(new)
    return outcomes == [old] * switch + [new] * (len(outcomes) - switch) and switch > 0


def pointer_of(twins: Twins, name: str = SMALL_DIR) -> dict[str, Any]:
    return cast(dict[str, Any], json.loads((twins.volume_root / name / POINTER_NAME).read_bytes()))


def small(summary: Summary) -> str:
    return next(row.status for row in summary.models if row.repo_id == SMALL)


def download(twins: Twins, model_list: ModelList | None = None, **options: Any) -> Summary:
    request = Request(Operation.DOWNLOAD, **{"repo_ids": (SMALL,), **options})
    if model_list is None:
        return on_the_volume(twins, request)
    return run(request, model_list, twins.backends()[1], twins.hub)


@pytest.fixture
def twins(hub: LocalHub, repos: Repos, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Twins:
    return stand_in(hub, tmp_path, monkeypatch, parse_model_list(MODEL_LIST, tmp_path / "models.toml"))


@pytest.mark.parametrize("link_error", [None, errno.EXDEV], ids=["links", "links-refused"])
def test_every_prefix_of_an_update_shows_a_whole_revision(
    twins: Twins, hub: LocalHub, repos: Repos, monkeypatch: pytest.MonkeyPatch, link_error: int | None
):
    a_files = repos.files[SMALL]
    assert small(download(twins)) == "downloaded"
    b_files = new_revision(a_files)
    move_to(twins, hub, b_files)
    expected = {SMALL: {"A": a_files, "B": b_files}}
    with every_prefix(monkeypatch, twins.volume_root, expected, link_error) as prefixes:
        assert small(download(twins)) == "downloaded"
    assert old_then_new(prefixes.of(SMALL), "A", "B"), prefixes.seen
    assert len(prefixes.seen) > 10, "the update's changes were recorded"
    assert_complete(twins.volume_root, SMALL, b_files)
    revision = twins.volume_root / SMALL_DIR / REVISIONS_DIR / pointer_of(twins)["revision"]
    # Unchanged files are hard links to A's, or copies where the volume refuses links.
    assert ((revision / "config.json").stat().st_nlink == 1) == (link_error is not None)


def test_every_prefix_of_a_repair_shows_the_damaged_revision_then_the_repaired_one(
    twins: Twins, repos: Repos, monkeypatch: pytest.MonkeyPatch
):
    download(twins)
    current = twins.volume_root / SMALL_DIR / REVISIONS_DIR / pointer_of(twins)["revision"]
    content = bytearray((current / "model.safetensors").read_bytes())
    content[100] ^= 0xFF
    (current / "model.safetensors").write_bytes(bytes(content))
    (current / DAMAGED_NAME).write_text('{"damaged": ["model.safetensors"]}\n')
    expected = {
        SMALL: {"damaged": {**repos.files[SMALL], "model.safetensors": bytes(content)}, "A": repos.files[SMALL]}
    }
    with every_prefix(monkeypatch, twins.volume_root, expected) as prefixes:
        assert small(download(twins)) == "repaired"
    assert old_then_new(prefixes.of(SMALL), "damaged", "A"), prefixes.seen
    assert_complete(twins.volume_root, SMALL, repos.files[SMALL])


def test_a_rollback_to_the_kept_revision_writes_the_pointer_and_nothing_else(
    twins: Twins, hub: LocalHub, repos: Repos, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    download(twins)
    lock_at_a = (tmp_path / "models.lock").read_text()
    a_revision = pointer_of(twins)["revision"]
    b_files = new_revision(repos.files[SMALL])
    move_to(twins, hub, b_files)
    download(twins)
    b_revision = pointer_of(twins)["revision"]
    assert pointer_of(twins)["previous"] == a_revision
    (tmp_path / "models.lock").write_text(lock_at_a)  # `git revert` of the lock's update

    expected = {SMALL: {"A": repos.files[SMALL], "B": b_files}}
    hub.reset_counts()
    with every_prefix(monkeypatch, twins.volume_root, expected) as prefixes:
        summary = download(twins)
    assert small(summary) == "downloaded"
    assert summary.models[0].fetch_bytes == 0
    assert "only the pointer moves" in (summary.models[0].note or "")
    assert hub.count(kind="resolve", method="GET") == 0
    assert old_then_new(prefixes.of(SMALL), "B", "A"), prefixes.seen
    model = twins.volume_root / SMALL_DIR
    touched = {change.split(" ", 1)[1] for change in prefixes.changes(model)}
    assert {Path(p).name for p in touched} <= {POINTER_NAME, f".{POINTER_NAME}.upload"}, touched
    assert (pointer_of(twins)["revision"], pointer_of(twins)["previous"]) == (a_revision, b_revision)


def test_every_prefix_of_adopting_the_old_layout_shows_the_same_model(
    twins: Twins, repos: Repos, monkeypatch: pytest.MonkeyPatch
):
    write_old_layout(twins.volume_root, SMALL, repos.files[SMALL], repos.commits[SMALL])
    expected = {SMALL: {"A": repos.files[SMALL]}}
    with every_prefix(monkeypatch, twins.volume_root, expected) as prefixes:
        assert small(download(twins)) == "downloaded"
    assert set(prefixes.of(SMALL)) == {"A"}, prefixes.seen
    assert pointer_of(twins)["previous"] == LEGACY
    assert len(prefixes.changes(twins.volume_root / SMALL_DIR)) > 5


def test_every_prefix_of_a_prune_shows_the_pruned_model_whole_or_absent_and_the_others_whole(
    twins: Twins, repos: Repos, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    download(twins, repo_ids=(SMALL, TOKENIZER))
    without_tokenizer = MODEL_LIST.split('[[model]]\nrepo_id = "Qwen/Qwen3-TTS-Tokenizer')[0]
    dropped = parse_model_list(without_tokenizer, tmp_path / "models.toml")
    (tmp_path / "models.toml").write_text(without_tokenizer)
    expected = {SMALL: {"A": repos.files[SMALL]}, TOKENIZER: {"T": repos.files[TOKENIZER]}}
    with every_prefix(monkeypatch, twins.volume_root, expected) as prefixes:
        summary = download(twins, dropped, prune=True, repo_ids=())
    assert {row.repo_id: row.status for row in summary.models}[TOKENIZER] == "pruned"
    assert set(prefixes.of(SMALL)) == {"A"}
    tokenizer = prefixes.of(TOKENIZER)
    gone = next(i for i, got in enumerate(tokenizer) if got != "T")
    assert gone > 0 and all(got.startswith("error: ") for got in tokenizer[gone:]), prefixes.seen


def test_a_retried_container_after_its_revision_was_made_current_writes_nothing(
    twins: Twins, hub: LocalHub, repos: Repos, monkeypatch: pytest.MonkeyPatch
):
    """Modal runs `apply_one` again when an attempt fails after its work was done (its commit raised, the container
    was preempted): the retry finds the revision current and changes nothing a reader sees."""
    download(twins)
    b_files = new_revision(repos.files[SMALL])
    move_to(twins, hub, b_files)
    model_list = twins.model_list
    store = LocalStore(twins.volume_root)
    plan = make_plan([model_list.models[1]], model_list, store, twins.hub, threading.Event(), prune=False).models[0]
    assert small(download(twins)) == "downloaded"

    expected = {SMALL: {"B": b_files}}
    recorder = VolumeRecorder(twins.volume_root)
    with every_prefix(monkeypatch, twins.volume_root, expected) as prefixes:
        row = jobs.apply_one.local(plan.to_wire(), str(twins.volume_root), cast(Any, recorder), None)
    assert row["status"] == "downloaded", row
    assert recorder.events == ["reload", "commit"]
    assert set(prefixes.of(SMALL)) == {"B"}
    assert prefixes.changes(twins.volume_root / SMALL_DIR) == []
    assert_complete(twins.volume_root, SMALL, b_files)


def test_a_second_writer_planned_before_the_first_finished_writes_nothing_over_its_revision(
    twins: Twins, hub: LocalHub, repos: Repos, monkeypatch: pytest.MonkeyPatch
):
    """Two runs plan the same update while the lease does not keep them apart (someone ran `unlock --yes` on the
    one working); the other makes it current first. The later container, started after, finds it done (its plan
    named the same revision) and no reader notices the second writer."""
    download(twins)
    b_files = new_revision(repos.files[SMALL])
    move_to(twins, hub, b_files)
    started: list[str] = []

    def other_run_finishes_meanwhile() -> None:
        started.append("other")
        twins.containers.before_start = None
        store = VolumeStore(DirVolume(twins.volume_root), VolumeSpec(mount=MOUNT))
        other = ModalBackend(store, twins.containers, twins.lease("laptop", dict_server=DictServer()))
        summary = run(Request(Operation.DOWNLOAD, repo_ids=(SMALL,)), twins.model_list, other, twins.hub)
        assert small(summary) == "downloaded"

    twins.containers.before_start = other_run_finishes_meanwhile
    expected = {SMALL: {"A": repos.files[SMALL], "B": b_files}}
    with every_prefix(monkeypatch, twins.volume_root, expected) as prefixes:
        summary = run(Request(Operation.DOWNLOAD, repo_ids=(SMALL,)), twins.model_list, twins.backends()[1], twins.hub)
    assert started == ["other"]
    assert small(summary) == "downloaded"
    assert old_then_new(prefixes.of(SMALL), "A", "B"), prefixes.seen
    assert_complete(twins.volume_root, SMALL, b_files)


def test_a_revision_the_volume_does_not_show_whole_is_never_made_current(
    twins: Twins, hub: LocalHub, repos: Repos, monkeypatch: pytest.MonkeyPatch
):
    """The barrier: the container committed its revision, but the caller's listing lacks a file (a commit that did
    not carry it): the pointer stays on the old revision and the model fails with one line."""
    download(twins)
    move_to(twins, hub, new_revision(repos.files[SMALL]))
    containers = twins.containers

    def written_but_not_committed_whole(operation: str, jobs_: Any, cancel: threading.Event) -> Any:
        rows = containers(operation, jobs_, cancel)
        for staged in (twins.volume_root / SMALL_DIR / REVISIONS_DIR).iterdir():
            if staged.name != pointer_of(twins)["revision"]:
                (staged / "speech_tokenizer" / "model.safetensors").unlink()
        return rows

    backend = twins.backends()[1]
    backend.start = written_but_not_committed_whole
    summary = run(Request(Operation.DOWNLOAD, repo_ids=(SMALL,)), twins.model_list, backend, twins.hub)
    assert summary.exit_code == 1
    assert small(summary) == "failed"
    assert summary.models[0].error == (
        f"revision {summary.models[0].commit} of {SMALL_DIR} is not complete on the target after it was written "
        "(a file or its manifest is missing); the pointer was not moved: run download again to plan from what the "
        "target holds now"
    )
    assert_complete(twins.volume_root, SMALL, dict(repos.files[SMALL]))
    assert small(download(twins)) == "downloaded", "the next run finishes it"


@pytest.mark.parametrize("refusal", [errno.EPERM, errno.EXDEV, errno.ENOTSUP], ids=errno.errorcode.get)
def test_where_links_are_refused_unchanged_files_are_copied_and_need_their_space(
    twins: Twins, hub: LocalHub, repos: Repos, monkeypatch: pytest.MonkeyPatch, refusal: int
):
    download(twins)
    b_files = new_revision(repos.files[SMALL])
    move_to(twins, hub, b_files)

    def refused(*args: Any, **kwargs: Any) -> None:
        raise OSError(refusal, os.strerror(refusal))

    monkeypatch.setattr(os, "link", refused)
    changed = len(b_files["model.safetensors"]) + len(b_files["tokenizer_config.json"])
    copied = sum(
        len(content) for path, content in b_files.items() if path not in ("model.safetensors", "tokenizer_config.json")
    )
    real_usage = shutil.disk_usage
    free = changed + copied // 2  # room for what is fetched, not for the copies too
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real_usage(path)._replace(free=free))
    summary = download(twins)
    assert small(summary) == "failed"
    assert f"(with {human_bytes(copied)} copied: no hard links here)" in (summary.models[0].error or "")

    monkeypatch.setattr(shutil, "disk_usage", real_usage)
    assert small(download(twins)) == "downloaded"
    assert_complete(twins.volume_root, SMALL, b_files)
    revision = twins.volume_root / SMALL_DIR / REVISIONS_DIR / pointer_of(twins)["revision"]
    previous = twins.volume_root / SMALL_DIR / REVISIONS_DIR / pointer_of(twins)["previous"]
    for path in ("config.json", "speech_tokenizer/model.safetensors"):
        assert (revision / path).stat().st_nlink == 1
        assert (revision / path).stat().st_ino != (previous / path).stat().st_ino
