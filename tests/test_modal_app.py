"""The Modal app's configuration and entry points, checked offline: Modal's servers are never reached.

The functions are read through `Function.info()`, which a locally defined function answers without
hydration. The image is read layer by layer from its definition: modal keeps no public description
of an unbuilt image, so `image_layers` walks the lazy loaders (pinned: modal>=1.6,<1.7).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from modal._utils.async_utils import synchronizer
from modal.types import VolumeMountInfo

import modal_jobs.download_models as jobs
import modal_jobs.volume
from modal_jobs.catalog import Catalog, ModelEntry, load_catalog
from modal_jobs.hub import Hub
from modal_jobs.summary import ModelRow
from modal_jobs.volume import ModalBackend, VolumeStore
from tests.conftest import BIG, ROOT, SMALL, TOKENIZER, Repos
from tests.local_hub import LocalHub, hub_env
from tests.test_volume import DirVolume

MODAL = Path(sys.executable).parent / "modal"  # the modal CLI of the environment running the tests
TOKEN = "hf_" + "d0n0tpr1nt" * 4

# Loaded by every child process: any attempt to resolve a name or open a connection is recorded and refused.
NO_NETWORK = """
import os, socket
def _refuse(*args, **kwargs):
    with open(os.environ["NETWORK_ATTEMPTS"], "a") as f:
        f.write(repr(args[:2]) + "\\n")
    raise OSError("network disabled by the test")
