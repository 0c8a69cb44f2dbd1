"""The engine in-process: large files are hashed while they arrive, and that hash still catches damage."""

from __future__ import annotations

from pathlib import Path

import pytest

from local_hub.repos import random_bytes
from local_hub.server import LocalHub
from modal_jobs.backend import LocalBackend
from modal_jobs.engine import STREAM_HASH_MIN_BYTES
from modal_jobs.hub import Hub
from modal_jobs.model_list import ModelEntry, ModelList, VolumeSpec
from modal_jobs.operations import run
from modal_jobs.reader import model_path
from modal_jobs.request import Request
from modal_jobs.summary import ModelRow, Operation

REPO = "Qwen/Streamed"


def download_model(entry: ModelEntry, root: Path, hub: Hub) -> ModelRow:
    """Plan and apply one model on a local directory, as `python -m modal_jobs download` does."""
    model_list = ModelList(root / "models.toml", VolumeSpec(), (entry,))
    return run(Request(Operation.DOWNLOAD), model_list, LocalBackend(root, hub), hub).models[0]


@pytest.fixture
def files(hub: LocalHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, bytes]:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    content = {
        "config.json": b'{"a": 1}',
        "model.safetensors": random_bytes(STREAM_HASH_MIN_BYTES + 3_000_001, 7),
    }
    hub.commit(REPO, content)
    return content


def test_the_streamed_hash_catches_a_corrupt_transfer(
    hub: LocalHub, files: dict[str, bytes], tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    hub.corrupt(REPO, "model.safetensors", times=1)
    row = download_model(ModelEntry(REPO), tmp_path / "target", Hub(endpoint=hub.url))
    assert row.status == "downloaded", row.error
    assert "model.safetensors failed verification (sha256 mismatch); downloading it again" in caplog.text
    assert (model_path(tmp_path / "target", REPO) / "model.safetensors").read_bytes() == files["model.safetensors"]
    assert hub.count(kind="resolve", method="GET") == 3


def test_xet_progress_is_counted_once_and_never_raises():
    """huggingface_hub's Xet reporter drives the same counter; it must see each byte once, the rest when it closes."""
    from huggingface_hub.utils._xet_progress_reporting import XetDownloadProgressReporter

    from modal_jobs.progress import ByteReports, byte_counter

    counted: list[int] = []
    reporter = XetDownloadProgressReporter(
        reconstruction_desc="model.safetensors",
        total=100,
        log_level=20,
        tqdm_class=byte_counter(ByteReports(counted.append)),
    )

    class Report:
        total_bytes = 100
        total_bytes_completed = 60
        total_transfer_bytes_completed = 80
        total_bytes_completion_rate = 1.0
        total_transfer_bytes_completion_rate = 1.0

    reporter.update_progress(Report())
    assert counted == [60]  # the first report passes at once
    Report.total_bytes_completed = Report.total_transfer_bytes_completed = 100
    reporter.update_progress(Report())
    reporter.close()
    assert sum(counted) == 100


def test_a_restarted_transfer_is_hashed_again_from_disk(
    hub: LocalHub,
    files: dict[str, bytes],
    tmp_path: Path,
    hashed_by_reading: list[str],
    caplog: pytest.LogCaptureFixture,
):
    """A cut body is resumed with Range; a server that ignores Range makes the client start the file over.

    The hash taken while streaming saw the first attempt's bytes too, so it must not be trusted.
    """
    hub.corrupt(REPO, "model.safetensors", truncate=True, times=1)
    hub.ignore_ranges()
    row = download_model(ModelEntry(REPO), tmp_path / "target", Hub(endpoint=hub.url))
    assert row.status == "downloaded", row.error
    assert (model_path(tmp_path / "target", REPO) / "model.safetensors").read_bytes() == files["model.safetensors"]
    assert "model.safetensors" in hashed_by_reading
    assert "failed verification" not in caplog.text
    assert hub.count(kind="resolve", method="GET", repo_id=REPO) == 3  # config, the cut body, the restart
