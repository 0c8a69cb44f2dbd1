"""model-plan.yml run for real with `act`: a pull request that changes models.toml gets its plan as the job summary.

The run happens in a clone of this repository with two commits, the base list and the pull request's,
as GitHub checks out a pull request: HEAD is the change, HEAD^1 the base branch. Like model-cache.yml's
tests (tests/test_workflows.py), act runs the steps on this host, offline, against the local hub.
"""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from local_hub.server import LocalHub
from modal_jobs import models_lock
from tests.conftest import BIG, ROOT, SMALL, TOKENIZER, Repos
from tests.test_workflows import Act, ActRun, act_step_env, git, load_workflow, lock_against, runner_python

__all__ = ["runner_python"]  # a fixture, used by name

NEW = "Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice"


@pytest.fixture
def pull_request(tmp_path: Path, hub: LocalHub, repos: Repos) -> Path:
    """A clone whose base commit holds models.toml and its lock, as main does once a list was merged."""
    clone = tmp_path / "repo"
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(clone)], check=True)
    lock_against(hub, clone, tmp_path)
    return clone


def propose(repo: Path, text: str, hub: LocalHub | None, tmp_path: Path) -> None:
    """The pull request's commit: a changed list, and its lock written anew (unless `hub` is None)."""
    (repo / "models.toml").write_text(text)
    if hub is not None:
        lock_against(hub, repo, tmp_path)
    else:
        git(repo, "commit", "--quiet", "-am", "Change the model list, not its lock")


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
    propose(pull_request, base.replace(BIG, NEW), hub, tmp_path)
    moved = hub.commit(TOKENIZER, {"config.json": b"{}"})  # after the lock: the merge applies the locked commit

    hub.reset_counts()
    run = run_plan(pull_request, runner_python, hub, tmp_path)
    assert run.succeeded, run.log
    assert run.step_results()["Check the lock"] == "success"
    summaries = dict(run.summaries())
    assert list(summaries) == ["Check the lock", "Plan"]
    summary = summaries["Plan"]
    assert f"| `{NEW}` | ➕ added |" in summary
    assert f"| `{BIG}` | ➖ removed-from-list |" in summary
    assert f"| `{SMALL}` | • unchanged |" in summary
    assert f"| `{TOKENIZER}` | • unchanged | `{repos.commits[TOKENIZER][:7]}` |" in summary
    assert moved[:7] not in summary
    assert "**At most:** 2.9 KiB." in summary
    # Both locks answer; only the entry the lock adds is checked on the Hub: its history and its tree.
    assert {(r.kind, r.repo_id) for r in hub.requests} == {("commits", NEW), ("tree", NEW)}


def test_a_lock_naming_a_hub_pull_requests_commit_fails_the_check_naming_the_entry(
    pull_request: Path, runner_python: Path, hub: LocalHub, repos: Repos, tmp_path: Path
):
    """A pull request that changes models.lock alone, to a commit the Hub serves only on its own pull request."""
    forged = hub.open_pr(BIG, {**repos.files[BIG], "model.safetensors": b"someone else's weights"})
    lock = (pull_request / "models.lock").read_text()
    pinned = (
        (pull_request / "models.toml")
        .read_text()
        .replace(f'"{BIG}"\nsize = "1.7B"\nrevision = "main"', f'"{BIG}"\nsize = "1.7B"\nrevision = "{forged}"')
    )
    (pull_request / "models.toml").write_text(pinned)
    lock_against(hub, pull_request, tmp_path)  # the forger's lock of that commit, as `lock` writes it ...
    as_locked = models_lock.parse((pull_request / "models.lock").read_text(), pull_request / "models.lock")
    renamed = [replace(m, revision="main") if m.repo_id == BIG else m for m in as_locked.models]
    forged_lock = models_lock.render(models_lock.ModelsLock(tuple(renamed)))  # its digest recomputed
    git(pull_request, "reset", "--quiet", "--hard", "HEAD^")
    (pull_request / "models.lock").write_text(forged_lock)  # ... then presented as main's
    assert forged_lock != lock
    git(pull_request, "commit", "--quiet", "-am", "models.lock: the Hub moved")

    run = run_plan(pull_request, runner_python, hub, tmp_path)

    assert not run.succeeded
    assert run.step_results()["Check the lock"] == "success"  # the lock says what the list says
    assert run.step_results()["Plan"] == "failure"
    summary = dict(run.summaries())["Plan"]
    assert f"| `{BIG}` | ❌ failed |" in summary
    assert (
        f"which is not in the history of revision 'main' on the Hub (its head is {repos.commits[BIG][:12]})" in summary
    )
    assert f"{BIG}: models.lock names commit {forged[:12]}" in run.log


def test_a_list_changed_without_its_lock_fails_naming_the_command(
    pull_request: Path, runner_python: Path, hub: LocalHub, repos: Repos, tmp_path: Path
):
    hub.commit(NEW, {"config.json": b"{}"})
    propose(pull_request, (pull_request / "models.toml").read_text().replace(BIG, NEW), None, tmp_path)
    run = run_plan(pull_request, runner_python, hub, tmp_path)
    assert not run.succeeded
    assert run.step_results()["Check the lock"] == "failure"
    assert f"{NEW}: in models.toml, not in the lock" in run.log
    assert "run `python3 tools/nox_locked.py -s lock`" in run.log
    assert [step for step, _ in run.summaries()] == ["Check the lock"]


def test_an_invalid_list_fails_the_check_with_the_one_line_error(
    pull_request: Path, runner_python: Path, hub: LocalHub, repos: Repos, tmp_path: Path
):
    propose(
        pull_request, (pull_request / "models.toml").read_text().replace(f'"{SMALL}"', '"not a repo"'), None, tmp_path
    )
    run = run_plan(pull_request, runner_python, hub, tmp_path)
    assert not run.succeeded
    assert run.step_results()["Check the lock"] == "failure"
    assert "repo_id 'not a repo' is not 'owner/name'" in run.log
    assert run.summaries() == []


def test_the_plan_workflow_needs_no_secret_and_runs_for_forks():
    path = ROOT / ".github" / "workflows" / "model-plan.yml"
    workflow = load_workflow(path)
    assert workflow["on"] == {"pull_request": {"paths": ["models.toml", "models.lock"]}}
    assert "secrets." not in path.read_text()
    assert [job for job in workflow["jobs"].values() if "environment" in job] == []
