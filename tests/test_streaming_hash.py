"""The streaming hash on both transfer paths: what it assumes of the downloader, and that it never decides alone.

`StreamingHash` follows the downloader's `.incomplete` file and hashes it as it grows. That only
covers the final file if the downloader writes one file, in order, on one inode, which is how
huggingface_hub (plain HTTP) and hf_xet 1.8 write today. These tests fail when a release of either
changes that; and when the hash it took disagrees, the file is read once before it is called bad.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import httpcore2
import pytest
from huggingface_hub import hf_hub_download

from local_hub.repos import random_bytes
from local_hub.server import LocalHub
from modal_jobs import hashing, progress
from modal_jobs.engine import STREAM_HASH_MIN_BYTES
from modal_jobs.hashing import StreamingHash
from modal_jobs.hub import Hub
from modal_jobs.model_dir import DOWNLOADER_STATE, FileRecord
from modal_jobs.model_list import ModelEntry
from modal_jobs.progress import ByteCallback
from modal_jobs.reader import model_path
from tests.test_engine import download_model

REPO = "Qwen/Streamed"
WEIGHTS = "model.safetensors"


@pytest.fixture(params=["http", "xet"])
def hub(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LocalHub]:
    with LocalHub(tmp_path / "hub-data", xet=request.param == "xet") as server:
        yield server


@pytest.fixture
def weights(hub: LocalHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> bytes:
    """A file large enough to be hashed while it arrives, committed with a small config."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    content = random_bytes(STREAM_HASH_MIN_BYTES + 3_000_001, 7)
    hub.commit(REPO, {"config.json": b'{"a": 1}', WEIGHTS: content})
    return content


def test_the_real_client_writes_as_the_streaming_hash_assumes(hub: LocalHub, weights: bytes, tmp_path: Path):
    """huggingface_hub's own download, followed: the hash taken while it wrote is the file's hash.

    A client that writes out of order, in parallel, or to another file than the one it renames
    into place makes `result` None or wrong, and this fails.
    """
    hub.throttle(20_000_000)  # slow enough that the follower reads while the file grows
    record = FileRecord(WEIGHTS, len(weights), f"sha256:{hashlib.sha256(weights).hexdigest()}")
    model_dir = tmp_path / "model"
    with StreamingHash(model_dir, record) as streamed:
        hf_hub_download(REPO, WEIGHTS, local_dir=model_dir, endpoint=hub.url, token=False)
    assert streamed.result(model_dir / WEIGHTS) == record.hash
    assert (model_dir / WEIGHTS).read_bytes() == weights
    assert (hub.count(kind="xorb") > 0) is hub.uses_xet(REPO)


def test_large_files_are_verified_without_reading_them_again(
    hub: LocalHub, weights: bytes, tmp_path: Path, hashed_by_reading: list[str]
):
    # At full speed, 11 MB over Xet can be written and renamed before the follower first looks: then the
    # file is read once more, as it must be, and this would not show the streamed hash being used.
    hub.throttle(20_000_000)
    row = download_model(ModelEntry(REPO), tmp_path / "target", Hub(endpoint=hub.url))
    assert row.status == "downloaded", row.error
    assert (model_path(tmp_path / "target", REPO) / WEIGHTS).read_bytes() == weights
    assert hashed_by_reading == ["config.json"]
    assert (hub.count(kind="xorb") > 0) is hub.uses_xet(REPO)


