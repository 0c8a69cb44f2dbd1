"""Fixtures: a local hub on 127.0.0.1 serving generated Qwen3-TTS-shaped repos, and the CLI run for real."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from local_hub.repos import random_bytes
from local_hub.server import LocalHub, hub_env
from modal_jobs import hashing
from modal_jobs.model_dir import LOCK_NAME, MANIFEST_NAME, POINTER_NAME, REVISIONS_DIR
from modal_jobs.reader import ModelNotReady, model_path

ROOT = Path(__file__).resolve().parent.parent

# The Modal stand-ins' fixtures (`fake_app`, `entrypoint`, `modal_stand_in`), for any test module to ask for.
pytest_plugins = ["tests.modal_stand_ins", "tests.modal_api_stand_in"]

BIG = "Qwen/Qwen3-TTS-12Hz-1.7B-Base"
SMALL = "Qwen/Qwen3-TTS-12Hz-0.6B-Base"
TOKENIZER = "Qwen/Qwen3-TTS-Tokenizer-12Hz"

MODEL_LIST = f"""
[volume]
name = "qwen3-tts-models"
mount = "/vol/models"

[[model]]
repo_id = "{BIG}"
size = "1.7B"

[[model]]
repo_id = "{SMALL}"
size = "0.6B"

[[model]]
repo_id = "{TOKENIZER}"
"""


def repo_files(repo_id: str, seed: int, weights: int) -> dict[str, bytes]:
    """A few MB shaped like the real repo: configs, LFS weights, a `speech_tokenizer/` subfolder."""
    return {
        "config.json": json.dumps({"model_type": "qwen3_tts", "repo": repo_id}).encode(),
        "generation_config.json": b'{"do_sample": true}\n',
        "model.safetensors": random_bytes(weights, seed),
        "speech_tokenizer/config.json": b'{"sample_rate": 24000}\n',
        "speech_tokenizer/model.safetensors": random_bytes(weights // 3, seed + 1),
    }


@dataclass
class Repos:
    files: dict[str, dict[str, bytes]]
    commits: dict[str, str]


@pytest.fixture(autouse=True, scope="session")
def the_repository_keeps_no_lock_of_test_commits() -> Iterator[None]:
    """A run against the local hub writes models.lock beside its list: never beside the repository's own."""
    had = (ROOT / "models.lock").exists()
    yield
    assert had or not (ROOT / "models.lock").exists(), "a test wrote models.lock into the repository"


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """The engine configures logging as a process would; put pytest's handlers back after."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[LocalHub]:
    with LocalHub(tmp_path / "hub-data") as server:
        yield server


@pytest.fixture
def repos(hub: LocalHub) -> Repos:
    files = {
        BIG: repo_files(BIG, 1, 3_000_000),
        SMALL: repo_files(SMALL, 2, 2_000_000),
        TOKENIZER: repo_files(TOKENIZER, 3, 1_000_000),
    }
    commits = {repo_id: hub.commit(repo_id, content) for repo_id, content in files.items()}
    return Repos(files, commits)


@pytest.fixture
def model_list(tmp_path: Path) -> Path:
    path = tmp_path / "models.toml"
    path.write_text(MODEL_LIST)
    return path


@pytest.fixture
def target(tmp_path: Path) -> Path:
    return tmp_path / "volume"


@dataclass
class Cli:
    """Runs `python -m modal_jobs` as its own process, pointed at the local hub."""

    hub: LocalHub
    model_list: Path
    target: Path
    env: dict[str, str]

    def __call__(
        self,
        operation: str,
        *args: str,
        local: bool = True,
        env: Mapping[str, str] | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(operation, *args, local=local),
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
        )

    def argv(self, operation: str, *args: str, local: bool = True) -> list[str]:
        location = ["--local-dir", str(self.target)] if local else []
        return [
            sys.executable,
            "-m",
            "modal_jobs",
            operation,
            "--model-list",
            str(self.model_list),
            *location,
            *args,
        ]

    def json(self, operation: str, *args: str) -> dict[str, Any]:
        result = self(operation, *args, "--json")
        assert result.stdout, result.stderr
        data: dict[str, Any] = json.loads(result.stdout)
        data["exit_code"] = result.returncode
        return data


@pytest.fixture
def cli(hub: LocalHub, model_list: Path, target: Path, tmp_path: Path) -> Cli:
    return Cli(hub, model_list, target, cli_env(hub, tmp_path))


def cli_env(hub: LocalHub, tmp_path: Path) -> dict[str, str]:
    """This environment, pointed at `hub` only: no token, endpoint or cache of the caller's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MODAL_", "GITHUB_"))}
    env.update(hub_env(hub, tmp_path / "hf-home"))
    env["PYTHONPATH"] = str(ROOT)
    return env


