"""container-requirements.yml: a Dependabot update of uv.lock gets the Modal image's requirements written on its branch.

Dependabot edits uv.lock alone, while modal_jobs/container-requirements.txt is exported from it and
tests/test_modal_app.py fails CI while the two disagree. The workflow runs here with `act`, as
model-drift.yml's tests run it (tests/test_drift_workflow.py): the `gh` stand-in first on PATH and a
bare repository as `origin`. Who it runs for is the job's `if:`, evaluated by the expression model of
tests/test_concurrency.py, since act takes the payload's author at its word.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from local_hub.server import LocalHub
from tests.conftest import ROOT
from tests.test_concurrency import Evaluator
from tests.test_drift_workflow import GitHub, github
from tests.test_workflows import WORKFLOWS, Act, act_step_env, git, load_workflow, runner_python, tool

__all__ = ["github", "runner_python"]  # fixtures, used by name

WORKFLOW = WORKFLOWS / "container-requirements.yml"
REQUIREMENTS = "modal_jobs/container-requirements.txt"
BRANCH = "dependabot/uv/python-7f3a"


def pull_request(author: str, head_repo: str = "owner/repo") -> dict[str, Any]:
    """The pull_request event of a branch `author` opened, as GitHub sends it (the fields the job reads)."""
    return {
        "pull_request": {
            "number": 12,
            "user": {"login": author},
            "head": {"ref": BRANCH, "repo": {"full_name": head_repo}},
            "base": {"ref": "main", "repo": {"full_name": "owner/repo"}},
        }
    }


def exported(repo: Path) -> list[str]:
    """What `uv export` writes from the repository's uv.lock, comments aside (what tests/test_modal_app.py compares)."""
    command = [tool("uv"), "export", "--quiet", "--frozen", "--only-group=container", "--no-emit-project"]
    text = subprocess.run(command, cwd=repo, capture_output=True, text=True, check=True).stdout
    return [line for line in text.splitlines() if not line.startswith("#")]


@pytest.fixture
def dependabot_branch(tmp_path: Path) -> tuple[Path, Path]:
    """A clone on a branch whose one commit moves idna (which the image installs) in uv.lock, and its bare origin."""
    clone = tmp_path / "repo"
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(clone)], check=True)
    git(clone, "switch", "--quiet", "-c", BRANCH)
    lock = clone / "uv.lock"
    text = lock.read_text()
    assert text.count('name = "idna"\nversion = "3.20"\n') == 1
    text = text.replace('name = "idna"\nversion = "3.20"\n', 'name = "idna"\nversion = "3.21"\n')
    lock.write_text(text.replace("idna-3.20", "idna-3.21"))  # its files' names, which uv checks against the version
    git(clone, "commit", "--quiet", "-am", "Bump idna from 3.20 to 3.21")
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "init", "--quiet", "--bare", str(origin)], check=True)
    git(clone, "remote", "set-url", "origin", str(origin))
    git(clone, "push", "--quiet", "origin", f"{BRANCH}:{BRANCH}")
    return clone, origin


def test_a_dependabot_lock_update_gets_the_requirements_written_pushed_and_ci_started(
    dependabot_branch: tuple[Path, Path], runner_python: Path, hub: LocalHub, tmp_path: Path, github: GitHub
):
    clone, origin = dependabot_branch
    assert "idna==3.21 \\" in exported(clone)
    assert "idna==3.21 \\" not in (clone / REQUIREMENTS).read_text()  # stale: CI would fail on this commit
    work = tmp_path / "act"
    work.mkdir()
    env = {**act_step_env(hub, tmp_path), "GH_STUB_STATE": str(github.state_file)}
    act = Act(runner_python, work, env, repo=clone, workflow=WORKFLOW, tools=github.tools)

    run = act("pull_request", pull_request("dependabot[bot]"), local_dir=None, secrets={"GITHUB_TOKEN": "ghs_stand_in"})

    assert run.succeeded, run.log
    # One commit on top of Dependabot's, changing only the requirements, now what uv exports from the lock.
    assert git(origin, "rev-parse", f"{BRANCH}^").strip() == git(clone, "rev-parse", "HEAD").strip()
    assert git(origin, "diff", "--name-only", f"{BRANCH}^", BRANCH).split() == [REQUIREMENTS]
    pushed = git(origin, "show", f"{BRANCH}:{REQUIREMENTS}")
    assert [line for line in pushed.splitlines() if not line.startswith("#")] == exported(clone)
    assert json.loads(github.state_file.read_text())["dispatches"] == [{"workflow": "ci.yml", "ref": BRANCH}]
    assert "**Pushed**" in "".join(content for _, content in run.summaries())


@pytest.mark.parametrize(
    ("author", "head_repo", "runs"),
    [
        ("dependabot[bot]", "owner/repo", True),
        ("a-person", "owner/repo", False),  # writes the file with nox -s container-requirements
        ("dependabot[bot]", "someone/fork", False),  # a fork's pull request: no write token to give
    ],
)
def test_only_dependabots_own_branches_are_written_to(author: str, head_repo: str, runs: bool):
    job = load_workflow(WORKFLOW)["jobs"]["regenerate"]
    context = {"github": {"event": pull_request(author, head_repo)}}
    assert bool(Evaluator(job["if"], context).value()) is runs