def test_the_downloader_s_byte_reports_reach_the_counters_a_block_at_a_time(
    hub: LocalHub, weights: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """huggingface_hub reports each socket read; the counters, the hash's wake-ups and the stop check hear
    of them a block at a time, every byte once, the last ones when the file ends. Reads of 64 KiB here
    (httpcore's default, as a slow link gives), so that many reads make up each block."""
    monkeypatch.setattr(httpcore2.HTTP11Connection, "READ_NUM_BYTES", 64 << 10)
    raw: list[int] = []
    update = progress._ByteCounter.update

    def observed(self: progress._ByteCounter, n: int | float = 1) -> None:
        raw.append(int(n))
        update(self, n)

    monkeypatch.setattr(progress._ByteCounter, "update", observed)
    hub.throttle(40_000_000)  # slow enough for several reports a block on either path
    passed: list[int] = []
    started = time.monotonic()
    Hub(endpoint=hub.url).download(ModelEntry(REPO), "main", WEIGHTS, tmp_path / "model", passed.append)
    seconds = time.monotonic() - started

    assert (tmp_path / "model" / WEIGHTS).read_bytes() == weights
    assert sum(raw) == sum(passed) == len(weights)
    assert passed[0] == raw[0]  # the first passes at once: the file exists now
    timed = seconds / progress.REPORT_SECONDS
    assert len(passed) <= len(weights) / progress.REPORT_BYTES + timed + 2, (len(raw), len(passed), seconds)
    if not hub.uses_xet(REPO):
        assert len(raw) >= len(weights) / (64 << 10), len(raw)


class OutOfOrderWriterHub(Hub):
    """A downloader that fills the weights out of order, as a parallel writer would: placeholder bytes
    over the whole length first, then, once the follower has read them all, the real bytes in place.

    The bytes still come from the local hub over HTTP, so the hub counts the transfer.
    """

    def __init__(self, endpoint: str, sha256: str) -> None:
        super().__init__(endpoint=endpoint)
        self.sha256 = sha256

    def download(self, entry: ModelEntry, commit: str, path: str, model_dir: Path, on_bytes: ByteCallback) -> None:
        if path != WEIGHTS:
            super().download(entry, commit, path, model_dir, on_bytes)
            return
        with urllib.request.urlopen(f"{self.endpoint}/{entry.repo_id}/resolve/{commit}/{path}") as response:
            body = response.read()  # 127.0.0.1 only
        folder = model_dir / DOWNLOADER_STATE / "huggingface" / "download"
        folder.mkdir(parents=True, exist_ok=True)
        incomplete = folder / f"weights.{self.sha256}.0000beef.incomplete"
        with incomplete.open("wb") as f:
            f.write(b"\0" * len(body))
            f.flush()
            wait_for_follower(f"hash {path}")
            f.seek(0)
            f.write(body)
        on_bytes(len(body))
        incomplete.replace(model_dir / path)


def wait_for_follower(thread_name: str) -> None:
    """Until the streaming hash's follower has read every byte and ended (it stops at the file's size)."""
    deadline = time.monotonic() + 30
    while any(t.name == thread_name for t in threading.enumerate()):
        assert time.monotonic() < deadline, "the follower never finished reading"
        time.sleep(0.005)


def test_a_streamed_hash_that_disagrees_is_checked_by_reading_the_file_not_refetched(
    hub: LocalHub, weights: bytes, tmp_path: Path, hashed_by_reading: list[str], caplog: pytest.LogCaptureFixture
):
    """The follower hashed placeholder bytes that the writer then replaced: its hash disagrees, the file is right.

    The file is read once, found good, and kept: one transfer, no "failed verification".
    """
    writer = OutOfOrderWriterHub(hub.url, hashlib.sha256(weights).hexdigest())
    row = download_model(ModelEntry(REPO), tmp_path / "target", writer)
    assert row.status == "downloaded", row.error
    assert (model_path(tmp_path / "target", REPO) / WEIGHTS).read_bytes() == weights
    assert hub.transfers(REPO, WEIGHTS) == 1
    assert hashed_by_reading.count(WEIGHTS) == 1
    assert "failed verification" not in caplog.text
    assert "the hash taken during the download disagreed with the file, which is good" in caplog.text


def test_the_follower_reads_when_the_downloader_reports_bytes_not_by_polling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """A follower that polled its file would burn a core's worth of wake-ups on an idle transfer: it reads
    when a report says another block has arrived (the fallback wait made too long to matter here)."""
    monkeypatch.setattr(hashing, "FOLLOW_WAIT", 60.0)
    block = hashing.READ_BLOCK
    content = random_bytes(4 * block, 11)
    record = FileRecord(WEIGHTS, len(content), f"sha256:{hashlib.sha256(content).hexdigest()}")
    folder = tmp_path / DOWNLOADER_STATE / "huggingface" / "download"
    folder.mkdir(parents=True)
    incomplete = folder / f"weights.{record.hash.split(':')[1]}.0000beef.incomplete"
    empty_reads: list[int] = []  # offsets where the follower found no more bytes, and so went to wait
    buffers_used: list[object] = []  # kept alive: a freed buffer's id could be taken by the next one

    def preadv(fd: int, buffers: list[memoryview], offset: int) -> int:
        n = real_preadv(fd, buffers, offset)
        buffers_used.append(buffers[0].obj)
        if not n:
            empty_reads.append(offset)
        return n

    real_preadv = os.preadv
    monkeypatch.setattr(os, "preadv", preadv)  # the follower reads through os.preadv, into one buffer
    streamed = StreamingHash(tmp_path, record)
    with incomplete.open("wb") as f:
        f.write(content[: 3 * block])
        f.flush()
        # The first report (the file is there) before the follower starts: had it come while the follower
        # read, its wake-up could still be pending when the test writes on.
        streamed.saw(3 * block)
        with streamed:
            wait_until(lambda: 3 * block in empty_reads)  # it read all three blocks, found the end, and sleeps
            f.write(content[3 * block :])
            f.flush()
            time.sleep(0.3)  # unreported bytes: nothing wakes the follower
            assert streamed._read == 3 * block
            streamed.saw(block)
            wait_until(lambda: streamed._read == 4 * block)
    incomplete.replace(tmp_path / WEIGHTS)
    assert streamed.result(tmp_path / WEIGHTS) == record.hash
    assert all(b is buffers_used[0] for b in buffers_used), "a new buffer per block costs a page fault per 4 KiB"


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, "the follower never got there"
        time.sleep(0.005)