# `python -m modal_jobs …` as people run it, naming on its last line of stderr the huggingface_hub modules it imported.
IMPORT_PROBE = (
    "import sys\n"
    "from modal_jobs.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "print('imported:', *sorted(m for m in sys.modules if m.split('.')[0] == 'huggingface_hub'), file=sys.stderr)\n"
    "raise SystemExit(code)\n"
)


def run_probed(cli: Cli, operation: str, *args: str) -> tuple[dict[str, Any], set[str], int]:
    """The summary of one command, the huggingface_hub modules it imported, and how many requests the hub got."""
    cli.hub.reset_counts()
    argv = cli.argv(operation, *args, "--json")
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_PROBE, *argv[3:]], env=cli.env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    summary: dict[str, Any] = json.loads(result.stdout)
    assert result.stderr, "the probe prints its last line on stderr"
    last = result.stderr.splitlines()[-1].split()
    assert last[0] == "imported:", result.stderr
    return summary, set(last[1:]), cli.hub.count()


def model_dir(target: Path, repo_id: str) -> Path:
    """The directory a reader loads: the revision the pointer names, or the model's directory when there is none."""
    top = target / repo_id.split("/")[1]
    try:
        pointer = json.loads((top / POINTER_NAME).read_bytes())
    except (OSError, ValueError):
        return top
    return top / REVISIONS_DIR / str(pointer["revision"])


def assert_not_loadable(target: Path, repo_id: str) -> None:
    """The reader refuses the model: nothing half-written ever passes for complete."""
    with pytest.raises(ModelNotReady):
        model_path(target, repo_id)


def assert_complete(target: Path, repo_id: str, files: dict[str, bytes]) -> None:
    """The reader finds the model, whose revision holds exactly the repo's files, byte for byte, plus the manifest."""
    found = model_path(target, repo_id)
    assert found == model_dir(target, repo_id)
    on_disk = tree(found)
    manifest = json.loads(on_disk.pop(MANIFEST_NAME))
    assert on_disk == files
    assert manifest["repo_id"] == repo_id
    assert sorted(f["path"] for f in manifest["files"]) == sorted(files)


@pytest.fixture(autouse=True)
def huggingface_hub_set_up() -> Iterator[None]:
    """Each test starts as the CLI and the containers do (deadlines.set_up_huggingface_hub), and leaves no trace."""
    import httpcore2
    import huggingface_hub.constants
    import huggingface_hub.file_download as file_download

    from modal_jobs.deadlines import LOCAL_XET_BUFFERS, Deadlines, set_up_huggingface_hub

    names = [*Deadlines().xet_environment(), *LOCAL_XET_BUFFERS]
    environ = {name: os.environ.pop(name, None) for name in names}  # set_up fills only what is unset
    hf_logger = logging.getLogger("huggingface_hub")
    saved = (
        huggingface_hub.constants.DOWNLOAD_CHUNK_SIZE,
        huggingface_hub.constants.HF_HUB_DOWNLOAD_TIMEOUT,
        list(hf_logger.handlers),
        hf_logger.propagate,
        httpcore2.HTTP11Connection.READ_NUM_BYTES,
    )
    retried = (file_download._DEFAULT_RETRY_ON_EXCEPTIONS, file_download._DEFAULT_RETRY_ON_STATUS_CODES)  # type: ignore[attr-defined]
    set_up_huggingface_hub(Deadlines())
    yield
    huggingface_hub.constants.DOWNLOAD_CHUNK_SIZE = saved[0]
    huggingface_hub.constants.HF_HUB_DOWNLOAD_TIMEOUT = saved[1]
    hf_logger.handlers[:] = saved[2]
    hf_logger.propagate = saved[3]
    httpcore2.HTTP11Connection.READ_NUM_BYTES = saved[4]
    file_download._DEFAULT_RETRY_ON_EXCEPTIONS = retried[0]  # type: ignore[attr-defined]
    file_download._DEFAULT_RETRY_ON_STATUS_CODES = retried[1]  # type: ignore[attr-defined]
    for name, value in environ.items():
        os.environ.pop(name, None)
        if value is not None:
            os.environ[name] = value


