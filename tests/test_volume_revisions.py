"""Updates without downtime on the volume stand-in: every background commit Modal could make is a whole revision.

Modal commits a mounted volume in the background every few seconds, so a reader in another
container may see any prefix of what `apply_one` wrote. Here the container runs in-process on
the stand-in volume (`tests.modal_stand_ins`), and the engine's steps inside `apply_model` and the
caller's pointer and retirement through the client API are wrapped (never replaced): before and
after each link, download, manifest, pointer and retirement, and at random points while bytes
arrive, the volume is copied as such a commit would publish it.
The reader (`modal_jobs.reader.model_path`) then loads each copy, and the files it is handed must
be, byte for byte, the Hub's files of one commit: never an error, never a mix.
"""

from __future__ import annotations

import random
import shutil
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from local_hub.server import LocalHub
from modal_jobs import engine
from modal_jobs.hub import Hub
from modal_jobs.model_dir import DAMAGED_NAME, MANIFEST_NAME, REVISIONS_DIR
from modal_jobs.model_list import parse_model_list
from modal_jobs.operations import run
from modal_jobs.reader import ModelNotReady, model_path
from modal_jobs.request import Request
from modal_jobs.summary import ModelRow, Operation, Summary
from modal_jobs.volume import VolumeStore
from tests.conftest import MODEL_LIST, SMALL, Repos, assert_complete, model_dir
from tests.test_revisions import new_revision
from tests.twin_targets import Twins, stand_in

SMALL_DIR = "Qwen3-TTS-12Hz-0.6B-Base"
# The engine's steps inside `apply_model` that change the volume, each a point a commit may fall between.
STEPS = ("invalidate", "remove_downloader_state", "link_or_copy", "remove_files", "write_manifest")
# What the caller does on the volume through the client API once the container committed the revision.
PUBLISH_STEPS = ("write_pointer", "retire")
# Of the byte callbacks while a file arrives, about this share also takes a copy (and always the first).
MID_TRANSFER_SHARE = 0.2


@dataclass
class BackgroundCommits:
    """Copies the volume at the points a background commit may fall on, and asks the reader about each copy.

    A copy is taken while no step of the engine runs (they hold `lock`), so it is what a commit
    between two steps publishes. Transfers in flight write only inside the revision being made,
    which no pointer names yet. Each copy is checked at once and deleted; `seen` keeps, in order,
    (where it was taken, what the reader got).
    """

    volume: Path
    scratch: Path
    repo_id: str
    expected: Mapping[str, Mapping[str, bytes]]
    rng: random.Random = field(default_factory=lambda: random.Random(17))
    lock: threading.RLock = field(default_factory=threading.RLock)
    seen: list[tuple[str, str]] = field(default_factory=list)

    def take(self, where: str) -> None:
        with self.lock:
            copy = self.scratch / f"commit-{len(self.seen)}"
            shutil.copytree(self.volume, copy, symlinks=True, copy_function=copy_if_still_there)
            try:
                self.seen.append((where, what_a_reader_gets(copy, self.repo_id, self.expected)))
            finally:
                shutil.rmtree(copy)

    def outcomes(self) -> list[str]:
        return [got for _, got in self.seen]

    def places(self) -> set[str]:
        return {where.split(" ", 1)[0] for where, _ in self.seen}


def copy_if_still_there(source: str, destination: str) -> None:
    """A file renamed or removed while the copy ran (a transfer finishing) is simply not in it."""
    with suppress(FileNotFoundError):
        shutil.copy2(source, destination, follow_symlinks=False)


def what_a_reader_gets(mount: Path, repo_id: str, expected: Mapping[str, Mapping[str, bytes]]) -> str:
    """The label of the expected file set the reader's directory holds exactly, or what it got instead."""
    try:
        found = model_path(mount, repo_id)
        files = {
            p.relative_to(found).as_posix(): p.read_bytes()
            for p in sorted(found.rglob("*"))
            if p.is_file() and p.relative_to(found).as_posix() not in (MANIFEST_NAME, DAMAGED_NAME)
        }
    except (ModelNotReady, OSError) as exc:
        return f"error: {exc}"
    for label, content in expected.items():
        if files == content:
            return label
    return f"mixed: {sorted(files)} at {found.relative_to(mount)}"


