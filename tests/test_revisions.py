"""Updates without downtime, on a local directory: a reader polling throughout only ever sees a whole revision.

A probe process (`tests/reader_probe.py`) asks the reader for the model in a loop, as inference
containers starting at any moment would, and hashes what it gets; every answer must be exactly
the Hub's files of one commit. The download runs as its own process against the local hub.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest

from modal_jobs.model_dir import LEGACY, MANIFEST_NAME, POINTER_NAME, REVISIONS_DIR, FileRecord, new_manifest
from modal_jobs.reader import ModelNotReady, model_path
from tests.conftest import ROOT, SMALL, TOKENIZER, Cli, Repos, assert_complete, model_dir, rows_by_repo, tree

SMALL_DIR = "Qwen3-TTS-12Hz-0.6B-Base"


def hashes(files: Mapping[str, bytes]) -> dict[str, str]:
    return {path: hashlib.sha256(content).hexdigest() for path, content in sorted(files.items())}


@contextmanager
def reader_polling(
    target: Path, repo_id: str, expected: Mapping[str, Mapping[str, bytes]], tmp: Path
) -> Iterator[list[str]]:
    """Poll the reader in another process while the block runs; the list holds each round's answer after it."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "expected.json").write_text(json.dumps({label: hashes(files) for label, files in expected.items()}))
    stop, out = tmp / "stop", tmp / "rounds.json"
    probe = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "tests" / "reader_probe.py"),
            str(target),
            repo_id,
            str(tmp / "expected.json"),
            str(stop),
            str(out),
        ],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    rounds: list[str] = []
    try:
        time.sleep(0.3)
        yield rounds
    finally:
        stop.touch()
        probe.wait(timeout=60)
    rounds.extend(json.loads(out.read_text()))


def new_revision(files: Mapping[str, bytes]) -> dict[str, bytes]:
    """The next commit of a model: one weight file changed, one config dropped, one added."""
    changed = dict(files)
    changed["model.safetensors"] = changed["model.safetensors"][::-1]
    del changed["generation_config.json"]
    changed["tokenizer_config.json"] = b'{"added": true}\n'
    return changed


def test_an_update_never_shows_a_reader_a_missing_or_mixed_model(cli: Cli, repos: Repos, target: Path, tmp_path: Path):
    assert cli("download", "--model", SMALL).returncode == 0
    b_files = new_revision(repos.files[SMALL])
    cli.hub.commit(SMALL, b_files)
    assert cli("lock", "--upgrade").returncode == 0
    cli.hub.throttle(1_000_000)  # the update takes about two seconds
    cli.hub.reset_counts()
    with reader_polling(target, SMALL, {"A": repos.files[SMALL], "B": b_files}, tmp_path / "probe") as rounds:
        result = cli("download", "--model", SMALL)
    assert result.returncode == 0, result.stderr
    assert set(rounds) == {"A", "B"}, [r for r in rounds if r not in ("A", "B")][:3]
    assert rounds.index("B") > 0 and "A" not in rounds[rounds.index("B") :], "once B is current, it stays"
    assert_complete(target, SMALL, b_files)
    # Files that did not change were linked from A, not requested again.
    unchanged = [p for p in b_files if repos.files[SMALL].get(p) == b_files[p]]
    assert unchanged and all(cli.hub.transfers(SMALL, p) == 0 for p in unchanged)
    assert cli.hub.count(kind="resolve", method="GET") == len(b_files) - len(unchanged)


def test_a_repair_never_shows_a_reader_a_missing_or_partial_file(cli: Cli, repos: Repos, target: Path, tmp_path: Path):
    assert cli("download", "--model", SMALL).returncode == 0
    damaged_path = model_dir(target, SMALL) / "model.safetensors"
    content = bytearray(damaged_path.read_bytes())
    content[100] ^= 0xFF
    damaged_path.write_bytes(bytes(content))
    as_damaged = {**repos.files[SMALL], "model.safetensors": bytes(content)}
    assert (
        cli("verify", "--model", SMALL).returncode == 1
    )  # marks it for repair; readers keep what they have until then
    cli.hub.throttle(1_000_000)
    cli.hub.reset_counts()
    with reader_polling(
        target, SMALL, {"before": as_damaged, "repaired": repos.files[SMALL]}, tmp_path / "probe"
    ) as rounds:
        result = cli("download", "--model", SMALL, "--json")
    assert result.returncode == 0, result.stderr
    assert rows_by_repo(json.loads(result.stdout))[SMALL]["status"] == "repaired"
    assert set(rounds) == {"before", "repaired"}, [r for r in rounds if r not in ("before", "repaired")][:3]
    assert_complete(target, SMALL, repos.files[SMALL])
    assert cli.hub.transfers(SMALL, "model.safetensors") == 1 and cli.hub.transfers(SMALL, "config.json") == 0
    assert cli("verify", "--model", SMALL).returncode == 0