socket.socket.connect = _refuse
socket.socket.connect_ex = _refuse
socket.getaddrinfo = _refuse
socket.create_connection = _refuse
"""


@dataclass
class Offline:
    """A child-process environment: empty HOME, no MODAL_*/HF_* variables, no network."""

    env: dict[str, str]
    attempts: Path

    def run(self, *argv: str | Path, extra: dict[str, str] | None = None, timeout: float = 60) -> Result:
        started = time.monotonic()
        result = subprocess.run(
            [str(a) for a in argv],
            env={**self.env, **(extra or {})},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        attempts = self.attempts.read_text() if self.attempts.exists() else ""
        return Result(result.returncode, result.stdout, result.stderr, attempts, time.monotonic() - started)


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    network_attempts: str
    seconds: float


@pytest.fixture
def offline(tmp_path: Path) -> Offline:
    home = tmp_path / "home"
    home.mkdir()
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(NO_NETWORK)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODAL_", "HF_", "GITHUB_"))}
    env.update(HOME=str(home), PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]))
    env["NETWORK_ATTEMPTS"] = str(tmp_path / "network-attempts.txt")
    return Offline(env, tmp_path / "network-attempts.txt")


# -- the functions -------------------------------------------------------------------------------


@pytest.mark.parametrize("function", [jobs.download_one, jobs.verify_one], ids=["download_one", "verify_one"])
def test_each_container_mounts_the_volume_of_the_model_list(function: Any):
    spec = load_catalog(ROOT / "models.toml").volume
    info = function.info()
    assert info.volumes == {spec.mount: VolumeMountInfo(name=spec.name, volume_id=None, read_only=False, sub_path=None)}
    assert jobs.MOUNT == spec.mount == "/vol/models"


@pytest.mark.parametrize("function", [jobs.download_one, jobs.verify_one], ids=["download_one", "verify_one"])
def test_containers_get_time_retries_and_modest_resources(function: Any):
    info = function.info()
    assert info.timeout == 3600
    assert info.max_retries == 2
    assert (jobs.RETRIES.backoff_coefficient, jobs.RETRIES.initial_delay.total_seconds()) == (2.0, 10.0)
    assert info.cpu == 2.0
    assert info.memory_mib == 4096
    assert info.ephemeral_disk_mib == 32 * 1024
    assert info.gpus == []
    assert info.single_use_containers, "one container per model, never reused for the next"
    # No secret is baked in: the Hub token is attached per call, only when there is one.
    assert info.secrets == []


def image_layers(image: Any) -> tuple[list[str], list[str]]:
    """(Dockerfile commands base first, files added at container start) of an unbuilt image."""
    commands: list[list[str]] = []
    mounts: list[str] = []
    current = synchronizer._translate_in(image)  # type: ignore[no-untyped-call]  # the _Image behind modal.Image
    while current is not None:
        cells = dict(
            zip(
                current._load.__code__.co_freevars,
                [c.cell_contents for c in current._load.__closure__ or ()],
                strict=True,
            )
        )
        if "mount" in cells:  # add_local_*: a mount over the image below
            mounts.append(repr(cells["mount"]))
            current = cells["base_image"]
            continue
        if cells.get("dockerfile_function") is not None:
            commands.append(cells["dockerfile_function"]("2025.06").commands)
        bases = list(cells.get("base_images", {}).values())
        current = bases[0] if bases else None
    return [line for layer in reversed(commands) for line in layer], mounts


def test_the_image_holds_huggingface_hub_and_this_package_only():
    commands, mounts = image_layers(jobs.image)
    assert commands[0].startswith("FROM python:3.12")
    installs = [c for c in commands if "pip install" in c and not c.startswith("RUN pip install --upgrade pip")]
    assert installs == ["RUN python -m pip install 'huggingface_hub[hf_xet]>=2.4,<3'"]
    assert not [c for c in commands if "torch" in c or "transformers" in c]
    assert "ENV HF_XET_HIGH_PERFORMANCE=1" in commands
    assert "ENV HF_HOME=/root/.cache/huggingface" in commands
    assert "ENV HF_XET_CACHE=/root/.cache/huggingface/xet" in commands
    assert not jobs.HF_HOME.startswith(jobs.MOUNT), "the downloader's cache must stay off the volume"
    assert any("_MountedPythonModule(module_name='modal_jobs', remote_dir='/root'" in m for m in mounts)
    assert any(f"{ROOT / 'models.toml'}" in m and "/root/models.toml" in m for m in mounts)


def test_the_image_pin_is_the_one_in_pyproject():
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert jobs.IMAGE_PACKAGES == ("huggingface_hub[hf_xet]>=2.4,<3",)
    assert set(jobs.IMAGE_PACKAGES) <= set(dependencies)


# -- importing and the command lines, offline -----------------------------------------------------


@pytest.mark.parametrize("token", [None, TOKEN], ids=["without-HF_TOKEN", "with-HF_TOKEN"])
def test_importing_the_app_does_no_network_io(offline: Offline, token: str | None):
    code = "import modal_jobs.download_models as m; print('imported', m.app.name, m.volume)"
    result = offline.run(sys.executable, "-c", code, extra={"HF_TOKEN": token} if token else None)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("imported qwen3-tts-model-cache")
    assert result.network_attempts == ""
    assert TOKEN not in result.stdout + result.stderr


def test_modal_run_help_works_offline(offline: Offline):
    result = offline.run(MODAL, "run", "-m", "modal_jobs.download_models", "--help", extra={"HF_TOKEN": TOKEN})
    assert result.returncode == 0, result.stderr
    for option in ("--model-size", "--list-only", "--clear", "--yes", "--dry-run"):
        assert option in result.stdout
    assert result.network_attempts == ""
    assert TOKEN not in result.stdout + result.stderr


@pytest.mark.parametrize("operation", ["list", "download", "verify", "clear"])
def test_the_cli_without_modal_credentials_fails_fast(offline: Offline, operation: str):
    result = offline.run(sys.executable, "-m", "modal_jobs", operation, "--catalog", "models.toml")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip() == (
        "error: no Modal credentials found; run `modal setup` (or set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET), "
        "or pass --local-dir DIR"
    )
    assert result.network_attempts == ""
    assert result.seconds < 30


# -- the local entrypoint, with the volume stood in -----------------------------------------------


@dataclass
class EntrypointTarget:
    """What `open_volume_backend` hands the entrypoint: a stand-in volume, and containers that record."""

    root: Path
    started: list[str]
    opened_with: list[dict[str, Any]]
    failing: set[str]

    def open(self, catalog: Catalog, hub: Hub, **options: Any) -> ModalBackend:
        self.opened_with.append(options)
        return ModalBackend(VolumeStore(DirVolume(self.root), catalog.volume), hub, self.start)

    def start(self, operation: str, entries: Sequence[ModelEntry], cancel: threading.Event) -> list[ModelRow]:
        self.started.extend(e.repo_id for e in entries)
        return [
            ModelRow(e.repo_id, f"/vol/models/{e.dirname}", "failed" if e.repo_id in self.failing else "downloaded")
            for e in entries
        ]


@pytest.fixture
def entrypoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hub: LocalHub, repos: Repos) -> EntrypointTarget:
    root = tmp_path / "volume"
    root.mkdir()
    target = EntrypointTarget(root, [], [], set())
    monkeypatch.setattr(modal_jobs.volume, "open_volume_backend", target.open)
    for key, value in hub_env(hub, tmp_path / "hf-home").items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    return target


def run_entrypoint(**flags: Any) -> tuple[int, str, str]:
    """Call the entrypoint's body as `modal run` would, inside an app that is already running."""
    out, err = io.StringIO(), io.StringIO()
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        jobs.main(**flags)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        sys.stdout, sys.stderr = saved
    return code, out.getvalue(), err.getvalue()


