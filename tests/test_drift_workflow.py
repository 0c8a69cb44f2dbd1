"""model-drift.yml run for real with `act`: a pull request when the Hub moves, an issue when the volume rots.

As in tests/test_workflows.py, act runs the workflow's steps on this host, offline, against the local
hub, in a clone whose models.lock pins the hub's commits (`locked_repo`). Two stand-ins make the
GitHub side local: `gh` is tests/resources/gh_stand_in.py, first on PATH, which keeps the pull
requests and issues in a JSON file and records every call; `origin` is a bare repository, so the
refresh job's `git push origin` lands where the test can read it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from local_hub.server import LocalHub
from modal_jobs.model_list import load_model_list
from tests.conftest import BIG, ROOT, SMALL, TOKENIZER, Cli, Repos, model_dir
from tests.test_workflows import (
    MODEL_CACHE,
    Act,
    ActRun,
    act_step_env,
    git,
    load_workflow,
    lock_against,
    locked_repo,
    runner_python,
    steps,
    strings_in,
)

__all__ = ["locked_repo", "runner_python"]  # fixtures, used by name

MODEL_DRIFT = ROOT / ".github" / "workflows" / "model-drift.yml"
GH_STAND_IN = Path(__file__).parent / "resources" / "gh_stand_in.py"
BRANCH = "model-drift/lock-refresh"
PR_TITLE = "models.lock: the Hub moved"
FIRST_LOCK_TITLE = "models.lock: the first lock"
ISSUE_TITLE = "Model cache: the volume check failed"
MAIN = {"ref": "refs/heads/main"}  # a workflow_dispatch on main, as the schedule runs
TOKEN = {"GITHUB_TOKEN": "ghs_stand_in"}  # what act hands the workflow as `github.token`


@dataclass
class GitHub:
    """What the `gh` stand-in holds: the repository's pull requests and issues, kept across runs."""

    state_file: Path
    tools: Path

    def state(self) -> dict[str, Any]:
        if not self.state_file.exists():
            return {"pulls": [], "issues": [], "labels": []}
        data: dict[str, Any] = json.loads(self.state_file.read_text())
        return data

    def pulls(self) -> list[dict[str, Any]]:
        return list(self.state()["pulls"])

    def issues(self) -> list[dict[str, Any]]:
        return list(self.state()["issues"])

    def open_issue(self, title: str, label: str) -> None:
        """An issue a previous check opened."""
        state = {"next": 2, "pulls": [], "labels": [label]}
        state["issues"] = [
            {"number": 1, "state": "open", "title": title, "labels": [label], "body": "", "comments": []}
        ]
        self.state_file.write_text(json.dumps(state))


def gh_calls(run: ActRun) -> list[dict[str, Any]]:
    record = run.record / "gh.jsonl"
    return [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []


@pytest.fixture
def github(tmp_path: Path) -> GitHub:
    tools = tmp_path / "runner-tools"
    tools.mkdir()
    (tools / "gh").symlink_to(GH_STAND_IN)
    return GitHub(tmp_path / "github.json", tools)


@pytest.fixture
def origin(locked_repo: Path, tmp_path: Path) -> Path:
    """A bare repository standing in for GitHub's: the clone's `origin`, so nothing is pushed anywhere else."""
    bare = tmp_path / "origin.git"
    subprocess.run(["git", "init", "--quiet", "--bare", str(bare)], check=True)
    git(locked_repo, "remote", "set-url", "origin", str(bare))
    return bare


def drift_act(job: str, runner_bin: Path, hub: LocalHub, tmp_path: Path, repo: Path, github: GitHub) -> Act:
    work = tmp_path / f"act-{job}"
    work.mkdir(exist_ok=True)
    env = {**act_step_env(hub, tmp_path), "GH_STUB_STATE": str(github.state_file)}
    return Act(runner_bin, work, env, repo=repo, workflow=MODEL_DRIFT, job=job, tools=github.tools)


@pytest.fixture
def fork(tmp_path: Path) -> Path:
    """A new fork: this repository as it ships, without models.lock, and a bare `origin`."""
    clone = tmp_path / "fork"
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(clone)], check=True)
    assert not (clone / "models.lock").exists()
    bare = tmp_path / "fork-origin.git"
    subprocess.run(["git", "init", "--quiet", "--bare", str(bare)], check=True)
    git(clone, "remote", "set-url", "origin", str(bare))
    return clone


