"""The local hub honours the part of the Hub's protocol that the real huggingface_hub client relies on."""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import HfApi, snapshot_download
from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError
from huggingface_hub.hf_api import RepoFile

from local_hub.repos import random_bytes
from local_hub.server import LocalHub
from local_hub.xet import CHUNK_BYTES, chunk_header
from tests.conftest import SMALL, TOKENIZER, Repos, tree


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


# -- the Xet path -----------------------------------------------------------------------------------

XET_REPO = "Qwen/Xet-Contract"


@pytest.fixture
def xet_hub(tmp_path: Path) -> Iterator[LocalHub]:
    """Xet for every repo, with small xorbs so that one file spans several of them."""
    with LocalHub(tmp_path / "xet-hub", xet=True, chunks_per_xorb=5) as server:
        yield server


def xet_content() -> dict[str, bytes]:
    # 3 MB and a bit: 46 chunks in 10 xorbs, the last chunk short.
    return {"config.json": b'{"a": 1}', "model.safetensors": random_bytes(3 * CHUNK_BYTES * 15 + 12_345, 5)}


def test_hf_xet_downloads_byte_identical_files_through_the_cas(xet_hub: LocalHub, tmp_path: Path):
    content = xet_content()
    xet_hub.commit(XET_REPO, content)
    local = snapshot_download(
        XET_REPO, local_dir=tmp_path / "snap", endpoint=xet_hub.url, token=False, cache_dir=tmp_path / "cache"
    )
    files = {k: v for k, v in tree(Path(local)).items() if not k.startswith(".cache/")}
    assert files == content
    # The weights came through the CAS, the config over plain HTTP: as the real Hub serves them.
    assert xet_hub.count(kind="xet-read-token") == 1
    assert xet_hub.count(kind="reconstruction") >= 1
    assert xet_hub.count(kind="xorb") == 10
    resolved = [r.path for r in xet_hub.requests if r.kind == "resolve" and r.method == "GET"]
    assert resolved == ["config.json"]


def test_hub_answers_head_with_the_xet_hash_and_auth_link_only_for_xet_repos(hub: LocalHub, repos: Repos):
    hub.enable_xet(SMALL)
    for repo_id, expect_xet in ((SMALL, True), (TOKENIZER, False)):
        url = f"{hub.url}/{repo_id}/resolve/{repos.commits[repo_id]}/model.safetensors"
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD")) as response:  # 127.0.0.1 only
            assert ("X-Xet-Hash" in response.headers) is expect_xet
            if expect_xet:
                assert 'rel="xet-auth"' in response.headers["Link"]
                assert f"/api/models/{repo_id}/xet-read-token/" in response.headers["Link"]
    config = f"{hub.url}/{SMALL}/resolve/main/config.json"
    with urllib.request.urlopen(urllib.request.Request(config, method="HEAD")) as response:
        assert "X-Xet-Hash" not in response.headers  # small files stay plain, as on the Hub


def test_reconstruction_honours_range_and_needs_the_token(xet_hub: LocalHub, tmp_path: Path):
    content = xet_content()
    sha = xet_hub.commit(XET_REPO, content)
    token_url = f"{xet_hub.url}/api/models/{XET_REPO}/xet-read-token/{sha}"
    with urllib.request.urlopen(token_url) as response:  # 127.0.0.1 only
        cas, token = response.headers["X-Xet-Cas-Url"], response.headers["X-Xet-Access-Token"]
        assert int(response.headers["X-Xet-Token-Expiration"]) > 0
    head = urllib.request.Request(f"{xet_hub.url}/{XET_REPO}/resolve/{sha}/model.safetensors", method="HEAD")
    with urllib.request.urlopen(head) as response:
        file_hash = response.headers["X-Xet-Hash"]
    url = f"{cas}/v2/reconstructions/{file_hash}"

    with pytest.raises(urllib.error.HTTPError) as denied:
        urllib.request.urlopen(url)
    assert denied.value.code == 401

    start = 7 * CHUNK_BYTES + 100
    request = urllib.request.Request(
        url, headers={"Authorization": f"Bearer {token}", "Range": f"bytes={start}-{start + CHUNK_BYTES}"}
    )
    with urllib.request.urlopen(request) as response:
        body = json.loads(response.read())
    assert body["offset_into_first_range"] == 100
    assert [t["range"] for t in body["terms"]] == [{"start": 2, "end": 4}]  # chunks 7 and 8, in the second xorb
    fetch = body["xorbs"][body["terms"][0]["hash"]][0]
    byte_range = fetch["ranges"][0]["bytes"]
    ranged = urllib.request.Request(fetch["url"], headers={"Range": f"bytes={byte_range['start']}-{byte_range['end']}"})
    with urllib.request.urlopen(ranged) as response:  # presigned: no token
        xorb = response.read()
    assert xorb[:8] == chunk_header(CHUNK_BYTES)
    assert xorb[8 : 8 + CHUNK_BYTES] == content["model.safetensors"][7 * CHUNK_BYTES : 8 * CHUNK_BYTES]

    past_end = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}", "Range": "bytes=99999999-"})
    with pytest.raises(urllib.error.HTTPError) as beyond:
        urllib.request.urlopen(past_end)
    assert beyond.value.code == 416


def test_hf_xet_writes_a_corrupted_chunk_without_noticing(xet_hub: LocalHub, tmp_path: Path):
    """hf_xet 1.8 checks chunk headers and lengths, not hashes: a flipped data byte reaches the disk.

    This is why the cache hashes every Xet file itself; if a later hf_xet catches it, this test says so.
    """
    content = xet_content()
    xet_hub.commit(XET_REPO, content)
    xet_hub.corrupt(XET_REPO, "model.safetensors", times=1)
    local = snapshot_download(
        XET_REPO, local_dir=tmp_path / "snap", endpoint=xet_hub.url, token=False, cache_dir=tmp_path / "cache"
    )
    written = (Path(local) / "model.safetensors").read_bytes()
    expected = content["model.safetensors"]
    assert len(written) == len(expected)
    assert sum(a != b for a, b in zip(written, expected, strict=True)) == 1