@pytest.fixture
def hashed_by_reading(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the files verified by reading them back (a spy: the real hash still runs)."""
    calls: list[str] = []
    real = hashing.hash_file

    def spy(path: Path, algorithm: str, size: int) -> str:
        calls.append(path.name)
        return real(path, algorithm, size)

    monkeypatch.setattr(hashing, "hash_file", spy)
    return calls


def rows_by_repo(summary: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    models = summary["models"]
    assert isinstance(models, list)
    return {row["repo_id"]: row for row in models}


def tree(path: Path) -> dict[str, bytes]:
    """Every file below a directory with its bytes, hidden ones included, but for the target's lock."""
    return {
        p.relative_to(path).as_posix(): p.read_bytes()
        for p in sorted(path.rglob("*"))
        if p.is_file() and p.name != LOCK_NAME
    }


# -- privileged set-up --------------------------------------------------------------------------


def as_root(argv: Sequence[str]) -> list[str]:
    """`argv` run with root's privilege: as it is when we are root, else through passwordless sudo.

    GitHub-hosted runners run steps as `runner`, who has passwordless sudo but is not root. Where
    neither is available the calling test fails (never skips): the behaviour it protects is unchecked.
    """
    if os.geteuid() == 0:
        return list(argv)
    sudo = shutil.which("sudo")
    if sudo is None:
        pytest.fail(f"{argv[0]} needs root: run the tests as root, or as a user with passwordless sudo (no sudo here)")
    probe = subprocess.run([sudo, "-n", "true"], capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)
    if probe.returncode != 0:
        pytest.fail(
            f"{argv[0]} needs root: `sudo -n` was refused ({probe.stderr.strip()}); run as root or with NOPASSWD"
        )
    return [sudo, "-n", *argv]


@dataclass(frozen=True)
class Tmpfs:
    """A tmpfs mounted by `mount_tmpfs`, owned by the user running the tests."""

    path: Path
    size_bytes: int

    def remount(self, *, read_only: bool) -> None:
        """Make it read-only (or writable again) in place, keeping what it holds."""
        mode = "ro" if read_only else "rw"
        run_as_root(["mount", "-o", f"remount,{mode}", str(self.path)], f"remount {self.path} {mode}")


def run_as_root(argv: Sequence[str], what: str) -> None:
    result = subprocess.run(as_root(argv), capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        pytest.fail(f"cannot {what}: {result.stderr.strip()!r}")


@contextlib.contextmanager
def mount_tmpfs(path: Path, size_bytes: int, *, read_only: bool = False) -> Iterator[Tmpfs]:
    """Mount a tmpfs of `size_bytes` at `path` (created if missing) for the `with` block, then unmount it.

    A tmpfs gives a real filesystem with a known size: full-disk and read-only behaviour can be
    checked without touching the machine's disks. The root directory belongs to the current user
    (uid/gid options), so the test writes to it without privilege; only mount and umount need root.
    For a read-only tmpfs holding prepared files, mount it writable, fill it, then `remount(read_only=True)`.
    """
    path.mkdir(parents=True, exist_ok=True)
    options = [f"size={size_bytes}", f"uid={os.getuid()}", f"gid={os.getgid()}", "mode=0755"]
    if read_only:
        options.append("ro")
    source = f"test-tmpfs-{uuid.uuid4().hex[:8]}"  # a unique name finds a leaked mount in /proc/mounts
    run_as_root(["mount", "-t", "tmpfs", "-o", ",".join(options), source, str(path)], f"mount a tmpfs at {path}")
    try:
        yield Tmpfs(path, size_bytes)
    finally:
        # Lazy: a child process the test started may still hold a file open; the mount goes when it lets go.
        subprocess.run(as_root(["umount", "-l", str(path)]), capture_output=True, check=False, stdin=subprocess.DEVNULL)
