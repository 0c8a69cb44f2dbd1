"""Faults beyond the everyday: two runs at once, full disks, signals, hostile Hub answers, hostile local state.

The rule throughout: nothing complete is damaged, nothing outside the target is touched, and no
model is ever marked complete unless every file verified.
"""

from __future__ import annotations

import errno
import getpass
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from modal_jobs.model_dir import MANIFEST_NAME
from tests.conftest import (
    SMALL,
    TOKENIZER,
    Cli,
    Repos,
    assert_not_loadable,
    model_dir,
    mount_tmpfs,
    rows_by_repo,
    tree,
)

SMALL_DIR = "Qwen3-TTS-12Hz-0.6B-Base"
TOKENIZER_DIR = "Qwen3-TTS-Tokenizer-12Hz"
MIB = 1024 * 1024


def start_slow_download(cli: Cli, *args: str) -> subprocess.Popen[str]:
    """A real CLI process mid-transfer: the hub is throttled and has sent some bytes."""
    cli.hub.reset_counts()
    cli.hub.throttle(300_000)
    process = subprocess.Popen(
        cli.argv("download", *args), env=cli.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    while cli.hub.bytes_sent < 50_000:
        assert time.monotonic() < deadline, "the download never started"
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    return process


def leftovers(target: Path) -> list[str]:
    return sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.name.endswith((".incomplete", ".tmp")))


# -- two runs on one target -----------------------------------------------------------------------


