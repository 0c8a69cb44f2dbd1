"""The Modal Volume backend, offline: a stand-in volume over a real directory, the real container bodies.

Every operation runs through `modal_jobs.operations.run` twice, once with `LocalBackend` on one
directory and once with the volume backend on an identical copy; the summaries must agree except
for the target string (`tests.twin_targets`). Containers are "started" in-process: the injected
starter (`tests.modal_stand_ins`) counts them and runs `apply_one`/`verify_one` through `.local()`
against the copy, with the plan the caller made.

Both targets hold the layout of `modal_jobs.model_dir`: per model a pointer (`.current.json`) naming
one of its `.revisions/<commit>/`, each with its manifest. What a reader loads is checked with
`modal_jobs.reader.model_path`, as an inference container would.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import modal
import modal.exception
import pytest

import modal_jobs.modal_app as jobs
from local_hub.server import LocalHub
from modal_jobs.deadlines import Deadlines
from modal_jobs.decide.facts import Kind
from modal_jobs.decide.model_plan import Action
from modal_jobs.download import make_plan
from modal_jobs.errors import Cancelled, TargetError
from modal_jobs.hub import Hub
from modal_jobs.modal_backend import ContainerJob, ModalBackend, ModalContainers, collect, hf_secrets
from modal_jobs.model_dir import DAMAGED_NAME, LOCK_NAME, MANIFEST_NAME, POINTER_NAME, REVISIONS_DIR
from modal_jobs.model_list import ModelList, VolumeSpec, parse_model_list
from modal_jobs.operations import run
from modal_jobs.publish import publish_model
from modal_jobs.reader import model_path
from modal_jobs.request import Request
from modal_jobs.store import LocalStore
from modal_jobs.summary import ModelRow, Operation, Status, human_bytes
from modal_jobs.volume import VolumeStore, require_credentials
from tests.conftest import BIG, MODEL_LIST, SMALL, TOKENIZER, Repos, assert_complete, model_dir, tree
from tests.modal_stand_ins import (
    MOUNT,
    DirVolume,
    FakeFunction,
    FinishedCall,
    Lines,
    NamedVolume,
    QueueLines,
    SlowCall,
    loadable,
)
from tests.twin_targets import Twins, stand_in

SMALL_DIR = "Qwen3-TTS-12Hz-0.6B-Base"
EXTRA = "Qwen/Qwen3-TTS-12Hz-1.7B-CustomVoice"  # in the list, never on the hub


def statuses(summary: dict[str, Any]) -> dict[str, str]:
    return {row["repo_id"]: row["status"] for row in summary["models"]}


@pytest.fixture
def twins(hub: LocalHub, repos: Repos, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Twins:
    """The twins over a list with EXTRA, which never resolves: its lock is never written, and every
    download asks the hub where its branches are."""
    model_list = parse_model_list(
        MODEL_LIST + f'\n[[model]]\nrepo_id = "{EXTRA}"\nsize = "1.7B"\n', tmp_path / "models.toml"
    )
    return stand_in(hub, tmp_path, monkeypatch, model_list)


# -- the same answers as the local backend ---------------------------------------------------


def test_download_agrees_with_the_local_backend_and_reruns_start_nothing(twins: Twins, repos: Repos):
    local, volume = twins.run("download")
    assert volume == local
    assert statuses(volume) == {BIG: "downloaded", SMALL: "downloaded", TOKENIZER: "downloaded", EXTRA: "failed"}
    assert "repository Qwen/Qwen3-TTS-12Hz-1.7B-CustomVoice not found" in volume["models"][3]["error"]
    # the model that failed to resolve was decided on this machine: three containers, not four
    assert sorted(repo for _, repo in twins.containers.started) == sorted([BIG, SMALL, TOKENIZER])
    assert without_times(tree(twins.volume_root)) == without_times(tree(twins.local_root))

    local, volume = twins.run("download", sizes=("0.6B",))
    assert volume == local
    assert set(statuses(volume).values()) == {"up-to-date"}
    assert twins.containers.count() == 3, "a complete volume starts no container"


def test_list_agrees_on_complete_incomplete_stale_missing_and_orphans(twins: Twins, hub: LocalHub):
    twins.run("download", sizes=("0.6B", "1.7B"))
    hub.commit(TOKENIZER, {"config.json": b"{}"})  # the Hub moved on

    def damage(root: Path) -> None:
        (model_dir(root, BIG) / MANIFEST_NAME).unlink()  # the current revision no longer vouches for itself
        (root / "old-model").mkdir()
        (root / "old-model" / "weights.bin").write_bytes(b"x" * 100)
        (root / "stray.txt").write_text("hello")

    twins.change(damage)
    local, volume = twins.run("list")
    assert volume == local
    assert statuses(volume) == {BIG: "incomplete", SMALL: "complete", TOKENIZER: "stale", EXTRA: "missing"}
    assert loadable(twins.volume_root) == [SMALL, TOKENIZER]
    assert [(o["name"], o["files"], o["bytes"]) for o in volume["orphans"]] == [
        ("old-model", 1, 100),
        ("stray.txt", 1, 5),
    ]


def test_only_stale_and_missing_models_start_containers(twins: Twins, hub: LocalHub, repos: Repos):
    twins.run("download", sizes=("0.6B",))
    started = twins.containers.count()
    hub.commit(SMALL, {**repos.files[SMALL], "extra.json": b"{}"})

    local, volume = twins.run("download", dry_run=True)
    assert volume == local
    assert not twins.model_list.path.with_suffix(".lock").exists(), "no lock holds SMALL at its old commit"
    assert statuses(volume) == {BIG: "fetch", SMALL: "fetch", TOKENIZER: "up-to-date", EXTRA: "failed"}
    assert twins.containers.count() == started, "a dry run starts no container"

    local, volume = twins.run("download")
    assert volume == local
    assert statuses(volume) == {BIG: "downloaded", SMALL: "downloaded", TOKENIZER: "up-to-date", EXTRA: "failed"}
    assert [repo for _, repo in twins.containers.started[started:]] == [BIG, SMALL]


def test_an_incomplete_model_is_repaired_in_its_container(twins: Twins, repos: Repos):
    twins.run("download", sizes=("0.6B",))
    twins.change(lambda root: (model_dir(root, SMALL) / MANIFEST_NAME).unlink())
    assert loadable(twins.volume_root) == [TOKENIZER]
    local, volume = twins.run("download", sizes=("0.6B",))
    assert volume == local
    assert statuses(volume) == {SMALL: "repaired", TOKENIZER: "up-to-date"}
    assert [repo for op, repo in twins.containers.started[-1:]] == [SMALL]
    assert_complete(twins.volume_root, SMALL, repos.files[SMALL])


@pytest.mark.parametrize(("operation", "others"), [("download", "downloaded"), ("verify", "ok")])
def test_a_container_that_crashes_fails_its_model_only_with_its_numbers(
    twins: Twins, repos: Repos, operation: str, others: str
):
    """A lost container's row carries the model's numbers (the plan's, or the manifest's), as a local failure does."""
    if operation == "verify":
        twins.run("download", sizes=("0.6B",))
    twins.containers.crash = {SMALL}
    summary = run(Request(Operation(operation), sizes=("0.6B",)), twins.model_list, twins.backends()[1], twins.hub)
    assert summary.exit_code == 1
    rows = {row.repo_id: row for row in summary.models}
    assert rows[SMALL].status == "failed"
    assert rows[SMALL].error == "container failed: RuntimeError: container exited with code 137"
    assert rows[TOKENIZER].status == others
    size = sum(len(b) for b in repos.files[SMALL].values())
    assert (rows[SMALL].commit, rows[SMALL].files, rows[SMALL].bytes) == (repos.commits[SMALL], 5, size)
    assert rows[SMALL].fetch_bytes == (size if operation == "download" else 0)


def test_verify_judges_every_model_of_the_list_and_reports_missing_ones_without_a_container(twins: Twins):
    twins.run("download", sizes=("0.6B",))

    def corrupt(root: Path) -> None:
        path = model_dir(root, SMALL) / "model.safetensors"
        data = bytearray(path.read_bytes())
        data[100] ^= 0xFF
        path.write_bytes(bytes(data))

    twins.change(corrupt)
    before = twins.containers.count("verify")
    local, volume = twins.run("verify", sizes=("1.7B",))
    assert volume == local
    assert statuses(volume) == {BIG: "missing", TOKENIZER: "ok", EXTRA: "missing"}
    assert twins.containers.count("verify") == before + 1  # only the tokenizer has a manifest to check
    assert volume["models"][0]["error"] == "missing: run download to fetch it"

    local, volume = twins.run("verify")  # no selection: every model of the list, present or not
    assert volume == local
    assert statuses(volume) == {BIG: "missing", SMALL: "damaged", TOKENIZER: "ok", EXTRA: "missing"}
    assert "model.safetensors (sha256 mismatch)" in volume["models"][1]["error"]
    # The damage is marked for the next download; readers keep the revision they have until then.
    for root in (twins.local_root, twins.volume_root):
        marked = json.loads((model_dir(root, SMALL) / DAMAGED_NAME).read_bytes())
        assert marked == {"damaged": ["model.safetensors"]}
        assert model_path(root, SMALL) == model_dir(root, SMALL)


def test_clear_refuses_without_yes_and_removes_one_model_with_it(twins: Twins, repos: Repos):
    twins.run("download", sizes=("0.6B",))
    snapshot = tree(twins.volume_root)
    local_error, volume_error = twins.error("clear")
    assert volume_error == local_error
    assert "clear would remove 2 directories" in volume_error
    assert tree(twins.volume_root) == snapshot

    local, volume = twins.run("clear", dry_run=True)
    assert volume == local
    assert set(statuses(volume).values()) == {"would-remove"}

    local, volume = twins.run("clear", repo_ids=(SMALL,), yes=True)
    assert volume == local
    assert statuses(volume) == {SMALL: "removed"}
    assert not (twins.volume_root / SMALL_DIR).exists()
    assert_complete(twins.volume_root, TOKENIZER, repos.files[TOKENIZER])


def test_clear_everything_never_follows_a_link(twins: Twins, tmp_path: Path):
    twins.run("download", sizes=("0.6B",))
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")

    def link(root: Path) -> None:
        (root / "linked-model").symlink_to(outside, target_is_directory=True)
        (root / "Qwen3-TTS-Tokenizer-12Hz" / "escape").symlink_to(outside, target_is_directory=True)

    twins.change(link)
    local, volume = twins.run("list")
    assert volume == local
    assert [(o["name"], o["files"], o["bytes"]) for o in volume["orphans"]] == [("linked-model", 1, 0)]

    local, volume = twins.run("clear", yes=True)
    assert volume == local
    assert sorted(os.listdir(twins.volume_root)) == []
    assert (outside / "keep.txt").read_text() == "mine"


def test_a_linked_model_directory_is_not_trusted(twins: Twins, tmp_path: Path):
    """A complete model reached through a link is neither listed complete nor written through."""
    twins.run("download", sizes=("0.6B",))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def relink(root: Path) -> None:
        target = elsewhere / root.name
        shutil.move(root / "Qwen3-TTS-12Hz-0.6B-Base", target)
        (root / "Qwen3-TTS-12Hz-0.6B-Base").symlink_to(target, target_is_directory=True)

    twins.change(relink)
    local, volume = twins.run("list", sizes=("0.6B",))
    assert volume == local
    assert statuses(volume)[SMALL] == "failed"
    assert "is a symlink, not a directory" in volume["models"][0]["error"]
    local, volume = twins.run("download", sizes=("0.6B",))
    assert volume == local
    assert "is a symlink" in volume["models"][0]["error"]


def test_a_link_standing_for_the_manifest_is_not_read(twins: Twins, tmp_path: Path):
    twins.run("download", sizes=("0.6B",))
    manifest = model_dir(twins.volume_root, SMALL) / MANIFEST_NAME
    (tmp_path / "forged.json").write_bytes(manifest.read_bytes())
    manifest.unlink()
    manifest.symlink_to(tmp_path / "forged.json")
    volume = DirVolume(twins.volume_root)
    store = VolumeStore(volume, VolumeSpec(mount=MOUNT))
    current = store.held(SMALL_DIR, Kind.DIRECTORY).current
    assert current is not None and current.manifest is None and not current.complete
    assert ("read_file", manifest.relative_to(twins.volume_root).as_posix()) not in volume.calls
    assert ("read_file", f"{SMALL_DIR}/{POINTER_NAME}") in volume.calls


# -- planning without the volume --------------------------------------------------------------


def test_a_missing_volume_holds_nothing_and_verify_fails_every_model_missing(twins: Twins, tmp_path: Path):
    store = VolumeStore(DirVolume(tmp_path / "no-such-volume"), VolumeSpec(name="qwen3-tts-models", mount=MOUNT))
    started: list[str] = []

    def start(operation: str, jobs_: Sequence[ContainerJob], cancel: threading.Event) -> list[ModelRow]:
        started.extend(job.label for job in jobs_)
        return [replace(job.lost, status=Status.DOWNLOADED, error=None) for job in jobs_]

    backend = ModalBackend(store, start, twins.lease())
    run(Request(Operation.DOWNLOAD), twins.model_list, backend, twins.hub)
    assert started == [BIG, SMALL, TOKENIZER]  # everything needs work; the app created the volume

    listed = run(Request(Operation.LIST), twins.model_list, backend, twins.hub)
    assert {row.status for row in listed.models} == {"missing"}
    assert run(Request(Operation.CLEAR, yes=True), twins.model_list, backend, twins.hub).models == ()
    started.clear()
    verified = run(Request(Operation.VERIFY), twins.model_list, backend, twins.hub)
    assert verified.exit_code == 1
    assert {row.repo_id: row.status for row in verified.models} == {
        BIG: "missing",
        SMALL: "missing",
        TOKENIZER: "missing",
        EXTRA: "missing",
    }
    assert (
        verified.note
        == "the Modal Volume 'qwen3-tts-models' does not exist (check MODAL_ENVIRONMENT); verify created nothing"
    )
    assert started == []
    assert not (tmp_path / "no-such-volume").exists()


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (modal.exception.ConnectionError("Could not connect to the Modal server."), "cannot reach Modal"),
        (modal.exception.AuthError("Token ak-x is invalid"), "Modal refused the credentials"),
    ],
)
def test_modal_problems_are_one_line_before_anything_starts(tmp_path: Path, failure: Exception, expected: str):
    model_list = parse_model_list(MODEL_LIST)
    hub = Hub(endpoint="http://127.0.0.1:9")  # never asked: the volume fails first

    def start(*_: object) -> list[ModelRow]:
        raise AssertionError("no container may start")

    backend = ModalBackend(VolumeStore(DirVolume(tmp_path, fail_with=failure), model_list.volume), start)
    for operation in ("download", "list", "clear"):
        with pytest.raises(TargetError, match=expected) as caught:
            run(Request(Operation(operation)), model_list, backend, hub)
        assert "\n" not in str(caught.value)
        assert caught.value.exit_code == 2


def test_credentials_are_checked_from_modal_config_without_the_network():
    with pytest.raises(TargetError, match=r"run `modal setup` \(or set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET\)"):
        require_credentials({})
    with pytest.raises(TargetError):
        require_credentials({"token_id": "ak-1"})
    require_credentials({"token_id": "ak-1", "token_secret": "as-1"})
    require_credentials({"oauth_refresh_token": "r", "oauth_client_id": "c"})


# -- collecting container results -------------------------------------------------------------


def container_jobs(*repo_ids: str) -> list[ContainerJob]:
    return [
        ContainerJob(repo_id, {"repo_id": repo_id}, ModelRow(repo_id, f"{MOUNT}/{name}", Status.FAILED))
        for repo_id, name in ((r, r.split("/")[1]) for r in repo_ids)
    ]


def test_a_container_that_raises_becomes_one_failed_row():
    ok = ModelRow(SMALL, f"{MOUNT}/Qwen3-TTS-12Hz-0.6B-Base", Status.DOWNLOADED, "a" * 40, 5, 10)
    calls = [
        FinishedCall(error=modal.exception.FunctionTimeoutError("Function timed out after 3600s")),
        FinishedCall(value=ok.__dict__),
        FinishedCall(error=TimeoutError("read timed out")),
    ]
    rows = collect(calls, container_jobs(BIG, SMALL, TOKENIZER), threading.Event())
    assert [row.status for row in rows] == ["failed", "downloaded", "failed"]
    assert rows[0].error == "container failed: FunctionTimeoutError: Function timed out after 3600s"
    assert rows[0].path == f"{MOUNT}/Qwen3-TTS-12Hz-1.7B-Base"
    assert rows[1] == ok
    assert rows[2].error == "container failed: TimeoutError: read timed out"


def test_calls_still_running_are_polled_until_they_answer():
    rows = [ModelRow(r, f"{MOUNT}/{r.split('/')[1]}", Status.DOWNLOADED) for r in (BIG, SMALL)]
    calls = [SlowCall(rows[0], pending=3), SlowCall(rows[1], pending=1)]
    assert collect(calls, container_jobs(BIG, SMALL), threading.Event()) == rows


def test_cancel_stops_the_containers_still_running():
    calls = [SlowCall(ModelRow(BIG, "", Status.DOWNLOADED), pending=1_000)]
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled) as stopped:
        collect(calls, container_jobs(BIG), cancel)
    assert calls[0].cancelled
    assert stopped.value.done == ()  # no container had answered: the operation's line says so


# -- the real starter, with the app and functions stood in --------------------------------------


def starter(log: list[str], model_list: ModelList, **options: Any) -> ModalContainers:
    return ModalContainers(model_list, NamedVolume(model_list.volume.name), open_lines=Lines(log).open, **options)


def test_the_starter_runs_one_container_per_model_inside_one_app(fake_app: list[str], monkeypatch):
    secret = "hf_" + "t0k3n" * 6
    monkeypatch.setenv("HF_TOKEN", secret)
    model_list = parse_model_list(
        MODEL_LIST.replace("qwen3-tts-models", "voices").replace("/vol/models", "/vol/voices")
    )
    rows = starter(fake_app, model_list)("download", container_jobs(SMALL, TOKENIZER), threading.Event())
    assert [row.repo_id for row in rows] == [SMALL, TOKENIZER]
    # The volume and mount come from the list this run loaded, attached per call: nothing read at import.
    assert fake_app == [
        "app.run",
        "queue open",
        f"spawn apply_one {SMALL} at /vol/voices volumes={{'/vol/voices': 'Volume(voices)'}} "
        "secrets=['Secret.from_dict([HF_TOKEN])']",
        f"spawn apply_one {TOKENIZER} at /vol/voices volumes={{'/vol/voices': 'Volume(voices)'}} "
        "secrets=['Secret.from_dict([HF_TOKEN])']",
        "queue closed",
        "app stopped",
    ]
    assert secret not in "".join(fake_app)


def test_containers_get_this_runs_hub_address_and_time_limits(fake_app: list[str], monkeypatch):
    """A container's engine must talk to the Hub the plan was made from, within the limits the run was given."""
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr("modal_jobs.modal_backend._named_secret", lambda name: None)
    hub = Hub(endpoint="http://127.0.0.1:9", deadlines=Deadlines(stall_seconds=30.0, connect_seconds=5.0))
    starter(fake_app, parse_model_list(MODEL_LIST), env=hub.container_env())(
        "download", container_jobs(SMALL), threading.Event()
    )
    (options,) = cast(FakeFunction, jobs.apply_one).configured
    assert options["env"] == {
        "HF_ENDPOINT": "http://127.0.0.1:9",
        "MODEL_CACHE_STALL_TIMEOUT": "30.0",
        "MODEL_CACHE_CONNECT_TIMEOUT": "5.0",
    }
    assert Deadlines.from_env(options["env"]) == hub.deadlines