@pytest.mark.parametrize("after", [0.4, 1.2, 2.5])
def test_a_killed_update_leaves_readers_the_old_revision_and_the_next_run_finishes(
    cli: Cli, repos: Repos, target: Path, tmp_path: Path, after: float
):
    assert cli("download", "--model", SMALL).returncode == 0
    b_files = new_revision(repos.files[SMALL])
    cli.hub.commit(SMALL, b_files)
    assert cli("lock", "--upgrade").returncode == 0
    cli.hub.throttle(1_000_000)
    with reader_polling(target, SMALL, {"A": repos.files[SMALL], "B": b_files}, tmp_path / "probe") as rounds:
        process = subprocess.Popen(cli.argv("download", "--model", SMALL), env=cli.env, stderr=subprocess.DEVNULL)
        time.sleep(after)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        cli.hub.throttle(None)
        result = cli("download", "--model", SMALL)
        assert result.returncode == 0, result.stderr
    assert set(rounds) <= {"A", "B"}, [r for r in rounds if r not in ("A", "B")][:3]
    assert rounds[-1] == "B"
    assert_complete(target, SMALL, b_files)


def test_a_failed_verification_leaves_readers_the_old_revision(cli: Cli, repos: Repos, target: Path, tmp_path: Path):
    assert cli("download", "--model", SMALL).returncode == 0
    b_files = new_revision(repos.files[SMALL])
    cli.hub.commit(SMALL, b_files)
    assert cli("lock", "--upgrade").returncode == 0
    cli.hub.corrupt(SMALL, "model.safetensors", times=None)
    with reader_polling(target, SMALL, {"A": repos.files[SMALL]}, tmp_path / "probe") as rounds:
        result = cli("download", "--model", SMALL, "--json")
    assert result.returncode == 1
    assert "failed verification twice" in rows_by_repo(json.loads(result.stdout))[SMALL]["error"]
    assert set(rounds) == {"A"}
    assert_complete(target, SMALL, repos.files[SMALL])


def test_three_updates_keep_exactly_the_last_two_revisions_and_list_shows_them(cli: Cli, repos: Repos, target: Path):
    commits = [repos.commits[SMALL]]
    assert cli("download", "--model", SMALL).returncode == 0
    files = repos.files[SMALL]
    for step in (1, 2):
        files = {**files, "config.json": f'{{"step": {step}}}'.encode()}
        commits.append(cli.hub.commit(SMALL, files))
        assert cli("lock", "--upgrade").returncode == 0
        assert cli("download", "--model", SMALL).returncode == 0
    revisions = sorted(p.name for p in (target / SMALL_DIR / REVISIONS_DIR).iterdir())
    assert revisions == sorted(commits[1:])
    assert_complete(target, SMALL, files)
    pointer = json.loads((target / SMALL_DIR / POINTER_NAME).read_text())
    assert (pointer["commit"], pointer["previous"]) == (commits[2], commits[1])

    row = rows_by_repo(cli.json("list"))[SMALL]
    assert row["status"] == "complete"
    size = sum(len(b) for b in files.values())
    assert row["note"] == f"current {commits[2][:7]} ({human(size)}), kept {commits[1][:7]} ({human(size)})"
    assert row["bytes"] == size
    (line,) = [line for line in cli("list").stdout.splitlines() if line.startswith(SMALL)]
    assert line.endswith(f"  {row['note']}")


def human(n: int) -> str:
    from modal_jobs.summary import human_bytes

    return human_bytes(n)


def write_old_layout(target: Path, repo_id: str, files: Mapping[str, bytes], commit: str) -> Path:
    """A model as the cache wrote it before revisions: files and the manifest side by side."""
    directory = target / repo_id.split("/")[1]
    directory.mkdir(parents=True)
    records = []
    for path, content in files.items():
        (directory / path).parent.mkdir(parents=True, exist_ok=True)
        (directory / path).write_bytes(content)
        sha1 = hashlib.sha1(b"blob %d\0" % len(content) + content, usedforsecurity=False).hexdigest()
        lfs = path.endswith(".safetensors")
        digest = f"sha256:{hashlib.sha256(content).hexdigest()}" if lfs else f"git-sha1:{sha1}"
        records.append(FileRecord(path, len(content), digest))
    manifest = new_manifest(repo_id, "main", commit, records, None, None)
    (directory / MANIFEST_NAME).write_text(manifest.to_json())
    return directory


def old_reader(target: Path, repo_id: str) -> Path:
    """The inference side as the README told it before revisions: manifest present, files beside it."""
    directory = target / repo_id.split("/")[1]
    manifest = json.loads((directory / MANIFEST_NAME).read_text())
    for record in manifest["files"]:
        assert (directory / record["path"]).stat().st_size == record["size"]
    return directory


