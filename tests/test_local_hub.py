"""The local hub honours the part of the Hub's protocol that the real huggingface_hub client relies on."""

from __future__ import annotations

import hashlib
import urllib.request
from pathlib import Path

import pytest
from huggingface_hub import HfApi, snapshot_download
from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError
from huggingface_hub.hf_api import RepoFile

from tests.conftest import SMALL, Repos, tree
from tests.local_hub import LocalHub


def test_revision_and_tree_match_the_commit(hub: LocalHub, repos: Repos):
    api = HfApi(endpoint=hub.url, token=False)
    assert api.model_info(SMALL, revision="main").sha == repos.commits[SMALL]
    files = {
        f.path: f
        for f in api.list_repo_tree(SMALL, revision=repos.commits[SMALL], recursive=True)
        if isinstance(f, RepoFile)
    }
    assert set(files) == set(repos.files[SMALL])
    weights = repos.files[SMALL]["model.safetensors"]
    assert files["model.safetensors"].lfs is not None
    assert files["model.safetensors"].lfs.sha256 == hashlib.sha256(weights).hexdigest()
    config = repos.files[SMALL]["config.json"]
    assert files["config.json"].lfs is None
    assert (
        files["config.json"].blob_id
        == hashlib.sha1(b"blob %d\0" % len(config) + config, usedforsecurity=False).hexdigest()
    )


def test_snapshot_download_is_byte_identical(hub: LocalHub, repos: Repos, tmp_path: Path):
    local = snapshot_download(
        SMALL, local_dir=tmp_path / "snap", endpoint=hub.url, token=False, cache_dir=tmp_path / "cache"
    )
    files = {k: v for k, v in tree(Path(local)).items() if not k.startswith(".cache/")}
    assert files == repos.files[SMALL]
    assert hub.count(kind="resolve", method="GET") == len(repos.files[SMALL])


def test_range_requests_and_old_commits(hub: LocalHub, repos: Repos):
    url = f"{hub.url}/{SMALL}/resolve/{repos.commits[SMALL]}/model.safetensors"
    request = urllib.request.Request(url, headers={"Range": "bytes=10-19"})
    with urllib.request.urlopen(request) as response:  # 127.0.0.1 only
        assert response.status == 206
        assert response.read() == repos.files[SMALL]["model.safetensors"][10:20]
    new = hub.commit(SMALL, {"config.json": b"{}"})
    api = HfApi(endpoint=hub.url, token=False)
    assert api.model_info(SMALL, revision="main").sha == new
    assert api.model_info(SMALL, revision=repos.commits[SMALL]).sha == repos.commits[SMALL]


def test_unknown_repo_and_revision_raise_the_clients_own_errors(hub: LocalHub, repos: Repos):
    api = HfApi(endpoint=hub.url, token=False)
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("Qwen/Nope", revision="main")
    with pytest.raises(RevisionNotFoundError):
        api.model_info(SMALL, revision="v9")