@pytest.fixture
def refresh(runner_python: Path, hub: LocalHub, tmp_path: Path, locked_repo: Path, origin: Path, github: GitHub) -> Act:
    return drift_act("lock-refresh", runner_python, hub, tmp_path, locked_repo, github)


@pytest.fixture
def check(runner_python: Path, hub: LocalHub, tmp_path: Path, locked_repo: Path, origin: Path, github: GitHub) -> Act:
    return drift_act("volume-check", runner_python, hub, tmp_path, locked_repo, github)


def locked_commits(text: str) -> dict[str, dict[str, Any]]:
    return {model["repo_id"]: model for model in tomllib.loads(text)["model"]}


def pushed_lock(origin: Path) -> str:
    return git(origin, "show", f"{BRANCH}:models.lock")


def moved_files(repos: Repos, repo_id: str, config: bytes) -> dict[str, bytes]:
    """The repo's files with a new config.json: a fix Qwen publishes to one file."""
    return {**repos.files[repo_id], "config.json": config}


# -- lock refresh -----------------------------------------------------------------------------


def test_the_hub_moving_one_model_opens_one_pull_request_updates_it_and_closes_it_when_it_moves_back(
    refresh: Act, hub: LocalHub, repos: Repos, locked_repo: Path, origin: Path, github: GitHub
):
    main_lock = (locked_repo / "models.lock").read_text()
    old = repos.commits[BIG]
    moved = hub.commit(BIG, moved_files(repos, BIG, b'{"model_type": "qwen3_tts", "fixed": 1}'))

    run = refresh("workflow_dispatch", MAIN, local_dir=None, secrets=TOKEN)

    assert run.succeeded, run.log
    [pr] = github.pulls()
    assert (pr["state"], pr["head"], pr["base"], pr["title"]) == ("open", BRANCH, "main", PR_TITLE)
    # The branch is main plus one commit that changes only BIG's entry of models.lock.
    assert git(origin, "rev-parse", f"{BRANCH}^").strip() == git(locked_repo, "rev-parse", "HEAD").strip()
    assert git(origin, "diff", "--name-only", f"{BRANCH}^", BRANCH).split() == ["models.lock"]
    before, after = locked_commits(main_lock), locked_commits(pushed_lock(origin))
    assert {repo_id for repo_id in before if before[repo_id] != after[repo_id]} == {BIG}
    assert (before[BIG]["commit"], after[BIG]["commit"]) == (old, moved)
    # The body is the table `plan` writes, and the job summary shows it too.
    body = pr["body"]
    assert f"| `{BIG}` | ✏️ changed | `{moved[:7]}` |" in body
    assert f"| `{SMALL}` | • unchanged |" in body
    assert f"| `{TOKENIZER}` | • unchanged |" in body
    assert old[:7] in body
    plan = next(content for step, content in run.summaries() if step == "Plan the change")
    assert plan in body
    assert all(call["gh_token"] for call in gh_calls(run))

    # A week later the Hub has moved again: the same pull request, now with the newer commit.
    newer = hub.commit(BIG, moved_files(repos, BIG, b'{"model_type": "qwen3_tts", "fixed": 2}'))
    run = refresh("workflow_dispatch", MAIN, local_dir=None, secrets=TOKEN)

    assert run.succeeded, run.log
    [pr] = github.pulls()
    assert (pr["number"], pr["state"], pr["edits"]) == (1, "open", 1)
    assert f"| `{BIG}` | ✏️ changed | `{newer[:7]}` |" in pr["body"]
    assert locked_commits(pushed_lock(origin))[BIG]["commit"] == newer
    assert git(origin, "rev-list", "--count", f"{BRANCH}^..{BRANCH}").strip() == "1"

    # Then the Hub moves main back to the locked commit: nothing to merge, the pull request is closed.
    hub.tag(BIG, "main", old)
    run = refresh("workflow_dispatch", MAIN, local_dir=None, secrets=TOKEN)

    assert run.succeeded, run.log
    [pr] = github.pulls()
    assert (pr["state"], pr["branch_deleted"]) == ("closed", True)
    assert "current again" in pr["comments"][-1]
    summary = "".join(content for _, content in run.summaries())
    assert "**models.lock is current:**" in summary
    assert "**Closed** pull request #1" in summary


