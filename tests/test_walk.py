"""The walk of a model directory (`disk.walk_files`) while another run changes it, and the link probe's clean-up."""

from __future__ import annotations

import os
import time
from pathlib import Path

from modal_jobs.disk import PROBE_PREFIX, STALE_PROBE_SECONDS, links_work, walk_files


def test_a_folder_swapped_for_a_link_during_the_walk_is_not_followed(tmp_path: Path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "SECRET").write_bytes(b"not the model's")
    model = tmp_path / "model"
    for name in ("d1", "d2"):
        (model / "a" / name).mkdir(parents=True)
        (model / "a" / name / "weights.bin").write_bytes(b"w")

    walk = walk_files(model)
    first, _ = next(walk)  # paused inside one of the two folders, after both were listed
    other = model / "a" / ({"a/d1/weights.bin": "d2", "a/d2/weights.bin": "d1"}[first])
    (other / "weights.bin").unlink()
    other.rmdir()
    other.symlink_to(outside, target_is_directory=True)
    rest = {path: st for path, st in walk}

    assert not any("SECRET" in path for path in rest)
    assert list(rest) == [f"a/{other.name}"]  # the link itself, as a link
    assert (outside / "SECRET").exists()


def test_a_file_removed_during_the_walk_is_skipped(tmp_path: Path):
    """`list` does not hold the writer lock: a download retiring a revision may remove files it is walking."""
    model = tmp_path / "model"
    model.mkdir()
    for name in ("one", "two"):
        (model / name).write_bytes(b"x")

    walk = walk_files(model)
    first, _ = next(walk)
    (model / ({"one": "two", "two": "one"}[first])).unlink()

    assert list(walk) == []


def test_the_link_probe_removes_probes_a_killed_run_left_and_keeps_the_rest(tmp_path: Path):
    """A container killed mid-probe leaves two hidden files; the next probe removes them, never another's live one."""
    stale = [tmp_path / f"{PROBE_PREFIX}dead", tmp_path / f"{PROBE_PREFIX}dead.link"]
    live = tmp_path / f"{PROBE_PREFIX}probing-now"
    odd = tmp_path / f"{PROBE_PREFIX}a-folder"  # not ours to remove: left, and no reason to fail the run
    odd.mkdir()
    for path in (*stale, live):
        path.touch()
    long_ago = time.time() - STALE_PROBE_SECONDS - 60
    for path in (*stale, odd):
        os.utime(path, (long_ago, long_ago))

    assert links_work(tmp_path) is True
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, odd.name])
