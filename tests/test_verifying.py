"""`verify` on a directory: every model's files on one pool, the largest first, damage named in path order."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from modal_jobs import hashing, verifying
from modal_jobs.disk import write_manifest, write_pointer
from modal_jobs.model_dir import FileRecord, Pointer, new_manifest, revision_dir
from modal_jobs.model_list import ModelEntry
from modal_jobs.summary import Status

# Three models, two files each, sizes interleaved across them: the pool's order cannot follow the models'.
SIZES = {"org/a": {"a.bin": 3000, "z.bin": 60_000}, "org/b": {"b.bin": 40_000, "c.bin": 500}, "org/c": {"d.bin": 9000}}


def complete_target(target: Path) -> list[ModelEntry]:
    """Each model complete in its revision, as a download leaves it."""
    for n, (repo_id, files) in enumerate(SIZES.items()):
        commit = f"{n + 1:040x}"
        model_dir = target / repo_id.split("/")[1]
        records = []
        for path, size in files.items():
            data = bytes([n]) * size
            (revision_dir(model_dir, commit) / path).parent.mkdir(parents=True, exist_ok=True)
            (revision_dir(model_dir, commit) / path).write_bytes(data)
            records.append(FileRecord(path, size, f"sha256:{hashlib.sha256(data).hexdigest()}"))
        write_manifest(revision_dir(model_dir, commit), new_manifest(repo_id, "main", commit, records, None, None))
        write_pointer(model_dir, Pointer(repo_id, commit, commit))
    return [ModelEntry(repo_id) for repo_id in SIZES]


def test_the_largest_files_of_all_models_are_hashed_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A large file started last would leave one core hashing alone at the end, whatever model it belongs to."""
    entries = complete_target(tmp_path)
    started: list[int] = []
    check_file = hashing.check_file

    def noted(model_dir: Path, expected: FileRecord, known_hash: str | None = None) -> str | None:
        started.append(expected.size)
        return check_file(model_dir, expected, known_hash)

    monkeypatch.setattr(verifying, "HASH_WORKERS", 1)
    monkeypatch.setattr(verifying, "check_file", noted)
    rows = verifying.verify_models(entries, tmp_path)
    assert started == sorted((size for files in SIZES.values() for size in files.values()), reverse=True)
    assert {row.status for row in rows} == {Status.OK}


def test_damaged_files_are_named_in_path_order(tmp_path: Path):
    entries = complete_target(tmp_path)
    for path in ("z.bin", "a.bin"):
        with (revision_dir(tmp_path / "a", f"{1:040x}") / path).open("r+b") as f:
            f.write(b"x")
    rows = {row.repo_id: row for row in verifying.verify_models(entries, tmp_path)}
    assert rows["org/a"].status is Status.DAMAGED
    assert rows["org/a"].error is not None and rows["org/a"].error.startswith(
        "2 damaged file(s): a.bin (sha256 mismatch), z.bin (sha256 mismatch)"
    )
    assert rows["org/b"].status is Status.OK and rows["org/c"].status is Status.OK
