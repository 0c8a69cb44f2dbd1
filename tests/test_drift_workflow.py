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
from modal_jobs.model_dir import FileRecord
from modal_jobs.model_list import load_model_list
from modal_jobs.models_lock import LockedModel, ModelsLock, render
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
# The job that opens the pull request; act runs the job it needs (lock-refresh, which computes the lock) first.
REFRESH = "lock-pull-request"
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
    return drift_act(REFRESH, runner_python, hub, tmp_path, locked_repo, github)


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
    assert [call["argv"][:2] for call in gh_calls(run)] == [["pr", "list"]] * 2  # only asked for one to close
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
    run = drift_act(REFRESH, runner_python, hub, tmp_path, fork, github)(
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


def test_a_forks_branch_named_like_the_drift_branch_is_neither_edited_nor_closed(
    refresh: Act, hub: LocalHub, repos: Repos, github: GitHub
):
    """`gh pr list --head` matches a branch of that name in any fork: only the workflow's own pull request is its."""
    strangers = [
        {"number": 1, "head_owner": "mallory", "cross_repository": True, "author": "mallory"},  # a fork's
        {"number": 2, "head_owner": "owner", "cross_repository": False, "author": "someone"},  # a person's, here
    ]
    pulls = [
        {"state": "open", "head": BRANCH, "base": "main", "title": "Fix a typo", "body": "code changes", "edits": 0}
        | {"comments": [], "branch_deleted": False}
        | stranger
        for stranger in strangers
    ]
    github.state_file.write_text(json.dumps({"next": 3, "pulls": pulls}))
    hub.commit(BIG, moved_files(repos, BIG, b'{"model_type": "qwen3_tts", "fixed": 1}'))

    run = refresh("workflow_dispatch", MAIN, local_dir=None, secrets=TOKEN)

    assert run.succeeded, run.log
    first, second, ours = github.pulls()
    assert [first, second] == pulls  # untouched: not edited, not commented on, not closed
    assert (ours["number"], ours["title"], ours["author"]) == (3, PR_TITLE, "app/github-actions")
    warnings = run.annotations("warning")
    assert any("#1 (from mallory, by mallory)" in w and "not this workflow's: left alone" in w for w in warnings)
    assert any("#2 (from owner, by someone)" in w for w in warnings)

    hub.tag(BIG, "main", repos.commits[BIG])  # the Hub moves back: only the workflow's own pull request is closed
    run = refresh("workflow_dispatch", MAIN, local_dir=None, secrets=TOKEN)

    assert run.succeeded, run.log
    assert [pr["state"] for pr in github.pulls()] == ["open", "open", "closed"]
    assert github.pulls()[:2] == pulls
    assert [call["argv"][2] for call in gh_calls(run) if call["argv"][:2] == ["pr", "close"]] == ["3"]


def test_a_branch_holding_a_commit_the_job_did_not_push_is_not_overwritten(
    refresh: Act, hub: LocalHub, repos: Repos, locked_repo: Path, origin: Path, github: GitHub, tmp_path: Path
):
    hub.commit(BIG, moved_files(repos, BIG, b'{"model_type": "qwen3_tts", "fixed": 1}'))
    assert refresh("workflow_dispatch", MAIN, local_dir=None, secrets=TOKEN).succeeded
    # A person adds a commit to the drift branch (say, a note for reviewers).
    work = tmp_path / "person"
    git(tmp_path, "clone", "--quiet", "--branch", BRANCH, str(origin), str(work))
    (work / "NOTES.md").write_text("checked the new config by hand\n")
    git(work, "add", "NOTES.md")
    git(work, "commit", "--quiet", "-m", "A note")
    git(work, "push", "--quiet", "origin", BRANCH)
    theirs = git(origin, "rev-parse", BRANCH).strip()
    newer = hub.commit(BIG, moved_files(repos, BIG, b'{"model_type": "qwen3_tts", "fixed": 2}'))

    run = refresh("workflow_dispatch", MAIN, local_dir=None, secrets=TOKEN)

    assert not run.succeeded
    assert run.step_results()["Push the branch"] == "failure"
    errors = run.annotations("error")
    assert len(errors) == 1, [e for e in run.events if e.get("step") == "Push the branch"]
    [error] = errors
    assert f"the branch {BRANCH} holds commits this workflow did not push" in error and "not overwritten" in error
    assert git(origin, "rev-parse", BRANCH).strip() == theirs  # their commit is still there
    [pr] = github.pulls()
    assert pr["edits"] == 0 and newer[:7] not in pr["body"]


def test_the_job_with_the_write_token_runs_no_project_code_and_no_installed_package():
    """Installed packages could put a fake git or gh first on PATH: they run only in the job without a write token."""
    jobs = load_workflow(MODEL_DRIFT)["jobs"]
    writer, computer = jobs["lock-pull-request"], jobs["lock-refresh"]
    assert computer["permissions"] == {"contents": "read"}
    assert writer["permissions"] == {"contents": "write", "pull-requests": "write"}
    assert writer["needs"] == "lock-refresh"
    used = [step["uses"].split("@")[0] for step in writer["steps"] if "uses" in step]
    assert used == ["actions/checkout", "actions/download-artifact"]
    scripts = "\n".join(step.get("run", "") for step in writer["steps"])
    assert re.search(r"\b(python3?|nox|nox_locked|pip3?|uv|uvx|pipx|npm|npx|node|modal_jobs|tools/)\b", scripts) is None
    assert "gh " in scripts and "git " in scripts
    # The upload is made where the lock is computed; what the writer commits is checked before it is used.
    [upload] = [step for step in computer["steps"] if step.get("uses", "").startswith("actions/upload-artifact@")]
    assert (
        upload["with"]["name"]
        == next(s for s in writer["steps"] if "uses" in s and "download" in s["uses"])["with"]["name"]
    )
    names = [step["name"] for step in writer["steps"]]
    assert names.index("Check the proposal") < names.index("Push the branch")


def check_proposal(tmp_path: Path, files: Mapping[str, bytes | str]) -> subprocess.CompletedProcess[str]:
    """The write job's own check, run on a proposal directory as the artifact would hold it."""
    script = next(s for _, s in steps(load_workflow(MODEL_DRIFT)) if s.get("name") == "Check the proposal")["run"]
    work = tmp_path / "runner"
    (work / "proposal").mkdir(parents=True)
    for name, content in files.items():
        path = work / "proposal" / name
        if isinstance(content, str):
            path.symlink_to(content)
        else:
            path.write_bytes(content)
    return subprocess.run(["bash", "-c", script], cwd=work, capture_output=True, text=True, check=False)


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({}, None),
        ({"extra.yml": b"on: push"}, "it holds: f extra.yml f models.lock f pr-body.md"),
        ({"pr-body.md": "/etc/passwd"}, "it holds: f models.lock l pr-body.md"),
        ({"pr-body.md": b"x" * 60001}, "pr-body.md is over 60000 bytes"),
        ({"models.lock": b"version = 1\n"}, "models.lock names no model"),
        ({"models.lock": b"[[model]]\n[tool.evil]\n"}, "models.lock has lines lock never writes, first: 2:[tool.evil]"),
        (
            {"models.lock": b'[[model]]\nrepo_id = "a/b"\ncommit = "refs/pr/1"\n'},
            'models.lock has lines lock never writes, first: 3:commit = "refs/pr/1"',
        ),
    ],
)
def test_the_write_job_refuses_a_proposal_of_another_shape(
    tmp_path: Path, change: dict[str, bytes | str], said: str | None
):
    files = (
        FileRecord("config.json", 2, "git-sha1:" + "b" * 40),
        FileRecord("w/model.safetensors", 3, "sha256:" + "c" * 64),
    )
    lock = ModelsLock((LockedModel("Qwen/X-1.7B", "v1.0", ("*.json", "w/*"), ("*.bin",), "a" * 40, files),))
    proposal: dict[str, bytes | str] = {"models.lock": render(lock).encode(), "pr-body.md": b"# Plan\n"}
    result = check_proposal(tmp_path, proposal | change)
    if said is None:
        assert result.returncode == 0, result.stdout + result.stderr
    else:
        assert result.returncode == 1
        assert (
            f"::error::the artifact model-drift-proposal is not what refresh models.lock writes ({said}"
            in result.stdout
        )


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
    assert f"- `{BIG}`: `{message}" in summaries["Check"]
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
