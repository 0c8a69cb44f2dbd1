"""`path REPO_ID`: the directory a reader loads, on the volume (through Modal's API, no container) or `--local-dir`."""

from __future__ import annotations

from pathlib import Path

import pytest

from local_hub.server import LocalHub
from modal_jobs.cli import volume_path
from modal_jobs.errors import UsageError
from modal_jobs.model_list import VolumeSpec, parse_model_list
from modal_jobs.operations import run
from modal_jobs.reader import ModelNotReady, model_path
from modal_jobs.request import Request
from modal_jobs.summary import Operation
from modal_jobs.volume import VolumeStore
from tests.conftest import BIG, MODEL_LIST, SMALL, Cli, Repos, model_dir, tree
from tests.modal_stand_ins import MOUNT, DirVolume
from tests.twin_targets import stand_in


def store(root: Path) -> tuple[VolumeStore, DirVolume]:
    volume = DirVolume(root)
    return VolumeStore(volume, VolumeSpec(mount=MOUNT)), volume


def refusal(root: Path, repo_id: str, commit: str | None = None) -> str:
    with pytest.raises(ModelNotReady) as refused:
        volume_path(store(root)[0], repo_id, commit)
    return str(refused.value)


def test_path_on_the_volume_is_what_the_reader_returns_in_a_container(
    hub: LocalHub, repos: Repos, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    twins = stand_in(hub, tmp_path, monkeypatch, parse_model_list(MODEL_LIST, tmp_path / "models.toml"))
    run(Request(Operation.DOWNLOAD, sizes=("0.6B",)), twins.model_list, twins.backends()[1], twins.hub)
    root = twins.volume_root
    before = tree(root)
    volume_store, volume = store(root)

    found = volume_path(volume_store, SMALL, None)

    # Inside a container the volume is mounted at MOUNT: the reader there would return this very path.
    assert found == str(model_path(root, SMALL)).replace(str(root), MOUNT)
    assert found == f"{MOUNT}/Qwen3-TTS-12Hz-0.6B-Base/.revisions/{repos.commits[SMALL]}"
    assert volume_path(store(root)[0], SMALL, repos.commits[SMALL]) == found
    assert {call for call, _ in volume.calls} <= {"hydrate", "listdir", "read_file"}
    assert tree(root) == before  # read through the API, nothing written

    assert refusal(root, BIG) == (
        f"{BIG}: absent ({MOUNT}/Qwen3-TTS-12Hz-1.7B-Base is not a model directory); "
        "run `python3 tools/nox_locked.py -s download` to cache it"
    )
    asked = "0" * 40
    assert refusal(root, SMALL, asked).startswith(
        f"{SMALL}: {MOUNT}/Qwen3-TTS-12Hz-0.6B-Base holds commit {repos.commits[SMALL][:12]}, not {asked[:12]} as asked"
    )
    (model_dir(root, SMALL) / "model.safetensors").unlink()
    assert refusal(root, SMALL) == (
        f"{SMALL}: incomplete at {MOUNT}/Qwen3-TTS-12Hz-0.6B-Base: model.safetensors is missing or resized; "
        "run `python3 tools/nox_locked.py -s download` to repair it"
    )


def test_path_on_a_volume_that_does_not_exist_is_not_ready_and_creates_nothing(tmp_path: Path):
    said = refusal(tmp_path / "no-such-volume", SMALL)
    assert said.startswith(f"{SMALL}: absent: the Modal Volume 'qwen3-tts-models' does not exist")
    assert not (tmp_path / "no-such-volume").exists()


@pytest.mark.parametrize("repo_id", ["../etc", "Qwen/../x", "no-owner"])
def test_a_repo_id_that_could_leave_the_volume_is_refused(tmp_path: Path, repo_id: str):
    volume_store, volume = store(tmp_path)
    with pytest.raises(UsageError, match="is not a repo id"):
        volume_path(volume_store, repo_id, None)
    assert volume.calls == []


def test_path_without_local_dir_asks_modal_not_a_local_directory(cli: Cli, repos: Repos, tmp_path: Path):
    """On a laptop with no Modal credentials, `path` says so (exit 2), rather than reading a local /vol/models."""
    result = cli("path", SMALL, local=False, env={"MODAL_CONFIG_PATH": str(tmp_path / "no-modal.toml")})
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("error: no Modal credentials found; run `modal setup`"), result.stderr

    assert cli("download", "--model-size", "0.6B").returncode == 0
    result = cli("path", SMALL)  # --local-dir: the reader itself
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{model_dir(cli.target, SMALL)}\n"