def test_under_modal_run_the_starter_uses_the_running_app(fake_app: list[str], monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr("modal_jobs.modal_backend._named_secret", lambda name: None)  # no huggingface-secret either
    model_list = parse_model_list(MODEL_LIST)
    starter(fake_app, model_list, app_running=True)("download", container_jobs(SMALL), threading.Event())
    starter(fake_app, model_list, app_running=True)("verify", container_jobs(SMALL), threading.Event())
    volumes = "{'/vol/models': 'Volume(qwen3-tts-models)'}"
    assert [line for line in fake_app if line.startswith("spawn")] == [
        f"spawn apply_one {SMALL} at /vol/models volumes={volumes} secrets=[]",
        f"spawn verify_one {SMALL} at /vol/models volumes={volumes} secrets=[]",
    ]
    assert "app.run" not in fake_app


def test_the_hub_token_comes_from_here_else_the_named_secret_else_nowhere():
    named = modal.Secret.from_dict({"HF_TOKEN": "unused"})
    asked: list[str] = []

    def find(name: str) -> modal.Secret | None:
        asked.append(name)
        return named

    token = "hf_" + "x" * 30
    (secret,) = hf_secrets({"HF_TOKEN": token}, "huggingface-secret", find)
    assert token not in repr(secret)
    assert asked == []
    assert hf_secrets({}, "huggingface-secret", find) == [named]
    assert asked == ["huggingface-secret"]
    assert hf_secrets({"HF_TOKEN": ""}, "huggingface-secret", lambda name: None) == []


# -- the container bodies, in-process --------------------------------------------------------


def test_apply_one_writes_its_model_and_commits_after_the_manifest(twins: Twins, repos: Repos):
    recorder = twins.containers.recorder
    model_list = parse_model_list(
        MODEL_LIST.replace(f'repo_id = "{SMALL}"', f'repo_id = "{SMALL}"\ninclude = ["*.json", "*.safetensors"]')
    )
    plan = make_plan(
        [model_list.models[1]], model_list, LocalStore(twins.volume_root), twins.hub, threading.Event(), prune=False
    )
    (model,) = plan.models
    assert model.action is Action.FETCH
    row = jobs.apply_one.local(model.to_wire(), str(twins.volume_root), cast(Any, recorder), None)
    assert row["status"] == "downloaded"
    assert row["commit"] == repos.commits[SMALL]
    assert row["path"] == str(twins.volume_root / SMALL_DIR)
    assert recorder.events == ["reload", "commit"]
    assert recorder.loadable_at_commit == [[]], "the container commits the revision; no pointer names it yet"
    assert not (twins.volume_root / SMALL_DIR / POINTER_NAME).exists()

    volume = DirVolume(twins.volume_root)
    publish_model(model, VolumeStore(volume, VolumeSpec(mount=MOUNT)))
    assert [call for call, _ in volume.calls if call not in ("listdir", "read_file")] == ["batch_upload", "put_file"]
    assert_complete(twins.volume_root, SMALL, repos.files[SMALL])
    found = model_path(twins.volume_root, SMALL, repos.commits[SMALL])
    assert found == twins.volume_root / SMALL_DIR / REVISIONS_DIR / repos.commits[SMALL]
    assert json.loads((found / MANIFEST_NAME).read_bytes())["include"] == ["*.json", "*.safetensors"]
    assert [p.name for p in twins.volume_root.iterdir()] == [SMALL_DIR]
    assert sorted(p.name for p in (twins.volume_root / SMALL_DIR).iterdir()) == [POINTER_NAME, REVISIONS_DIR]


def test_verify_one_reloads_before_hashing_and_commits_what_it_found(twins: Twins):
    recorder = twins.containers.recorder
    twins.run("download", sizes=("0.6B",))
    recorder.events.clear()
    entry = {"repo_id": TOKENIZER, "size": None, "revision": "main", "include": None, "exclude": None}
    row = jobs.verify_one.local(entry, str(twins.volume_root), cast(Any, recorder), None)
    assert row["status"] == "ok"
    assert recorder.events == ["reload", "commit"]


def without_times(files: dict[str, bytes]) -> dict[str, object]:
    """Trees compared with each manifest's completion time and the local run's lock file left out."""
    out: dict[str, object] = {}
    for path, data in files.items():
        if path == LOCK_NAME:
            continue
        if path.endswith(MANIFEST_NAME):
            manifest = json.loads(data)
            manifest.pop("completed_at")
            out[path] = manifest
        else:
            out[path] = data
    return out


# -- plan and apply, pruning, the plan's commit ------------------------------------------------


def plant_dropped_model(root: Path, twins: Twins) -> None:
    """A model the cache wrote for a repo the list no longer names, and a directory it never wrote."""
    source = twins.local_root if root == twins.volume_root else twins.volume_root
    shutil.copytree(source / "Qwen3-TTS-Tokenizer-12Hz", root / "Old-Voice")
    for ours in [root / "Old-Voice" / POINTER_NAME, *(root / "Old-Voice").glob(f"{REVISIONS_DIR}/*/{MANIFEST_NAME}")]:
        ours.write_text(ours.read_text().replace(TOKENIZER, "Qwen/Old-Voice"))
    model_path(root, "Qwen/Old-Voice")  # a model a reader loads, of a repo the list no longer names
    (root / "notes").mkdir()
    (root / "notes" / "readme.txt").write_text("kept by hand")


def test_prune_removes_only_dropped_models_and_agrees_on_both_targets(twins: Twins, repos: Repos):
    twins.model_list = parse_model_list(
        MODEL_LIST, twins.model_list.path
    )  # every model of the list resolves: a prune may run
    twins.run("download", sizes=("0.6B",))
    twins.change(lambda root: plant_dropped_model(root, twins))

    local, volume = twins.run("download", sizes=("0.6B",))
    assert volume == local
    assert [(o["name"], o["repo_id"]) for o in volume["orphans"]] == [("Old-Voice", "Qwen/Old-Voice"), ("notes", None)]
    assert (twins.volume_root / "Old-Voice").exists()

    local, volume = twins.run("download", sizes=("0.6B",), dry_run=True, prune=True)
    assert volume == local
    assert statuses(volume)["Qwen/Old-Voice"] == "prune"
    assert (twins.volume_root / "Old-Voice").exists(), "a dry run removes nothing"

    local, volume = twins.run("download", sizes=("0.6B",), prune=True)
    assert volume == local
    pruned = next(row for row in volume["models"] if row["repo_id"] == "Qwen/Old-Voice")
    assert pruned["status"] == "pruned"
    assert (pruned["files"], pruned["bytes"]) == (  # the model's files, not the pointer and manifest
        len(repos.files[TOKENIZER]),
        sum(len(b) for b in repos.files[TOKENIZER].values()),
    )
    assert [(o["name"], o["repo_id"]) for o in volume["orphans"]] == [("notes", None)]
    for root in (twins.local_root, twins.volume_root):
        assert not (root / "Old-Voice").exists()
        assert (root / "notes" / "readme.txt").read_text() == "kept by hand"


@pytest.mark.parametrize("sizes", [(), ("0.6B",)], ids=["everything", "a selection without the broken model"])
def test_prune_never_runs_when_a_model_of_the_list_fails(twins: Twins, sizes: tuple[str, ...]):
    """A typo anywhere in the list must not make a listed model look dropped, whatever the selection."""
    twins.run("download", sizes=("0.6B",))
    twins.change(lambda root: plant_dropped_model(root, twins))
    local, volume = twins.run("download", sizes=sizes, prune=True)  # EXTRA (1.7B) is not on the hub
    assert volume == local
    assert "Qwen/Old-Voice" not in statuses(volume)
    assert volume["note"] == f"not pruning: {EXTRA} did not resolve; fix the model list and run again"
    assert [(o["name"], o["repo_id"]) for o in volume["orphans"]] == [("Old-Voice", "Qwen/Old-Voice"), ("notes", None)]
    assert "Qwen/Old-Voice" in loadable(twins.volume_root)


def test_prune_never_runs_after_a_model_of_the_run_failed(twins: Twins):
    twins.model_list = parse_model_list(MODEL_LIST, twins.model_list.path)
    twins.run("download", sizes=("0.6B",))
    twins.change(lambda root: plant_dropped_model(root, twins))
    twins.containers.crash = {BIG}
    summary = run(Request(Operation.DOWNLOAD, prune=True), twins.model_list, twins.backends()[1], twins.hub)
    assert {row.repo_id: row.status for row in summary.models} == {
        BIG: "failed",
        SMALL: "up-to-date",
        TOKENIZER: "up-to-date",
    }
    assert summary.note == "not pruning: a model of this run failed; fix it and run again"
    assert [(o.name, o.repo_id) for o in summary.orphans] == [("Old-Voice", "Qwen/Old-Voice"), ("notes", None)]
    assert "Qwen/Old-Voice" in loadable(twins.volume_root)


def test_the_container_writes_the_commit_the_plan_chose(twins: Twins, hub: LocalHub, repos: Repos):
    """The revision moves between planning and the container's start: what lands is what was planned."""
    planned = repos.commits[SMALL]
    moved: list[str] = []

    def move_main() -> None:
        moved.append(hub.commit(SMALL, {**repos.files[SMALL], "config.json": b'{"moved": true}'}))

    twins.containers.before_start = move_main
    backend = twins.backends()[1]
    summary = run(Request(Operation.DOWNLOAD, sizes=("0.6B",)), twins.model_list, backend, twins.hub)
    assert moved and moved[0] != planned
    assert {row.repo_id: row.commit for row in summary.models}[SMALL] == planned
    assert model_path(twins.volume_root, SMALL, planned) == twins.volume_root / SMALL_DIR / REVISIONS_DIR / planned
    assert_complete(twins.volume_root, SMALL, repos.files[SMALL])
    # The container never resolved the revision: one resolve per model, made on this machine.
    assert hub.count(kind="revision", repo_id=SMALL) == 1


def test_modal_round_trips_are_one_lookup_one_root_listing_and_per_model_one_listing_and_its_small_files(
    twins: Twins, repos: Repos
):
    """A run makes 1 lookup and 1 root listing; per model, 1 recursive listing and 1 read for each
    pointer, manifest and damage mark it holds. The weights are never read, and nothing is listed twice."""
    twins.run("download")
    models = {BIG: "Qwen3-TTS-12Hz-1.7B-Base", SMALL: SMALL_DIR, TOKENIZER: "Qwen3-TTS-Tokenizer-12Hz"}
    (model_dir(twins.volume_root, SMALL) / DAMAGED_NAME).write_text('{"damaged": ["config.json"]}\n')
    small_files = [
        f"{name}/{REVISIONS_DIR}/{repos.commits[repo_id]}/{ours}"
        for repo_id, name in models.items()
        for ours in ([MANIFEST_NAME, DAMAGED_NAME] if repo_id == SMALL else [MANIFEST_NAME])
    ] + [f"{name}/{POINTER_NAME}" for name in models.values()]
    volume = DirVolume(twins.volume_root)
    backend = ModalBackend(VolumeStore(volume, VolumeSpec(mount=MOUNT)), twins.containers, twins.lease())
    run(Request(Operation.LIST), twins.model_list, backend, twins.hub)
    assert volume.calls.count(("hydrate", "")) == 1
    assert volume.calls.count(("listdir", "/")) == 1
    assert sorted(path for call, path in volume.calls if call == "listdir" and path != "/") == sorted(models.values())
    assert sorted(path for call, path in volume.calls if call == "read_file") == sorted(small_files)
    assert len(volume.calls) == 2 + len(models) + len(small_files), volume.calls

    volume.calls.clear()
    backend = ModalBackend(VolumeStore(volume, VolumeSpec(mount=MOUNT)), twins.containers, twins.lease())
    summary = run(Request(Operation.DOWNLOAD), twins.model_list, backend, twins.hub)
    assert {row.repo_id: row.status for row in summary.models}[SMALL] == "repaired", "the mark was read"
    # The repaired model is published from here: 1 listing, its small files (now with the new manifest), 1 upload.
    publish = [("listdir", SMALL_DIR)] + [("read_file", p) for p in small_files if p.startswith(SMALL_DIR)]
    publish += [
        ("read_file", f"{SMALL_DIR}/{REVISIONS_DIR}/{model_dir(twins.volume_root, SMALL).name}/{MANIFEST_NAME}")
    ]
    publish += [("batch_upload", ""), ("put_file", f"{SMALL_DIR}/{POINTER_NAME}")]
    assert len(volume.calls) == 2 + len(models) + len(small_files) + len(publish), volume.calls
    assert sorted(volume.calls[-len(publish) :]) == sorted(publish)

    volume.calls.clear()
    backend = ModalBackend(VolumeStore(volume, VolumeSpec(mount=MOUNT)), twins.containers, twins.lease())
    summary = run(Request(Operation.VERIFY), twins.model_list, backend, twins.hub)
    assert {row.repo_id: row.status for row in summary.models} == {
        BIG: "ok",
        SMALL: "ok",
        TOKENIZER: "ok",
        EXTRA: "missing",
    }
    assert volume.calls.count(("listdir", "/")) == 1
    assert sorted(path for call, path in volume.calls if call == "listdir" and path != "/") == sorted(models.values())
    # the repair wrote a new revision: one more manifest, and the old one kept with its mark
    assert len([call for call, _ in volume.calls if call == "read_file"]) == len(small_files) + 1, volume.calls


def test_container_log_lines_are_printed_as_they_arrive(caplog: pytest.LogCaptureFixture):
    lines = [
        f"{SMALL}: fetching 5 file(s), 2.3 GiB",
        f"{SMALL}: 1.1 GiB of 2.3 GiB (180.2 MiB/s)",
        f"{SMALL}: finished, 2.3 GiB transferred in 13.1s (179.6 MiB/s)",
    ]
    source = Lines([], lines)
    row = ModelRow(SMALL, f"{MOUNT}/Qwen3-TTS-12Hz-0.6B-Base", Status.DOWNLOADED)
    with caplog.at_level(logging.INFO, logger="modal_jobs"):
        collect([SlowCall(row, pending=2)], container_jobs(SMALL), threading.Event(), source)
    assert caplog.messages == [*lines, f"{SMALL}: downloaded"]


def test_a_container_sends_start_progress_and_finish_lines_to_the_caller(
    twins: Twins, hub: LocalHub, repos: Repos, monkeypatch: pytest.MonkeyPatch
):
    """Progress reaches the caller while bytes flow: a line every MODEL_CACHE_PROGRESS_SECONDS, not one per chunk."""
    monkeypatch.setenv("MODEL_CACHE_PROGRESS_SECONDS", "0.3")
    size = len(repos.files[SMALL]["model.safetensors"]) + len(repos.files[SMALL]["speech_tokenizer/model.safetensors"])
    hub.throttle(size // 3)  # about three seconds of transfer
    model_list = parse_model_list(MODEL_LIST)
    plan = make_plan(
        [model_list.models[1]], model_list, LocalStore(twins.volume_root), twins.hub, threading.Event(), prune=False
    )
    events = QueueLines()
    row = jobs.apply_one.local(
        plan.models[0].to_wire(), str(twins.volume_root), cast(Any, twins.containers.recorder), cast(Any, events)
    )
    assert row["status"] == "downloaded"
    assert events.lines[0] == f"{SMALL}: fetching 5 file(s), {human_bytes(row['bytes'])}"
    progress = [line for line in events.lines if " of " in line and line.endswith("/s)")]
    assert 3 <= len(progress) <= 30, events.lines
    assert events.lines[-1].startswith(f"{SMALL}: finished, {human_bytes(row['bytes'])} transferred in ")
