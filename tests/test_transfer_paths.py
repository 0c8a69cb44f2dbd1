"""The download scenarios on both transfer paths: plain HTTP, and Xet through the real hf_xet client.

The real Hub sends LFS weights through Xet; these tests run each scenario once per path, with the
CLI as its own process against the local hub. What the streaming hash assumes of each path's writer
is tested in `test_streaming_hash.py`.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from local_hub.server import LocalHub
from modal_jobs.model_dir import LOCK_NAME, MANIFEST_NAME
from tests.conftest import SMALL, TOKENIZER, Cli, Repos, assert_complete, model_dir, rows_by_repo

WEIGHTS = "model.safetensors"


@pytest.fixture(params=["http", "xet"])
def hub(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LocalHub]:
    """The conftest hub, once per transfer path; the `repos` and `cli` fixtures build on it."""
    with LocalHub(tmp_path / "hub-data", xet=request.param == "xet") as server:
        yield server


def assert_path_taken(hub: LocalHub, repo_id: str) -> None:
    """The weights went the way the hub was asked to send them: through the CAS, or as a plain GET."""
    plain_gets = [r for r in hub.requests if r.kind == "resolve" and r.method == "GET" and r.path == WEIGHTS]
    xorbs = [r for r in hub.requests if r.kind == "xorb" and r.repo_id == repo_id]
    if hub.uses_xet(repo_id):
        assert xorbs and not plain_gets
    else:
        assert plain_gets and not xorbs


def test_fresh_download_is_byte_identical(cli: Cli, repos: Repos, target: Path):
    result = cli("download", "--model-size", "0.6B", "--json")
    assert result.returncode == 0, result.stderr
    assert {row["status"] for row in json.loads(result.stdout)["models"]} == {"downloaded"}
    for repo_id in (SMALL, TOKENIZER):
        assert_complete(target, repo_id, repos.files[repo_id])
    assert_path_taken(cli.hub, SMALL)
    assert cli.hub.transfers(SMALL, WEIGHTS) == 1


def test_rerun_transfers_nothing(cli: Cli, repos: Repos, target: Path):
    assert cli("download", "--model-size", "0.6B").returncode == 0
    before = {p: p.stat().st_mtime_ns for p in target.rglob("*") if p.name != LOCK_NAME}
    cli.hub.reset_counts()
    result = cli("download", "--model-size", "0.6B", "--json")
    assert result.returncode == 0, result.stderr
    assert {row["status"] for row in json.loads(result.stdout)["models"]} == {"up-to-date"}
    assert cli.hub.count() == 0, cli.hub.requests  # models.lock answers for the Hub
    assert cli.hub.bytes_sent == 0
    assert {p: p.stat().st_mtime_ns for p in target.rglob("*") if p.name != LOCK_NAME} == before


def test_a_chunk_corrupted_in_transit_is_caught_and_fetched_again(cli: Cli, repos: Repos, target: Path):
    cli.hub.corrupt(SMALL, WEIGHTS, times=1)
    result = cli("download", "--model-size", "0.6B")
    assert result.returncode == 0, result.stderr
    assert f"{WEIGHTS} failed verification (sha256 mismatch); downloading it again" in result.stderr
    assert_complete(target, SMALL, repos.files[SMALL])
    assert cli.hub.transfers(SMALL, WEIGHTS) == 2


def test_a_file_always_served_corrupted_fails_the_model(cli: Cli, repos: Repos, target: Path):
    cli.hub.corrupt(SMALL, WEIGHTS, times=None)
    summary = cli.json("download", "--model-size", "0.6B")
    assert summary["exit_code"] == 1
    rows = rows_by_repo(summary)
    assert rows[SMALL]["status"] == "failed"
    assert f"{WEIGHTS} failed verification twice" in rows[SMALL]["error"]
    assert rows[TOKENIZER]["status"] == "downloaded"
    assert not (model_dir(target, SMALL) / MANIFEST_NAME).exists()
    assert not (model_dir(target, SMALL) / WEIGHTS).exists()
    assert rows_by_repo(cli.json("list"))[SMALL]["status"] == "incomplete"
    assert cli.hub.transfers(SMALL, WEIGHTS) == 2


def start_slow_download(cli: Cli, *, after_bytes: int = 100_000) -> subprocess.Popen[str]:
    """A real CLI process with the hub throttled, once some file bytes are on their way to disk."""
    cli.hub.reset_counts()
    cli.hub.throttle(300_000)
    process = subprocess.Popen(
        cli.argv("download", "--model-size", "0.6B"),
        env=cli.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while cli.hub.bytes_sent < after_bytes or not list(cli.target.rglob("*.incomplete")):
        assert time.monotonic() < deadline, "the download never started"
        assert process.poll() is None, process.communicate()
        time.sleep(0.02)
    return process


def test_sigkill_mid_file_then_a_clean_resume(cli: Cli, repos: Repos, target: Path):
    process = start_slow_download(cli)
    process.kill()
    process.communicate()
    assert not (model_dir(target, SMALL) / MANIFEST_NAME).exists()
    assert rows_by_repo(cli.json("list"))[SMALL]["status"] == "incomplete"

    cli.hub.throttle(None)
    result = cli("download", "--model-size", "0.6B")
    assert result.returncode == 0, result.stderr
    for repo_id in (SMALL, TOKENIZER):
        assert_complete(target, repo_id, repos.files[repo_id])
    assert not list(target.rglob("*.incomplete"))
    assert cli("verify", "--model-size", "0.6B").returncode == 0


def test_a_stop_mid_transfer_exits_130_with_one_line_and_marks_nothing_complete(cli: Cli, repos: Repos, target: Path):
    process = start_slow_download(cli)
    process.send_signal(signal.SIGINT)
    try:
        _, stderr = process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError("the download did not stop within 20 s of SIGINT") from None
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr, stderr
    said = [line for line in stderr.splitlines() if "interrupted" in line]
    assert len(said) == 1 and "run the same command again to resume" in said[0], stderr
    assert not list(target.rglob(MANIFEST_NAME))
    assert not list(target.rglob("*.incomplete"))


def test_hf_xet_runs_with_the_caches_buffer_sizes_not_ones_derived_from_memory(cli: Cli, repos: Repos, tmp_path: Path):
    """hf_xet would size its buffers from the machine's memory (GBs); the Hub edge sets them (hub.LOCAL_XET_BUFFERS)."""
    assert cli("download", "--model", SMALL).returncode == 0
    logs = "\n".join(p.read_text() for p in (tmp_path / "hf-home").rglob("*") if p.is_file() and "log" in p.name)
    if not cli.hub.uses_xet(SMALL):
        assert "download_buffer" not in logs, "plain HTTP never starts hf_xet"
        return
    assert "download_buffer_size = 134.218MB (user set)" in logs
    assert "download_buffer_perfile_size = 33.554MB (user set)" in logs
    assert "download_buffer_limit = 134.218MB (user set)" in logs