def test_nothing_moved_means_no_pull_request_and_a_summary_saying_so(
    refresh: Act, repos: Repos, locked_repo: Path, origin: Path, github: GitHub
):
    run = refresh("workflow_dispatch", MAIN, local_dir=None, secrets=TOKEN)

    assert run.succeeded, run.log
    assert github.pulls() == []
    assert [call["argv"][:2] for call in gh_calls(run)] == [["pr", "list"]]  # only asked for one to close
    assert git(origin, "branch", "--list").strip() == ""  # nothing pushed
    assert {"Plan the change", "Push the branch", "Open or update the pull request"}.isdisjoint(run.step_results())
    summaries = dict(run.summaries())
    assert "**models.lock is current:** no branch or tag of models.toml moved on the Hub" in summaries["Compare"]
    for repo_id in (BIG, SMALL, TOKENIZER):
        assert f"| `{repo_id}` | • unchanged | `{repos.commits[repo_id][:7]}` |" in summaries["Upgrade the lock"]


def test_a_fork_without_a_lock_gets_the_first_lock_as_a_pull_request_showing_every_model_added(
    runner_python: Path, hub: LocalHub, repos: Repos, tmp_path: Path, fork: Path, github: GitHub
):
    """The first lock's pull request: every model added, with its commit, and all of its bytes to transfer."""
    run = drift_act("lock-refresh", runner_python, hub, tmp_path, fork, github)(
        "workflow_dispatch", MAIN, local_dir=None, secrets=TOKEN
    )

    assert run.succeeded, run.log
    assert any("main has no models.lock yet" in notice for notice in run.annotations("notice"))
    [pr] = github.pulls()
    assert (pr["state"], pr["head"], pr["base"], pr["title"]) == ("open", BRANCH, "main", FIRST_LOCK_TITLE)
    origin = Path(git(fork, "remote", "get-url", "origin").strip())
    assert git(origin, "diff", "--name-status", f"{BRANCH}^", BRANCH).split() == ["A", "models.lock"]
    pushed = locked_commits(pushed_lock(origin))
    assert {repo_id: model["commit"] for repo_id, model in pushed.items()} == repos.commits
    body = pr["body"]
    assert body.startswith("main has no models.lock yet.")
    for repo_id, commit in repos.commits.items():
        assert f"| `{repo_id}` | ➕ added | `{commit[:7]}` |" in body
    # Nothing is on the volume yet: the merge transfers every byte the plan counts.
    total = re.search(r"\*\*Total:\*\* (.+) in 3 models\.", body)
    at_most = re.search(r"\*\*At most:\*\* (.+)\.", body)
    assert total and at_most and at_most[1] == total[1], body


# -- volume check -----------------------------------------------------------------------------


def verify_rows(run: ActRun) -> dict[str, dict[str, Any]]:
    data = json.loads((run.artifact("model-drift-volume-check-summary") / "verify.json").read_text())
    return {row["repo_id"]: row for row in data["models"]}


