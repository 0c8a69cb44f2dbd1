"""model-plan.yml run for real with `act`: a pull request that changes models.toml gets its plan as the job summary.

The run happens in a clone of this repository with two commits, the base list and the pull request's,
as GitHub checks out a pull request: HEAD is the change, HEAD^1 the base branch. Like model-cache.yml's
tests (tests/test_workflows.py), act runs the steps on this host, offline, against the local hub.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import BIG, ROOT, SMALL, TOKENIZER, Repos
from tests.local_hub import LocalHub, hub_env
from tests.test_workflows import ANSI, ActRun, load_workflow, runner_python, stub_substitutions, tool

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
    run_dir = tmp_path / "act"
    run_dir.mkdir()
    empty = run_dir / "empty"
    empty.write_text("")
    event = run_dir / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": 7, "head": {"ref": "change"}, "base": {"ref": "main"}}}))
    uv_cache = subprocess.run([tool("uv"), "cache", "dir"], capture_output=True, text=True, check=True).stdout.strip()
    step_env = {
        **hub_env(hub, tmp_path / "hf-home"),
        "UV_OFFLINE": "1",
        "UV_CACHE_DIR": uv_cache,
        "UV_PYTHON_DOWNLOADS": "never",
        "NO_COLOR": "1",
        "STUB_RECORD_DIR": str(run_dir / "record"),
    }
    argv = [
        tool("act"),
        "pull_request",
        "--json",
        *("-C", str(repo), "-W", str(repo / ".github" / "workflows" / "model-plan.yml"), "-e", str(event)),
        *("-P", "ubuntu-latest=-self-hosted"),
        *stub_substitutions(),
        *("--pull=false", "--action-offline-mode", "--no-cache-server"),
        *("--cache-server-addr=127.0.0.1", "--artifact-server-addr=127.0.0.1"),
        *("--action-cache-path", str(run_dir / "act-cache")),
        *("--env-file", str(empty), "--secret-file", str(empty), "--var-file", str(empty)),
        *("--input-file", str(empty)),
        *(f"--env={key}={value}" for key, value in step_env.items()),
    ]
    path = [str(runner_bin), str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"]
    env = {
        "PATH": os.pathsep.join(path),
        "HOME": str(run_dir / "home"),
        "ACT_DISABLE_VERSION_CHECK": "1",
        "DOCKER_HOST": f"unix://{run_dir}/no-docker.sock",
        "LANG": "C.UTF-8",
    }
    result = subprocess.run(argv, cwd=run_dir, env=env, capture_output=True, text=True, timeout=300, check=False)
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    run = ActRun(result.returncode, events, run_dir / "record")
    (run_dir / "act.log").write_text(run.log + "\n" + ANSI.sub("", result.stderr))
    return run


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