def test_a_volume_of_the_old_layout_is_adopted_without_a_download(cli: Cli, repos: Repos, target: Path, tmp_path: Path):
    for repo_id in (SMALL, TOKENIZER):
        write_old_layout(target, repo_id, repos.files[repo_id], repos.commits[repo_id])
    assert old_reader(target, SMALL) == model_path(target, SMALL) == target / SMALL_DIR  # the new reader reads it too
    cli.hub.reset_counts()
    with reader_polling(target, SMALL, {"A": repos.files[SMALL]}, tmp_path / "probe") as rounds:
        summary = cli.json("download", "--model-size", "0.6B")
    assert summary["exit_code"] == 0
    assert "adopting" in rows_by_repo(summary)[SMALL]["note"]
    assert cli.hub.count(kind="resolve", method="GET") == 0
    assert set(rounds) == {"A"}
    assert_complete(target, SMALL, repos.files[SMALL])
    assert model_path(target, SMALL) == target / SMALL_DIR / REVISIONS_DIR / repos.commits[SMALL]
    # Readers of the old version still find what they found, until the next update retires it.
    assert old_reader(target, SMALL) == target / SMALL_DIR
    pointer = json.loads((target / SMALL_DIR / POINTER_NAME).read_text())
    assert pointer["previous"] == LEGACY


def test_the_update_after_adoption_retires_the_old_layout(cli: Cli, repos: Repos, target: Path):
    write_old_layout(target, SMALL, repos.files[SMALL], repos.commits[SMALL])
    assert cli("download", "--model", SMALL).returncode == 0
    cli.hub.commit(SMALL, new_revision(repos.files[SMALL]))
    assert cli("lock", "--upgrade").returncode == 0
    assert cli("download", "--model", SMALL).returncode == 0
    assert sorted(p.name for p in (target / SMALL_DIR).iterdir()) == [POINTER_NAME, REVISIONS_DIR]
    assert len(list((target / SMALL_DIR / REVISIONS_DIR).iterdir())) == 2


def test_the_path_command_prints_what_the_reader_returns(cli: Cli, repos: Repos, target: Path):
    assert cli("download", "--model", SMALL).returncode == 0
    result = cli("path", SMALL)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{model_path(target, SMALL)}\n"
    assert result.stderr == ""
    wrong = cli("path", SMALL, "--commit", "f" * 40)
    assert wrong.returncode == 1
    assert wrong.stdout == ""
    assert wrong.stderr.count("\n") == 1 and f"not {'f' * 12} as asked" in wrong.stderr


def test_the_reader_imports_with_the_standard_library_alone(cli: Cli, repos: Repos, target: Path, tmp_path: Path):
    """An inference image may carry this one module: no modal, no huggingface_hub, no package around it."""
    assert cli("download", "--model", SMALL).returncode == 0
    venv = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    alone = tmp_path / "vendored"
    alone.mkdir()
    (alone / "reader.py").write_bytes((ROOT / "modal_jobs" / "reader.py").read_bytes())
    (target / "Incomplete-Model").mkdir()
    script = f"""
import sys
sys.path.insert(0, {str(alone)!r})
import reader
for name in ("huggingface_hub", "modal"):
    try:
        __import__(name)
    except ImportError:
        pass
    else:
        raise SystemExit(name + " is importable: the test proves nothing")
print(reader.model_path({str(target)!r}, {SMALL!r}, {repos.commits[SMALL]!r}))
for args in (("Qwen/Absent",), ("Qwen/Incomplete-Model",), ({SMALL!r}, "0" * 40)):
    try:
        reader.model_path({str(target)!r}, *args)
    except reader.ModelNotReady as exc:
        print(exc)
assert "modal_jobs" not in sys.modules and "huggingface_hub" not in sys.modules
"""
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-I", "-c", script], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    found, absent, incomplete, wrong = result.stdout.splitlines()
    assert found == str(model_path(target, SMALL))
    assert absent.startswith("Qwen/Absent: absent from ") and "run `python3 tools/nox_locked.py -s download`" in absent
    assert incomplete.startswith("Qwen/Incomplete-Model: incomplete at ") and "to finish it" in incomplete
    assert wrong.startswith(f"{SMALL}: {target} holds commit {repos.commits[SMALL][:12]}, not {'0' * 12} as asked")


def test_the_reader_takes_the_commit_from_a_shipped_lock(cli: Cli, repos: Repos, target: Path):
    assert cli("download", "--model", SMALL).returncode == 0
    lock = cli.model_list.with_suffix(".lock")
    assert model_path(target, SMALL, lock=lock) == model_dir(target, SMALL)
    cli.hub.commit(SMALL, new_revision(repos.files[SMALL]))
    assert cli("lock", "--upgrade").returncode == 0
    with pytest.raises(ModelNotReady, match=r"not .* as asked"):
        model_path(target, SMALL, lock=lock)


def test_a_file_removed_by_hand_makes_the_reader_refuse_and_download_repair(cli: Cli, repos: Repos, target: Path):
    assert cli("download", "--model", SMALL).returncode == 0
    (model_dir(target, SMALL) / "speech_tokenizer" / "config.json").unlink()
    with pytest.raises(ModelNotReady, match=r"speech_tokenizer/config\.json is missing"):
        model_path(target, SMALL)
    cli.hub.reset_counts()
    summary = cli.json("download", "--model", SMALL)
    assert rows_by_repo(summary)[SMALL]["status"] == "repaired"
    assert cli.hub.count(kind="resolve", method="GET") == 1
    assert_complete(target, SMALL, repos.files[SMALL])
    assert not [p for p in tree(target / SMALL_DIR) if p.startswith(".cache") or "/.cache/" in p]
