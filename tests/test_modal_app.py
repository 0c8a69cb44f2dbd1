"""The Modal app's configuration and entry points, checked offline: Modal's servers are never reached.

The functions are read through `Function.info()`, which a locally defined function answers without
hydration. The image is read layer by layer from its definition: modal keeps no public description
of an unbuilt image, so `image_layers` walks the lazy loaders (pinned: modal>=1.6,<1.7).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from modal._utils.async_utils import synchronizer

import modal_jobs.download_models as command_line
import modal_jobs.modal_app as jobs
from local_hub.server import LocalHub, hub_env
from modal_jobs.model_dir import POINTER_NAME
from tests.conftest import BIG, MODEL_LIST, ROOT, SMALL, TOKENIZER, Repos, assert_complete
from tests.modal_stand_ins import EntrypointTarget

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

    @property
    def home(self) -> Path:
        return Path(self.env["HOME"])

    def run(
        self, *argv: str | Path, extra: dict[str, str] | None = None, timeout: float = 60, cwd: Path = ROOT
    ) -> Result:
        started = time.monotonic()
        result = subprocess.run(
            [str(a) for a in argv],
            env={**self.env, **(extra or {})},
            cwd=cwd,
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

FUNCTIONS = pytest.mark.parametrize("function", [jobs.apply_one, jobs.verify_one], ids=["apply_one", "verify_one"])


@FUNCTIONS
def test_no_volume_is_bound_at_import(function: Any):
    """The volume and its mount come from the list a run loads, attached per call (tests/test_volume.py)."""
    assert function.info().volumes == {}


@FUNCTIONS
def test_containers_get_time_retries_and_modest_resources(function: Any):
    info = function.info()
    assert info.timeout == 3600
    assert info.max_retries == 2
    assert (jobs.RETRIES.backoff_coefficient, jobs.RETRIES.initial_delay.total_seconds()) == (2.0, 10.0)
    assert (info.cpu, info.memory_mib) == (jobs.CPU, jobs.MEMORY_MIB)  # sized in docs/modal.md, tested below
    assert not info.ephemeral_disk_mib, "nothing lands on the container's disk but logs: no billed extra disk"
    assert info.gpus == []
    assert info.single_use_containers, "one container per model, never reused for the next"
    # No secret is baked in: the Hub token is attached per call, only when there is one.
    assert info.secrets == []


def test_the_container_is_the_size_docs_modal_md_reasons_from():
    """docs/modal.md sizes the container from the benchmark's CPU per GB, and prices it: request and page agree."""
    text = " ".join((ROOT / "docs" / "modal.md").read_text().split())
    size = re.search(r"Each container asks for \*\*([\d.]+) CPUs\*\* \(physical cores\) and \*\*(\d+) GiB\*\*", text)
    assert size, "docs/modal.md no longer says what a container asks for"
    assert (float(size[1]), int(size[2]) << 10) == (jobs.CPU, jobs.MEMORY_MIB)
    busy = re.search(r"keeps ([\d.]+) CPUs busy at 1 GB/s", text)
    # The benchmark counts vCPUs; Modal's `cpu` counts physical cores, two vCPUs each.
    assert busy and float(busy[1]) / 2 <= jobs.CPU, "the container would be what bounds a 1 GB/s transfer"
    rates = re.search(r"\$([\d.]+) per core-second and \$([\d.]+) per GiB-second", text)
    second = re.search(r"\$([\d.]+) per container-second", text)
    assert rates and second
    per_second = jobs.CPU * float(rates[1]) + jobs.MEMORY_MIB / 1024 * float(rates[2])
    assert float(second[1]) == pytest.approx(per_second, rel=0.02)
    full = re.search(r"([\d.]+) container-seconds of transfer, \$([\d.]+)", text)
    assert full and float(full[2]) == pytest.approx(float(full[1]) * per_second, rel=0.05)


def image_layers(image: Any) -> tuple[list[str], list[str], dict[str, str]]:
    """(Dockerfile commands base first, files added at container start, build context) of an unbuilt image."""
    commands: list[list[str]] = []
    mounts: list[str] = []
    context: dict[str, str] = {}
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
            spec = cells["dockerfile_function"]("2025.06")
            commands.append(spec.commands)
            context.update(spec.context_files)
        bases = list(cells.get("base_images", {}).values())
        current = bases[0] if bases else None
    return [line for layer in reversed(commands) for line in layer], mounts, context


