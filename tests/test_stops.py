"""Every stop says what it left: `lock` stopped mid-answer, and Ctrl-C to `clear` run through nox.

The other commands' lines are checked where their stops are (tests/test_field_failures.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from modal_jobs.model_dir import POINTER_NAME
from tests.conftest import BIG, ROOT, SMALL, TOKENIZER, Cli, Repos, assert_complete, assert_not_loadable, model_dir
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