def test_second_writer_refuses_while_one_runs_and_waits_when_asked(cli: Cli, repos: Repos, target: Path):
    first = start_slow_download(cli, "--model-size", "0.6B")
    try:
        result = cli("download", "--model-size", "0.6B", "--lock-wait", "0")
        assert result.returncode == 2
        assert f"another run ({getpass.getuser()}@{socket.gethostname()}, pid {first.pid}, download)" in result.stderr
        assert f"is working on {target} since " in result.stderr
        assert "--lock-wait" in result.stderr

        result = cli("clear", "--yes", "--lock-wait", "0")
        assert result.returncode == 2
        assert (target / SMALL_DIR).exists()

        waiter = subprocess.Popen(
            cli.argv("download", "--model-size", "0.6B", "--lock-wait", "60", "--json"),
            env=cli.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert waiter.stderr is not None
        first_line = waiter.stderr.readline()
        assert f"pid {first.pid}, download) is working on" in first_line
        assert "waiting up to 60s" in first_line
        cli.hub.throttle(None)
        stdout, _ = waiter.communicate(timeout=60)
        assert waiter.returncode == 0
        assert {row["status"] for row in json.loads(stdout)["models"]} == {"up-to-date"}
    finally:
        first.kill()
        first.wait()
    assert first.returncode == 0 or first.returncode < 0


def test_list_does_not_wait_for_a_writer(cli: Cli, repos: Repos):
    first = start_slow_download(cli, "--model-size", "0.6B")
    try:
        result = cli("list", timeout=30)
        assert result.returncode == 0
    finally:
        first.kill()
        first.wait()


# -- signals ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_promptly_cleans_up_and_rerun_resumes(cli: Cli, repos: Repos, target: Path, sig: int):
    process = start_slow_download(cli, "--model-size", "0.6B")
    process.send_signal(sig)
    try:
        _, stderr = process.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError("the download did not stop within 15 s of the signal") from None
    assert process.returncode == 130
    assert "interrupted" in stderr and "run the same command again to resume" in stderr
    assert leftovers(target) == []
    assert not list(target.rglob(MANIFEST_NAME))

    cli.hub.throttle(None)
    result = cli("download", "--model-size", "0.6B")
    assert result.returncode == 0, result.stderr
    assert cli("verify", "--model-size", "0.6B").returncode == 0
    assert not list(target.rglob(".cache"))


# -- disk space -------------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """A small filesystem (3 MiB unless the test says): a tmpfs, mounted as root or through sudo."""
    size = getattr(request, "param", 3 * MIB)
    with mount_tmpfs(tmp_path / "small-disk", size) as disk:
        yield disk.path


def test_a_tmpfs_is_ours_to_fill_and_then_read_only(tmp_path: Path):
    """mount_tmpfs as the read-only tests use it: filled writable by this user, then remounted read-only."""
    with mount_tmpfs(tmp_path / "prepared", MIB) as disk:
        (disk.path / "config.json").write_bytes(b"{}")
        disk.remount(read_only=True)
        with pytest.raises(OSError) as refused:
            (disk.path / "more.json").write_bytes(b"{}")
        assert refused.value.errno == errno.EROFS
        assert (disk.path / "config.json").read_bytes() == b"{}"
        assert os.statvfs(disk.path).f_flag & os.ST_RDONLY
    assert not os.path.ismount(tmp_path / "prepared")


def test_not_enough_space_is_refused_before_any_transfer(cli: Cli, repos: Repos, small_disk: Path):
    cli.target = small_disk / "models"
    summary = cli.json("download", "--model-size", "0.6B")
    assert summary["exit_code"] == 1
    rows = rows_by_repo(summary)
    assert rows[SMALL]["status"] == "downloaded"  # 2.7 MB of 3 MiB
    assert rows[TOKENIZER]["status"] == "failed"
    assert "not enough free space on" in rows[TOKENIZER]["error"]
    assert "needs 1.3 MiB" in rows[TOKENIZER]["error"]
    assert not (cli.target / TOKENIZER_DIR).exists()
    assert cli("verify", "--model", SMALL).returncode == 0


def fill_up(path: Path) -> None:
    """Write until the filesystem is full, racing whatever else writes there."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)


@pytest.mark.parametrize("small_disk", [6 * MIB], indirect=True)
def test_disk_filling_mid_download_fails_that_model_only(cli: Cli, repos: Repos, small_disk: Path):
    cli.target = small_disk / "models"
    assert cli("download", "--model", TOKENIZER).returncode == 0
    complete = tree(cli.target / TOKENIZER_DIR)

    process = start_slow_download(cli, "--model", SMALL)
    fill_up(small_disk / "another-writer")  # another writer takes the room the model was counting on
    cli.hub.throttle(None)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 1, stderr
    assert "No space left on device" in stderr
    assert leftovers(cli.target) == []
    assert_not_loadable(cli.target, SMALL)
    assert tree(cli.target / TOKENIZER_DIR) == complete


def test_file_size_limit_fails_the_model_without_partial_files(cli: Cli, repos: Repos, target: Path):
    """Where no small filesystem can be made, a file-size limit makes writes fail the same way."""

    def limit_file_size() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1_500_000, 1_500_000))

    result = subprocess.run(
        cli.argv("download", "--model", SMALL, "--json"),
        env=cli.env,
        capture_output=True,
        text=True,
        preexec_fn=limit_file_size,
        check=False,
        timeout=120,
    )
    assert result.returncode == 1
    row = rows_by_repo(json.loads(result.stdout))[SMALL]
    assert row["status"] == "failed"
    assert "File too large" in row["error"]
    assert leftovers(target) == []
    assert_not_loadable(target, SMALL)


# -- hostile or broken Hub answers -------------------------------------------------------------------


@pytest.mark.parametrize("bad_path", ["../escaped.json", "/etc/escaped.json", "sub\\escaped.json", ".cache/x.json"])
def test_listing_with_escaping_paths_is_refused(cli: Cli, repos: Repos, target: Path, tmp_path: Path, bad_path: str):
    cli.hub.commit(SMALL, {**repos.files[SMALL], bad_path: b"{}"})
    summary = cli.json("download", "--model", SMALL)
    assert summary["exit_code"] == 1
    row = rows_by_repo(summary)[SMALL]
    assert row["status"] == "failed"
    assert "file path from the Hub" in row["error"]
    assert not list(tmp_path.rglob("escaped.json"))
    assert not Path("/etc/escaped.json").exists()
    assert_not_loadable(target, SMALL)


def test_listing_that_lies_about_a_size_never_ends_complete(cli: Cli, repos: Repos, target: Path):
    cli.hub.override_tree(SMALL, "config.json", size=len(repos.files[SMALL]["config.json"]) + 5)
    summary = cli.json("download", "--model", SMALL)
    row = rows_by_repo(summary)[SMALL]
    assert row["status"] == "failed"
    assert "config.json failed verification twice (size" in row["error"]
    assert_not_loadable(target, SMALL)


def test_truncated_body_is_resumed_and_verified(cli: Cli, repos: Repos, target: Path):
    cli.hub.corrupt(SMALL, "model.safetensors", truncate=True, times=1)
    result = cli("download", "--model", SMALL)
    assert result.returncode == 0, result.stderr
    assert (model_dir(target, SMALL) / "model.safetensors").read_bytes() == repos.files[SMALL]["model.safetensors"]
    assert cli.hub.count(kind="resolve", method="GET", repo_id=SMALL) == len(repos.files[SMALL]) + 1


def test_listing_that_changes_mid_run_fails_the_model(cli: Cli, repos: Repos, target: Path):
    cli.hub.fail(SMALL, 404, times=None, kind="resolve", path="config.json", error_code="EntryNotFound")
    summary = cli.json("download", "--model", SMALL)
    row = rows_by_repo(summary)[SMALL]
    assert row["status"] == "failed"
    assert "config.json" in row["error"] and "not found" in row["error"]
    assert_not_loadable(target, SMALL)


# -- hostile local state ----------------------------------------------------------------------------


def test_symlinks_inside_a_model_are_replaced_never_followed(cli: Cli, repos: Repos, target: Path, tmp_path: Path):
    assert cli("download", "--model", SMALL).returncode == 0
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "config.json").write_text("not yours")
    (outside / "old.bin").write_text("keep me")
    model = model_dir(target, SMALL)
    (model / MANIFEST_NAME).unlink()
    (model / "config.json").unlink()
    (model / "config.json").symlink_to(outside / "config.json")
    (model / "stale-link").symlink_to(outside, target_is_directory=True)

    result = cli("download", "--model", SMALL)
    assert result.returncode == 0, result.stderr
    model = model_dir(target, SMALL)
    assert not (model / "config.json").is_symlink()
    assert (model / "config.json").read_bytes() == repos.files[SMALL]["config.json"]
    assert not (model / "stale-link").exists()
    assert (outside / "config.json").read_text() == "not yours"
    assert (outside / "old.bin").read_text() == "keep me"


def test_a_model_directory_that_is_a_symlink_is_refused(cli: Cli, repos: Repos, target: Path, tmp_path: Path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    target.mkdir()
    (target / SMALL_DIR).symlink_to(outside, target_is_directory=True)
    summary = cli.json("download", "--model", SMALL)
    row = rows_by_repo(summary)[SMALL]
    assert row["status"] == "failed"
    assert "is a symlink" in row["error"]
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize(
    ("manifest", "warning"),
    [(b"{not json", "unreadable manifest"), (b'{"format": 99}', "manifest format 99 is not 1")],
)
def test_untrustworthy_manifest_means_incomplete_not_a_crash(
    cli: Cli, repos: Repos, target: Path, manifest: bytes, warning: str
):
    assert cli("download", "--model", SMALL).returncode == 0
    (model_dir(target, SMALL) / MANIFEST_NAME).write_bytes(manifest)
    result = cli("list", "--json")
    assert result.returncode == 0
    assert rows_by_repo(json.loads(result.stdout))[SMALL]["status"] == "incomplete"
    assert warning in result.stderr

    cli.hub.reset_counts()
    result = cli("download", "--model", SMALL, "--json")
    assert result.returncode == 0
    assert rows_by_repo(json.loads(result.stdout))[SMALL]["status"] == "repaired"
    assert cli.hub.count(kind="resolve", method="GET") == 0  # every file was verified in place


def test_verify_reports_a_folder_replaced_by_a_file_and_remembers_it(cli: Cli, repos: Repos, target: Path):
    assert cli("download", "--model", SMALL).returncode == 0
    shutil.rmtree(model_dir(target, SMALL) / "speech_tokenizer")
    (model_dir(target, SMALL) / "speech_tokenizer").write_text("junk")
    summary = cli.json("verify", "--model", SMALL)
    assert summary["exit_code"] == 1
    row = rows_by_repo(summary)[SMALL]
    assert row["status"] == "damaged"
    assert "speech_tokenizer/model.safetensors (unreadable" in row["error"]
    assert rows_by_repo(cli.json("list"))[SMALL]["status"] == "incomplete"
    assert cli("download", "--model", SMALL).returncode == 0
    assert cli("verify", "--model", SMALL).returncode == 0


def test_verify_does_not_vouch_for_files_behind_a_symlinked_folder(
    cli: Cli, repos: Repos, target: Path, tmp_path: Path
):
    assert cli("download", "--model", SMALL).returncode == 0
    outside = tmp_path / "outside-tokenizer"
    shutil.move(model_dir(target, SMALL) / "speech_tokenizer", outside)
    (model_dir(target, SMALL) / "speech_tokenizer").symlink_to(outside, target_is_directory=True)
    row = rows_by_repo(cli.json("verify"))[SMALL]
    assert row["status"] == "damaged"
    assert "(reached through a symlink)" in row["error"]


def test_a_manifest_with_an_impossible_size_is_untrusted_not_a_crash(cli: Cli, repos: Repos, target: Path):
    assert cli("download", "--model", SMALL).returncode == 0
    manifest = model_dir(target, SMALL) / MANIFEST_NAME
    manifest.write_text(re.sub(r'"size": \d+', '"size": Infinity', manifest.read_text(), count=1))
    result = cli("list", "--json")
    assert result.returncode == 0, result.stderr
    assert rows_by_repo(json.loads(result.stdout))[SMALL]["status"] == "incomplete"
    assert "unreadable manifest" in result.stderr


def test_a_signal_while_waiting_for_the_lock_stops_the_wait(cli: Cli, repos: Repos, target: Path):
    first = start_slow_download(cli, "--model-size", "0.6B")
    try:
        waiter = subprocess.Popen(
            cli.argv("download", "--model-size", "0.6B", "--lock-wait", "120"),
            env=cli.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert waiter.stderr is not None
        assert "waiting up to 120s" in waiter.stderr.readline()
        waiter.send_signal(signal.SIGINT)
        _, stderr = waiter.communicate(timeout=15)
        assert waiter.returncode == 130
        assert "interrupted while waiting for another run; nothing was changed" in stderr
    finally:
        first.kill()
        first.wait()