def test_the_image_installs_the_locked_requirements_and_this_package_only():
    commands, mounts, context = image_layers(jobs.image)
    assert commands[0].startswith(f"FROM python:{jobs.PYTHON_VERSION}")
    installs = [c for c in commands if "pip install" in c and not c.startswith("RUN pip install --upgrade pip")]
    assert installs == ["RUN python -m pip install -r /.requirements.txt --require-hashes --no-deps"]
    assert context == {"/.requirements.txt": str(jobs.REQUIREMENTS)}
    assert not [c for c in commands if "torch" in c or "transformers" in c]
    # hf_xet sizes its buffers from the host's memory in high-performance mode; the container asks for 2 GiB.
    assert not [c for c in commands if "HF_XET_HIGH_PERFORMANCE" in c]
    assert f"ENV HF_XET_RECONSTRUCTION_DOWNLOAD_BUFFER_SIZE={1 << 30}" in commands
    assert f"ENV HF_XET_RECONSTRUCTION_DOWNLOAD_BUFFER_PERFILE_SIZE={256 << 20}" in commands
    assert f"ENV HF_XET_RECONSTRUCTION_DOWNLOAD_BUFFER_LIMIT={1 << 30}" in commands
    assert jobs.MEMORY_MIB << 20 >= 2 * (1 << 30), "the buffers take at most half of what the container asks for"
    assert "ENV HF_HOME=/root/.cache/huggingface" in commands
    assert any("_MountedPythonModule(module_name='modal_jobs', remote_dir='/root'" in m for m in mounts)
    assert not any("models.toml" in m for m in mounts), "the model list travels with each call, not in the image"


def locked_versions() -> dict[str, str]:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    return {package["name"]: package["version"] for package in lock["package"] if "version" in package}


def required_versions() -> dict[str, str]:
    pins = {}
    for line in jobs.REQUIREMENTS.read_text().splitlines():
        if line and not line.startswith(("#", " ")):
            name, version = line.split(";")[0].strip().rstrip("\\").strip().split("==")
            pins[name] = version
    return pins


def test_every_package_the_image_installs_is_the_version_uv_lock_pins():
    pins = required_versions()
    locked = locked_versions()
    assert {"huggingface-hub", "hf-xet", "httpx2"} <= set(pins)
    assert {name: version for name, version in pins.items() if locked.get(name) != version} == {}
    text = jobs.REQUIREMENTS.read_text()
    assert text.count("--hash=sha256:") >= len(pins), "every pin carries its hashes (pip --require-hashes)"