@contextmanager
def background_commits(
    monkeypatch: pytest.MonkeyPatch,
    volume: Path,
    scratch: Path,
    repo_id: str,
    expected: Mapping[str, Mapping[str, bytes]],
) -> Iterator[BackgroundCommits]:
    """While the block runs, the engine's steps and the Hub's downloads take a copy before and after themselves."""
    commits = BackgroundCommits(volume, scratch, repo_id, expected)
    scratch.mkdir(parents=True, exist_ok=True)

    def around(name: str, step: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            with commits.lock:
                commits.take(f"{name} before")
                result = step(*args, **kwargs)
                commits.take(f"{name} after")
            return result

        return wrapped

    real_download = Hub.download

    def download(self: Hub, entry: Any, commit: str, path: str, where: Path, on_bytes: Callable[[int], None]) -> None:
        first = True

        def arriving(n: int) -> None:
            nonlocal first
            on_bytes(n)
            if first or commits.rng.random() < MID_TRANSFER_SHARE:
                commits.take(f"bytes of {path}")
            first = False

        commits.take(f"download before {path}")
        real_download(self, entry, commit, path, where, arriving)
        commits.take(f"download after {path}")

    with monkeypatch.context() as patch:
        for name in STEPS:
            patch.setattr(engine, name, around(name, getattr(engine, name)))
        for name in PUBLISH_STEPS:
            patch.setattr(VolumeStore, name, around(name, getattr(VolumeStore, name)))
        patch.setattr(Hub, "download", download)
        commits.take("start")
        yield commits
        commits.take("end")


def on_the_volume(twins: Twins, request: Request) -> Summary:
    return run(request, twins.model_list, twins.backends()[1], twins.hub)


def row(summary: Summary) -> ModelRow:
    (found,) = [r for r in summary.models if r.repo_id == SMALL]
    return found


@pytest.fixture
def twins(hub: LocalHub, repos: Repos, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Twins:
    """The stand-in over a list that resolves in full: downloads write models.lock, and follow it."""
    return stand_in(hub, tmp_path, monkeypatch, parse_model_list(MODEL_LIST, tmp_path / "models.toml"))


def move_to(twins: Twins, hub: LocalHub, files: Mapping[str, bytes]) -> str:
    """The Hub's branch moves, and `lock --upgrade` takes the new commit: the next download fetches it."""
    commit = hub.commit(SMALL, dict(files))
    assert on_the_volume(twins, Request(Operation.LOCK, upgrade=True)).exit_code == 0
    return commit


def test_every_background_commit_of_two_updates_shows_readers_a_whole_revision(
    twins: Twins, hub: LocalHub, repos: Repos, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A → B links what did not change and downloads the rest; B → C also retires A. No commit in between shows less."""
    a_files = repos.files[SMALL]
    assert row(on_the_volume(twins, Request(Operation.DOWNLOAD, repo_ids=(SMALL,)))).status == "downloaded"
    b_files = new_revision(a_files)
    c_files = {**b_files, "config.json": b'{"step": "C"}'}

    commits_made = [repos.commits[SMALL]]
    for before, after, files in (("A", "B", b_files), ("B", "C", c_files)):
        commit = move_to(twins, hub, files)
        commits_made.append(commit)
        expected = {"A": a_files, "B": b_files, "C": c_files}
        with background_commits(monkeypatch, twins.volume_root, tmp_path / after, SMALL, expected) as commits:
            summary = on_the_volume(twins, Request(Operation.DOWNLOAD, repo_ids=(SMALL,)))
        assert (row(summary).status, row(summary).commit) == ("downloaded", commit)
        outcomes = commits.outcomes()
        switch = outcomes.index(after)
        assert outcomes == [before] * switch + [after] * (len(outcomes) - switch), commits.seen
        assert switch > 1, "copies were taken while the old revision was current"
        assert {"start", "link_or_copy", "download", "bytes", "write_manifest", "write_pointer"} <= commits.places()
        assert_complete(twins.volume_root, SMALL, files)

    assert "retire" in commits.places(), "the second update retired A while copies were taken"
    revisions = sorted(p.name for p in (twins.volume_root / SMALL_DIR / REVISIONS_DIR).iterdir())
    assert revisions == sorted(commits_made[1:]), "C is current, B kept for readers that loaded it, A gone"


def test_every_background_commit_of_a_repair_shows_readers_a_whole_revision(
    twins: Twins, repos: Repos, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Verify marks the damage and leaves the revision readable; the repair is written beside it, then made current."""
    on_the_volume(twins, Request(Operation.DOWNLOAD, repo_ids=(SMALL,)))
    damaged_path = model_dir(twins.volume_root, SMALL) / "model.safetensors"
    content = bytearray(damaged_path.read_bytes())
    content[100] ^= 0xFF
    damaged_path.write_bytes(bytes(content))
    as_damaged = {**repos.files[SMALL], "model.safetensors": bytes(content)}
    verified = on_the_volume(twins, Request(Operation.VERIFY, repo_ids=(SMALL,)))
    assert row(verified).status == "damaged"
    assert (model_dir(twins.volume_root, SMALL) / DAMAGED_NAME).is_file()

    expected = {"damaged": as_damaged, "repaired": repos.files[SMALL]}
    with background_commits(monkeypatch, twins.volume_root, tmp_path / "repair", SMALL, expected) as commits:
        summary = on_the_volume(twins, Request(Operation.DOWNLOAD, repo_ids=(SMALL,)))
    assert row(summary).status == "repaired"
    outcomes = commits.outcomes()
    switch = outcomes.index("repaired")
    assert outcomes == ["damaged"] * switch + ["repaired"] * (len(outcomes) - switch), commits.seen
    assert {"link_or_copy", "download", "bytes", "write_manifest", "write_pointer"} <= commits.places()
    assert_complete(twins.volume_root, SMALL, repos.files[SMALL])
    assert row(on_the_volume(twins, Request(Operation.VERIFY, repo_ids=(SMALL,)))).status == "ok"


def test_every_background_commit_of_a_failed_verification_shows_readers_the_old_revision(
    twins: Twins, hub: LocalHub, repos: Repos, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The Hub serves a bad copy of a changed file every time: the update fails, and no reader ever noticed."""
    on_the_volume(twins, Request(Operation.DOWNLOAD, repo_ids=(SMALL,)))
    move_to(twins, hub, new_revision(repos.files[SMALL]))
    hub.corrupt(SMALL, "model.safetensors", times=None)

    expected = {"A": repos.files[SMALL]}
    with background_commits(monkeypatch, twins.volume_root, tmp_path / "failed", SMALL, expected) as commits:
        summary = on_the_volume(twins, Request(Operation.DOWNLOAD, repo_ids=(SMALL,)))
    assert row(summary).status == "failed"
    assert "failed verification twice" in (row(summary).error or "")
    assert set(commits.outcomes()) == {"A"}, commits.seen
    assert {"link_or_copy", "download", "bytes"} <= commits.places()
    assert "write_pointer" not in commits.places()
    assert_complete(twins.volume_root, SMALL, repos.files[SMALL])
