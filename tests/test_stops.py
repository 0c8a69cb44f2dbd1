"""Every stop says what it left: `lock` stopped mid-answer, and Ctrl-C to `clear` run through nox.

The other commands' lines are checked where their stops are (tests/test_field_failures.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import pytest

from local_hub.server import LocalHub
from modal_jobs.errors import InterruptedRun
from modal_jobs.modal_backend import ContainerJob, ModalBackend, collect
from modal_jobs.model_dir import POINTER_NAME
from modal_jobs.model_list import VolumeSpec, parse_model_list
from modal_jobs.operations import run
from modal_jobs.request import Request
from modal_jobs.summary import ModelRow, Operation, Status
from modal_jobs.volume import VolumeStore
from tests.conftest import (
    BIG,
    MODEL_LIST,
    ROOT,
    SMALL,
    TOKENIZER,
    Cli,
    Repos,
    assert_complete,
    assert_not_loadable,
    model_dir,
)
from tests.modal_stand_ins import MOUNT, DirVolume, FinishedCall
from tests.test_field_failures import (
    SIGNALS,
    catches_sigterm,
    held,
    many_files,
    said_at_the_stop,
    start,
    stop,
    wait_for,
)
from tests.twin_targets import stand_in


@pytest.mark.parametrize("sig", SIGNALS)
def test_lock_stopped_while_the_hub_holds_a_request_writes_no_lock(cli: Cli, repos: Repos, sig: int):
    cli.hub.hold(SMALL)
    process = start(cli, "lock")
    wait_for(process, lambda: held(cli) and catches_sigterm(process.pid), "the held request")
    stderr = stop(process, sig, within=5)
    assert said_at_the_stop(stderr) == "lock stopped before it had every answer; models.lock was not written"
    assert not cli.model_list.with_suffix(".lock").exists()


def test_ctrl_c_to_clear_run_through_nox_says_what_clear_removed_and_what_remains(
    cli: Cli, repos: Repos, target: Path, tmp_path: Path
):
    """Ctrl-C signals nox and the command alike (one process group), and nox follows with SIGTERM after its
    interrupt timeout: the noxfile leaves the command time to stop on its own and say so.

    nox runs the noxfile's own `clear` session, reusing this test environment as the session's (no install).
    """
    assert cli("download").returncode == 0
    many_files(model_dir(target, SMALL) / "junk", 40_000)  # keeps clear on the first model when the signal comes
    pointer = target / SMALL.split("/")[1] / POINTER_NAME
    envdir = tmp_path / "nox-envs"
    envdir.mkdir()
    (envdir / "clear").symlink_to(sys.prefix, target_is_directory=True)
    argv = [sys.executable, "-m", "nox", "-f", str(ROOT / "noxfile.py"), "--envdir", str(envdir), "-R"]
    argv += [
        "--no-install",
        "-s",
        "clear",
        "--",
        "--yes",
        "--model-list",
        str(cli.model_list),
        "--local-dir",
        str(target),
    ]
    process = subprocess.Popen(
        argv, env=cli.env, cwd=ROOT, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    wait_for(process, lambda: not pointer.exists(), "the first removal")
    os.killpg(process.pid, signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)

    assert process.returncode != 0
    said = stdout + stderr  # nox passes the command's stderr on through its own stdout
    assert said_at_the_stop(said) == (
        f"clear stopped: removed Qwen3-TTS-12Hz-0.6B-Base/ from {target}; Qwen3-TTS-12Hz-1.7B-Base/, "
        "Qwen3-TTS-Tokenizer-12Hz/ remain: run the same command again to remove them"
    ), said
    assert_not_loadable(target, SMALL)
    for repo_id in (BIG, TOKENIZER):
        assert_complete(target, repo_id, repos.files[repo_id])


@dataclass
class StopAskedMeanwhile:
    """A container still running when the person presses Ctrl-C: asked for its answer, it has none yet."""

    stop: threading.Event
    cancelled: bool = field(default=False)

    def get(self, timeout: float | None = None) -> object:
        self.stop.set()
        raise TimeoutError  # modal's "no output yet"

    def cancel(self, terminate_containers: bool = False) -> None:
        self.cancelled = terminate_containers


@pytest.mark.parametrize(
    ("operation", "said"),
    [
        (
            "verify",
            f"verify stopped before its verdict: checked {SMALL}; not {TOKENIZER}: run the same command again for the "
            "verdict",
        ),
        (
            "download",
            f"download stopped while fetching {SMALL}, {TOKENIZER}: run the same command again to resume them",
        ),
    ],
)
def test_a_stop_on_modal_says_which_containers_had_answered(
    hub: LocalHub, repos: Repos, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, operation: str, said: str
):
    """The first container answers, the second is still running when the stop comes: it is terminated, and the
    operation's line says what the stop left."""
    twins = stand_in(hub, tmp_path, monkeypatch, parse_model_list(MODEL_LIST, tmp_path / "models.toml"))
    if operation == "verify":
        run(Request(Operation.DOWNLOAD, sizes=("0.6B",)), twins.model_list, twins.backends()[1], twins.hub)
    running: list[StopAskedMeanwhile] = []

    def start(kind: str, jobs: Sequence[ContainerJob], cancel: threading.Event) -> list[ModelRow]:
        answered = replace(jobs[0].lost, status=Status.OK if kind == "verify" else Status.DOWNLOADED, error=None)
        running.append(StopAskedMeanwhile(cancel))
        return collect([FinishedCall(asdict(answered)), running[0]], jobs, cancel)

    backend = ModalBackend(VolumeStore(DirVolume(twins.volume_root), VolumeSpec(mount=MOUNT)), start, twins.lease())
    with pytest.raises(InterruptedRun) as stopped:
        run(Request(Operation(operation), sizes=("0.6B",)), twins.model_list, backend, twins.hub)
    assert str(stopped.value).startswith(said)
    assert [call.cancelled for call in running] == [True]  # the container still running was terminated
