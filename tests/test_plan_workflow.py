"""model-plan.yml run for real with `act`: a pull request that changes models.toml gets its plan as the job summary.

The run happens in a clone of this repository with two commits, the base list and the pull request's,
as GitHub checks out a pull request: HEAD is the change, HEAD^1 the base branch. Like model-cache.yml's
tests (tests/test_workflows.py), act runs the steps on this host, offline, against the local hub.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import BIG, ROOT, SMALL, TOKENIZER, Repos
from tests.local_hub import LocalHub
from tests.test_workflows import Act, ActRun, act_step_env, load_workflow, runner_python

__all__ = ["runner_python"]  # a fixture, used by name

NEW = "Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice"


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@localhost"}
    env.update(GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@localhost")
    return subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=True).stdout


@pytest.fixture
def pull_request(tmp_path: Path) -> Path:
    """A clone whose last commit changes models.toml, as a pull request's merge commit does."""
    clone = tmp_path / "repo"
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(clone)], check=True)
    return clone


def propose(repo: Path, text: str) -> None:
    (repo / "models.toml").write_text(text)
    git(repo, "commit", "--quiet", "-am", "Change the model list")


def run_plan(repo: Path, runner_bin: Path, hub: LocalHub, tmp_path: Path) -> ActRun:
    work = tmp_path / "act"
    work.mkdir()
    act = Act(
        runner_bin, work, act_step_env(hub, tmp_path), repo=repo, workflow=repo / ".github/workflows/model-plan.yml"
    )
    payload = {"pull_request": {"number": 7, "head": {"ref": "change"}, "base": {"ref": "main"}}}
    return act("pull_request", payload, local_dir=None)


def test_a_changed_list_gets_its_plan_as_the_job_summary(
    pull_request: Path, runner_python: Path, hub: LocalHub, repos: Repos, tmp_path: Path
):
    hub.commit(NEW, {"config.json": b"{}", "model.safetensors": b"w" * 3000})
    base = (pull_request / "models.toml").read_text()
    propose(pull_request, base.replace(BIG, NEW))

    run = run_plan(pull_request, runner_python, hub, tmp_path)
    assert run.succeeded, run.log
    ((step, summary),) = run.summaries()
    assert step == "Plan"
    assert f"| `{NEW}` | ➕ added |" in summary
    assert f"| `{BIG}` | ➖ removed-from-list |" in summary
    assert f"| `{SMALL}` | • unchanged |" in summary
    assert "**At most:** 2.9 KiB." in summary
    assert hub.count(kind="revision", repo_id=TOKENIZER) == 1


def test_an_invalid_list_fails_the_check_with_the_one_line_error(
    pull_request: Path, runner_python: Path, hub: LocalHub, repos: Repos, tmp_path: Path
):
    propose(pull_request, (pull_request / "models.toml").read_text().replace(f'"{SMALL}"', '"not a repo"'))
    run = run_plan(pull_request, runner_python, hub, tmp_path)
    assert not run.succeeded
    assert run.step_results()["Plan"] == "failure"
    assert "repo_id 'not a repo' is not 'owner/name'" in run.log
    assert run.summaries() == []


def test_the_plan_workflow_needs_no_secret_and_runs_for_forks():
    path = ROOT / ".github" / "workflows" / "model-plan.yml"
    workflow = load_workflow(path)
    assert workflow["on"] == {"pull_request": {"paths": ["models.toml"]}}
    assert "secrets." not in path.read_text()
    assert [job for job in workflow["jobs"].values() if "environment" in job] == []