def test_entrypoint_downloads_what_is_missing_in_the_running_app(entrypoint: EntrypointTarget):
    code, out, _ = run_entrypoint(model_size="0.6B")
    assert code == 0
    assert entrypoint.opened_with == [{"app_running": True}]
    assert entrypoint.started == [SMALL, TOKENIZER]
    assert out.splitlines()[0].split()[:2] == [SMALL, "downloaded"]
    assert out.splitlines()[-1].startswith("total: ")


def test_entrypoint_exits_non_zero_when_a_model_fails(entrypoint: EntrypointTarget):
    entrypoint.failing.add(BIG)
    code, out, _ = run_entrypoint()
    assert code == 1
    assert entrypoint.started == [BIG, SMALL, TOKENIZER]  # --model-size defaults to both
    assert f"{BIG}  failed" in out


def test_entrypoint_lists_without_starting_anything(entrypoint: EntrypointTarget):
    code, out, _ = run_entrypoint(list_only=True)
    assert code == 0
    assert entrypoint.started == []
    assert [line.split()[1] for line in out.splitlines()[:-1]] == ["missing"] * 3


def test_entrypoint_clear_refuses_without_yes(entrypoint: EntrypointTarget):
    (entrypoint.root / "Qwen3-TTS-12Hz-0.6B-Base").mkdir()
    (entrypoint.root / "Qwen3-TTS-12Hz-0.6B-Base" / "config.json").write_text("{}")
    code, out, err = run_entrypoint(clear=True)
    assert code == 2
    assert out == ""
    assert "clear would remove 1 directory" in err and "add --yes" in err
    assert (entrypoint.root / "Qwen3-TTS-12Hz-0.6B-Base").exists()

    code, out, _ = run_entrypoint(clear=True, yes=True, model_size="0.6B")
    assert code == 0
    assert out.split()[:2] == [SMALL, "removed"]
    assert not (entrypoint.root / "Qwen3-TTS-12Hz-0.6B-Base").exists()


def test_entrypoint_refuses_list_and_clear_together(entrypoint: EntrypointTarget):
    code, _, err = run_entrypoint(list_only=True, clear=True)
    assert code == 2
    assert "choose one" in err
    assert entrypoint.opened_with == []


def test_entrypoint_rejects_an_unknown_size(entrypoint: EntrypointTarget):
    code, _, err = run_entrypoint(model_size="7B")
    assert code == 2
    assert "--model-size '7B' is not in" in err