def test_the_requirements_file_is_what_uv_exports_from_the_lock_now():
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    assert uv, "uv comes with nox[uv] in the test environment"
    exported = subprocess.run(
        [uv, "export", "--quiet", "--frozen", "--only-group=container", "--no-emit-project"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    def body(text: str) -> list[str]:
        return [line for line in text.splitlines() if not line.startswith("#")]

    assert body(jobs.REQUIREMENTS.read_text()) == body(exported), (
        "modal_jobs/container-requirements.txt is out of date with uv.lock: run `nox -s container-requirements`"
    )


def test_the_image_runs_a_python_the_ci_matrix_runs():
    workflow = (ROOT / ".github" / "workflows" / "ci.yml").read_text()
    matrix = re.search(r"python:\s*\[([^\]]*)\]", workflow)
    assert matrix, "ci.yml names its Python versions in a matrix"
    versions = [v.strip().strip("\"'") for v in matrix.group(1).split(",")]
    assert jobs.PYTHON_VERSION in versions


# -- importing and the command lines, offline -----------------------------------------------------


@pytest.mark.parametrize("token", [None, TOKEN], ids=["without-HF_TOKEN", "with-HF_TOKEN"])
def test_importing_the_app_does_no_network_io(offline: Offline, token: str | None):
    code = "import modal_jobs.download_models as m; print('imported', m.app.name)"
    # From a directory without models.toml: nothing reads the model list at import.
    result = offline.run(sys.executable, "-c", code, extra={"HF_TOKEN": token} if token else None, cwd=offline.home)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("imported qwen3-tts-model-cache")
    assert result.network_attempts == ""
    assert TOKEN not in result.stdout + result.stderr


def test_modal_run_help_works_offline(offline: Offline):
    result = offline.run(MODAL, "run", "-m", "modal_jobs.download_models", "--help", extra={"HF_TOKEN": TOKEN})
    assert result.returncode == 0, result.stderr
    assert result.network_attempts == ""
    assert TOKEN not in result.stdout + result.stderr


def test_modal_run_passes_the_seed_flags_on_to_the_entrypoint(offline: Offline):
    """Its parser takes the flags of the original download_models.py without complaint; offline, the run stops
    only where it needs Modal (the entrypoint's own handling of them is tested below, in a running app)."""
    result = offline.run(MODAL, "run", "-m", "modal_jobs.download_models", "--model-size", "0.6B", "--clear", "--yes")
    assert result.returncode != 0
    assert "Token missing" in result.stderr
    assert "No such option" not in result.stderr
    assert result.network_attempts == ""


@pytest.mark.parametrize("operation", ["list", "download", "verify", "clear"])
def test_the_cli_without_modal_credentials_fails_fast(offline: Offline, operation: str):
    result = offline.run(sys.executable, "-m", "modal_jobs", operation, "--model-list", "models.toml")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip() == (
        "error: no Modal credentials found; run `modal setup` (or set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET), "
        "or pass --local-dir DIR"
    )
    assert result.network_attempts == ""
    assert result.seconds < 30


def test_unreachable_modal_is_one_line_on_the_clis_own_10_second_deadline(offline: Offline):
    """Modal's client retries a refused connection for about a minute; the CLI gives up on its own deadline."""
    credentials = {
        "MODAL_TOKEN_ID": "ak-test",
        "MODAL_TOKEN_SECRET": "as-test",
        "MODAL_SERVER_URL": "http://127.0.0.1:9",
    }
    result = offline.run(sys.executable, "-m", "modal_jobs", "list", "--model-list", "models.toml", extra=credentials)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Modal Volume 'qwen3-tts-models'" in lines[0]
    assert "no answer from Modal within 10s" in lines[0] or "cannot reach Modal" in lines[0]
    assert result.seconds < 10 + 10  # the margin is start-up (importing modal) on a loaded machine


# -- the local entrypoint, with the volume stood in -----------------------------------------------


def run_entrypoint(*argv: str) -> tuple[int, str, str]:
    """Call the entrypoint's body as `modal run` would, inside an app that is already running."""
    out, err = io.StringIO(), io.StringIO()
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        command_line.main(*argv)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        sys.stdout, sys.stderr = saved
    return code, out.getvalue(), err.getvalue()


def test_entrypoint_downloads_what_is_missing_in_the_running_app(entrypoint: EntrypointTarget):
    code, out, _ = run_entrypoint("download", "--model-size", "0.6B")
    assert code == 0
    ((options),) = entrypoint.opened_with
    assert {k: v for k, v in options.items() if k != "env"} == {"create": True, "app_running": True}
    assert options["env"]["HF_ENDPOINT"] == os.environ["HF_ENDPOINT"], "containers talk to the Hub the plan used"
    assert entrypoint.started == [SMALL, TOKENIZER]
    assert out.splitlines()[0].split()[:2] == [SMALL, "downloaded"]
    assert out.splitlines()[-1].startswith("total: ")


def test_entrypoint_speaks_json_like_the_cli(entrypoint: EntrypointTarget):
    code, out, _ = run_entrypoint("download", "--dry-run", "--json")
    assert code == 0
    assert [{k: v for k, v in o.items() if k != "env"} for o in entrypoint.opened_with] == [
        {"create": False, "app_running": True}
    ]
    summary = json.loads(out)
    assert {row["status"] for row in summary["models"]} == {"fetch"}
    assert entrypoint.started == []


def test_entrypoint_exits_non_zero_when_a_model_fails(entrypoint: EntrypointTarget):
    entrypoint.failing.add(BIG)
    code, out, _ = run_entrypoint("download")
    assert code == 1
    assert entrypoint.started == [BIG, SMALL, TOKENIZER]
    assert f"{BIG}  failed" in out


def test_entrypoint_lists_without_starting_anything(entrypoint: EntrypointTarget):
    code, out, _ = run_entrypoint("list")
    assert code == 0
    assert entrypoint.started == []
    assert [line.split()[1] for line in out.splitlines()[:-1]] == ["missing"] * 3


def test_entrypoint_clear_refuses_without_yes(entrypoint: EntrypointTarget):
    (entrypoint.root / "Qwen3-TTS-12Hz-0.6B-Base").mkdir()
    (entrypoint.root / "Qwen3-TTS-12Hz-0.6B-Base" / "config.json").write_text("{}")
    code, out, err = run_entrypoint("clear")
    assert code == 2
    assert out == ""
    assert "clear would remove 1 directory" in err and "add --yes" in err
    assert (entrypoint.root / "Qwen3-TTS-12Hz-0.6B-Base").exists()

    code, out, _ = run_entrypoint("clear", "--yes", "--model-size", "0.6B")
    assert code == 0
    assert out.split()[:2] == [SMALL, "removed"]
    assert not (entrypoint.root / "Qwen3-TTS-12Hz-0.6B-Base").exists()


def test_entrypoint_takes_the_seed_flags(entrypoint: EntrypointTarget):
    """`modal run download_models.py --model-size 0.6B`, `--list-only`, `--clear`: as the original script took them."""
    code, out, _ = run_entrypoint("--model-size", "0.6B")
    assert code == 0
    assert entrypoint.started == [SMALL, TOKENIZER]
    assert [{k: v for k, v in o.items() if k != "env"} for o in entrypoint.opened_with] == [
        {"create": True, "app_running": True}
    ]

    small = entrypoint.root / "Qwen3-TTS-12Hz-0.6B-Base"
    (small / POINTER_NAME).unlink()
    code, out, _ = run_entrypoint("--list-only")
    assert code == 0
    assert [line.split()[:2] for line in out.splitlines()[:-1]] == [
        [BIG, "missing"],
        [SMALL, "incomplete"],
        [TOKENIZER, "complete"],
    ]

    code, out, err = run_entrypoint("--clear", "--model-size", "0.6B")
    assert code == 2
    assert out == ""
    assert "clear would remove 1 directory" in err and "add --yes" in err
    assert small.exists()

    code, out, _ = run_entrypoint("--clear", "--yes", "--model-size", "0.6B")
    assert code == 0
    assert out.split()[:2] == [SMALL, "removed"]
    assert not small.exists()
    assert entrypoint.started == [SMALL, TOKENIZER], "listing and clearing start no container"


def test_entrypoint_rejects_bad_input_in_one_line(entrypoint: EntrypointTarget):
    code, _, err = run_entrypoint("download", "--model-size", "7B")
    assert code == 2
    assert "--model-size '7B' is not in" in err
    assert len(err.strip().splitlines()) == 1


def test_the_built_wheel_works_from_any_directory_with_model_list(tmp_path: Path, hub: LocalHub, repos: Repos):
    """The installed package reads no models.toml at import; the CLI and the Modal app work from anywhere."""
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    assert uv
    subprocess.run([uv, "build", "--wheel", "--quiet", "--out-dir", str(tmp_path / "dist"), str(ROOT)], check=True)
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    unpacked = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        assert "modal_jobs/container-requirements.txt" in archive.namelist()
        assert not [name for name in archive.namelist() if name.endswith("models.toml")]
        # The distribution and its command share one name.
        (entry_points,) = [name for name in archive.namelist() if name.endswith(".dist-info/entry_points.txt")]
        assert "qwen3-tts-model-cache = modal_jobs.cli:main" in archive.read(entry_points).decode()
        assert wheel.name.startswith("qwen3_tts_model_cache-")
        archive.extractall(unpacked)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    model_list = tmp_path / "my-models.toml"
    model_list.write_text(MODEL_LIST)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MODAL_", "GITHUB_"))}
    env.update(hub_env(hub, tmp_path / "hf-home"), PYTHONPATH=str(unpacked))
    code = "import modal_jobs.download_models as m, modal_jobs.cli as c; print(m.__file__); print(m.app.name)"
    imported = subprocess.run(
        [sys.executable, "-c", code], cwd=elsewhere, env=env, capture_output=True, text=True, check=False
    )
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.splitlines() == [str(unpacked / "modal_jobs" / "download_models.py"), jobs.APP_NAME]
    listed = subprocess.run(
        [
            sys.executable,
            "-m",
            "modal_jobs",
            "download",
            "--model-list",
            str(model_list),
            "--local-dir",
            "models",
            "--json",
        ],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    assert {row["status"] for row in json.loads(listed.stdout)["models"]} == {"downloaded"}
    assert_complete(elsewhere / "models", TOKENIZER, repos.files[TOKENIZER])
    assert (tmp_path / "my-models.lock").is_file(), "the lock lands beside the list it locks"