def test_a_sound_volume_passes_and_closes_the_open_issue(
    check: Act, cli: Cli, repos: Repos, target: Path, github: GitHub
):
    assert cli("download").returncode == 0
    github.open_issue(ISSUE_TITLE, "model-cache")

    run = check("workflow_dispatch", MAIN, local_dir=target, secrets=TOKEN)

    assert run.succeeded, run.log
    assert {row["status"] for row in verify_rows(run).values()} == {"ok"}
    [issue] = github.issues()
    assert issue["state"] == "closed"
    assert "passed" in issue["comments"][-1]
    assert "Open or comment on the issue" not in run.step_results()  # skipped
    assert "**Closed** issue #1" in "".join(content for _, content in run.summaries())


def test_a_corrupted_file_fails_the_check_names_it_and_opens_one_issue_then_comments_on_it(
    check: Act, cli: Cli, repos: Repos, target: Path, github: GitHub
):
    assert cli("download").returncode == 0
    damaged = model_dir(target, SMALL) / "speech_tokenizer" / "model.safetensors"
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size: only the hash can tell
    damaged.write_bytes(bytes(data))

    run = check("workflow_dispatch", MAIN, local_dir=target, secrets=TOKEN)

    assert not run.succeeded
    assert run.step_results()["Check"] == "failure"
    rows = verify_rows(run)
    assert rows[SMALL]["status"] == "damaged"
    assert "speech_tokenizer/model.safetensors" in rows[SMALL]["error"]
    assert {rows[BIG]["status"], rows[TOKENIZER]["status"]} == {"ok"}
    summaries = dict(run.summaries())
    assert f"| `{SMALL}` | ❌ damaged |" in summaries["Check"]
    assert f"- `{SMALL}`: " in summaries["Check"] and "speech_tokenizer/model.safetensors" in summaries["Check"]
    [issue] = github.issues()
    assert (issue["state"], issue["title"], issue["labels"]) == ("open", ISSUE_TITLE, ["model-cache"])
    assert "speech_tokenizer/model.safetensors" in issue["body"]
    assert f"| `{SMALL}` | ❌ damaged |" in issue["body"]
    assert github.state()["labels"] == ["model-cache"]

    run = check("workflow_dispatch", MAIN, local_dir=target, secrets=TOKEN)

    assert not run.succeeded
    [issue] = github.issues()
    assert issue["state"] == "open"
    [comment] = issue["comments"]
    assert f"| `{SMALL}` | ❌ damaged |" in comment
    assert "**Commented** on issue #1." in "".join(content for _, content in run.summaries())


def test_a_model_removed_from_the_volume_fails_the_check_and_keeps_the_issue_open_until_a_download_restores_it(
    check: Act, cli: Cli, repos: Repos, target: Path, github: GitHub
):
    assert cli("download").returncode == 0
    small = next(entry.dirname for entry in load_model_list(ROOT / "models.toml").models if entry.repo_id == SMALL)
    shutil.rmtree(target / small)  # cleared by hand, or lost

    run = check("workflow_dispatch", MAIN, local_dir=target, secrets=TOKEN)

    assert not run.succeeded
    assert run.step_results()["Check"] == "failure"
    rows = verify_rows(run)
    assert set(rows) == {BIG, SMALL, TOKENIZER}  # every model of the list, not only what is there
    assert "missing" in f"{rows[SMALL]['status']} {rows[SMALL].get('error')}", rows[SMALL]
    assert {rows[BIG]["status"], rows[TOKENIZER]["status"]} == {"ok"}
    [issue] = github.issues()
    assert (issue["state"], issue["title"]) == ("open", ISSUE_TITLE)
    assert f"`{SMALL}`" in issue["body"]

    assert cli("download").returncode == 0  # Actions > Model cache > download
    run = check("workflow_dispatch", MAIN, local_dir=target, secrets=TOKEN)

    assert run.succeeded, run.log
    assert {row["status"] for row in verify_rows(run).values()} == {"ok"}
    [issue] = github.issues()
    assert issue["state"] == "closed"
    assert "every model of models.toml is on the volume" in issue["comments"][-1]


def test_before_set_up_the_check_ends_green_with_notices_and_opens_no_issue(
    runner_python: Path, hub: LocalHub, tmp_path: Path, fork: Path, github: GitHub
):
    """A fork's first Monday: no lock, no Modal token. Nothing is wrong yet, so nothing is reported as wrong."""
    run = drift_act("volume-check", runner_python, hub, tmp_path, fork, github)(
        "schedule", MAIN, local_dir=None, secrets=TOKEN
    )

    assert run.succeeded, run.log
    assert run.step_results() == {"Check out": "success", "Check the set-up": "success"}
    lock, token = run.annotations("notice")
    assert "models.lock is not on main yet" in lock
    assert "the environment model-cache has no Modal token yet" in token
    assert gh_calls(run) == []
    assert github.issues() == []
    [(step, summary)] = run.summaries()
    assert step == "Check the set-up" and lock in summary and token in summary


def test_a_stale_model_fails_the_check_naming_both_commits(
    check: Act, cli: Cli, hub: LocalHub, repos: Repos, target: Path, locked_repo: Path, tmp_path: Path, github: GitHub
):
    assert cli("download").returncode == 0  # the volume at the first commits
    moved = hub.commit(BIG, moved_files(repos, BIG, b'{"model_type": "qwen3_tts", "fixed": 1}'))
    lock_against(hub, locked_repo, tmp_path, upgrade=True)  # a drift pull request was merged; no download yet

    run = check("workflow_dispatch", MAIN, local_dir=target, secrets=TOKEN)

    assert not run.succeeded
    old = repos.commits[BIG]
    message = f"at commit {old[:12]}, models.lock names {moved[:12]}"
    assert message in verify_rows(run)[BIG]["error"]
    summaries = dict(run.summaries())
    assert f"- `{BIG}`: {message}" in summaries["Check"]
    [issue] = github.issues()
    assert message in issue["body"]


# -- the workflow file ------------------------------------------------------------------------


def test_runs_weekly_and_by_hand():
    on = load_workflow(MODEL_DRIFT)["on"]
    assert set(on) == {"schedule", "workflow_dispatch"}
    [schedule] = on["schedule"]
    *_, day, month, weekday = schedule["cron"].split()
    assert (day, month) == ("*", "*") and weekday.isdigit()  # one day a week


def test_the_refresh_job_never_sees_a_modal_secret():
    job = load_workflow(MODEL_DRIFT)["jobs"]["lock-refresh"]
    assert not any("secrets." in text for text in strings_in(job))
    assert "environment" not in job


def test_the_check_job_never_gets_contents_write():
    job = load_workflow(MODEL_DRIFT)["jobs"]["volume-check"]
    assert job["permissions"] == {"contents": "read", "issues": "write"}
    assert job["environment"] == "model-cache"


def test_the_check_has_a_group_of_its_own_and_only_its_check_step_holds_the_secrets():
    """Its own group: never a queued download's pending slot (tests/test_concurrency.py runs the rule)."""
    workflow = load_workflow(MODEL_DRIFT)
    job = workflow["jobs"]["volume-check"]
    cache: Mapping[str, Any] = load_workflow(MODEL_CACHE)["concurrency"]
    assert not job["concurrency"]["group"].startswith(cache["group"].split("${{")[0])
    assert not any("secrets." in text for text in strings_in({k: v for k, v in job.items() if k != "steps"}))
    holders = {
        step["name"]
        for _, step in steps(workflow)
        for value in step.get("env", {}).values()
        if "secrets." in str(value) and "!= ''" not in str(value)  # the first step sees only whether one is set
    }
    assert holders == {"Check"}
    gh_steps = {step["name"] for _, step in steps(workflow) if "gh " in step.get("run", "")}
    assert not any("secrets." in str(step.get("env", {})) for _, step in steps(workflow) if step["name"] in gh_steps)
