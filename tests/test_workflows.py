"""The GitHub workflows: what the linters don't check, and model-cache.yml run for real with `act`.

`act` executes the workflow's own steps on this host (`-P ubuntu-latest=-self-hosted`), offline:
actions/checkout is act's built-in copy of the work tree; the other actions are swapped for the stubs
in tests/resources/actions by `--local-repository`, so the workflow file runs unchanged. The run works
on a local directory (MODEL_CACHE_LOCAL_DIR, the workflow's test-only hook) against the local hub on
127.0.0.1. Nothing inside reaches a registry: the runner's `python3` is a bare venv; tools/nox_locked.py
finds this environment's uv on PATH (the version uv.lock pins, as this environment comes from uv.lock)
and so fetches nothing, and every `uv sync` installs from uv's cache (UV_OFFLINE).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from local_hub.server import LocalHub, hub_env
from modal_jobs.model_dir import MANIFEST_NAME, POINTER_NAME, REVISIONS_DIR
from modal_jobs.model_list import load_model_list
from modal_jobs.reader import model_path
from tests.conftest import BIG, ROOT, SMALL, TOKENIZER, Cli, Repos, tree
from tests.modal_api_stand_in import ModalStandIn

WORKFLOWS = ROOT / ".github" / "workflows"
MODEL_CACHE = WORKFLOWS / "model-cache.yml"
STUBS = Path(__file__).parent / "resources" / "actions"
MODEL_LIST = load_model_list(ROOT / "models.toml")
VOLUME = MODEL_LIST.volume.name

PINNED = re.compile(r"(?P<repo>[\w.-]+/[\w.-]+)@(?P<sha>[0-9a-f]{40})")
VERSION_COMMENT = re.compile(r"uses: (?P<ref>\S+) # v\d+(\.\d+)*$", re.MULTILINE)
ANSI = re.compile(r"\x1b\[[0-9;]*m")
MODEL_DIRS = {entry.dirname for entry in MODEL_LIST.models}


def load_workflow(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    return data


def workflow_paths() -> list[Path]:
    return sorted(WORKFLOWS.glob("*.y*ml"))


def steps(workflow: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for job_id, job in workflow["jobs"].items():
        for step in job["steps"]:
            yield job_id, step


def step_named(workflow: Mapping[str, Any], name: str) -> dict[str, Any]:
    return next(step for _, step in steps(workflow) if step.get("name") == name)


def strings_in(node: object) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, Mapping):
        for key, value in node.items():
            yield str(key)
            yield from strings_in(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings_in(item)


def tool(name: str) -> str:
    """A command from this environment (its bin directory first, even when it is not on PATH)."""
    found = shutil.which(name, path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    assert found is not None, f"{name} is missing: install the test dependency group (uv sync --group test)"
    return found


# -- what the linters don't check ------------------------------------------------------------


def test_every_dispatch_input_is_used():
    workflow = load_workflow(MODEL_CACHE)
    inputs = workflow["on"]["workflow_dispatch"]["inputs"]
    used = "\n".join(strings_in(workflow["jobs"]))
    assert len(inputs) <= 25, "GitHub refuses a workflow_dispatch with more than 25 inputs"
    assert [name for name in inputs if f"inputs.{name}" not in used] == []


def test_model_size_choices_are_the_model_list_labels_plus_both():
    inputs = load_workflow(MODEL_CACHE)["on"]["workflow_dispatch"]["inputs"]
    assert sorted(inputs["model_size"]["options"]) == sorted([*MODEL_LIST.sizes, "both"])
    assert inputs["model_size"]["default"] == "both"
    assert inputs["operation"]["options"] == ["download", "list", "verify", "clear"]
    assert inputs["operation"]["default"] == "download"
    assert inputs["dry_run"]["type"] == "boolean"
    assert VOLUME in inputs["confirm"]["description"]


def test_a_push_to_main_that_changes_the_model_list_triggers_a_run():
    push = load_workflow(MODEL_CACHE)["on"]["push"]
    assert push["branches"] == ["main"]
    assert push["paths"] == ["models.toml", "models.lock"]


def test_runs_queue_per_volume_and_clear_is_confirmed_with_its_name():
    """The groups are named after the volume; which run lands in which is tests/test_concurrency.py's."""
    workflow = load_workflow(MODEL_CACHE)
    assert workflow["concurrency"]["group"].startswith(f"model-cache-{VOLUME}-")
    assert workflow["concurrency"]["cancel-in-progress"] is False
    assert workflow["jobs"]["model-cache"]["env"]["VOLUME"] == VOLUME


# Jobs that may write, and exactly what; every other job reads the repository and nothing more.
WRITERS = {
    ("model-drift.yml", "lock-pull-request"): {"contents": "write", "pull-requests": "write"},
    ("model-drift.yml", "volume-check"): {"contents": "read", "issues": "write"},
    ("container-requirements.yml", "regenerate"): {"contents": "write", "actions": "write"},
}


@pytest.mark.parametrize("path", workflow_paths(), ids=lambda p: p.name)
def test_least_privilege(path: Path):
    workflow = load_workflow(path)
    assert workflow["permissions"] == {}
    for job_id, job in workflow["jobs"].items():
        assert job["permissions"] == WRITERS.get((path.name, job_id), {"contents": "read"})
        assert isinstance(job["timeout-minutes"], int)
    for _, step in steps(workflow):
        if step.get("uses", "").startswith("actions/checkout@"):
            assert step["with"]["persist-credentials"] is False


@pytest.mark.parametrize("path", workflow_paths(), ids=lambda p: p.name)
def test_actions_are_pinned_to_a_commit_with_its_version_alongside(path: Path):
    uses = [step["uses"] for _, step in steps(load_workflow(path)) if "uses" in step]
    commented = {match["ref"] for match in VERSION_COMMENT.finditer(path.read_text(encoding="utf-8"))}
    assert uses
    assert [ref for ref in uses if not PINNED.fullmatch(ref) or ref not in commented] == []


def test_secrets_reach_only_the_run_step():
    workflow = load_workflow(MODEL_CACHE)
    job = workflow["jobs"]["model-cache"]
    assert not any("secrets." in s for s in strings_in({k: v for k, v in job.items() if k != "steps"}))
    holders = {
        step["name"]
        for _, step in steps(workflow)
        for value in step.get("env", {}).values()
        if "secrets." in str(value) and "!= ''" not in str(value)  # the check sees only whether one is set
    }
    assert holders == {"Run"}
    assert set(step_named(workflow, "Run")["env"]) >= {"MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET", "HF_TOKEN"}


@pytest.mark.parametrize("path", workflow_paths(), ids=lambda p: p.name)
def test_no_expression_is_spliced_into_a_script(path: Path):
    assert [step["run"] for _, step in steps(load_workflow(path)) if "${{" in step.get("run", "")] == []


def test_the_summary_is_uploaded_whatever_happened_unless_the_run_was_only_a_set_up_notice():
    upload = step_named(load_workflow(MODEL_CACHE), "Upload the summary")
    assert upload["if"] == "always() && steps.setup.outputs.ready != 'false'"
    assert upload["with"]["name"] == "model-cache-${{ env.OPERATION }}-summary"
    assert upload["with"]["if-no-files-found"] in ("warn", "error", "ignore")
    assert isinstance(upload["with"]["retention-days"], int)


TEST_COMMAND = "python3 tools/nox_locked.py -s lint tests"


def test_ci_runs_the_readme_test_command_on_each_supported_python():
    """ci.yml, .ci/run and the README's quick start run one command, so CI proves the quick start."""
    workflow = load_workflow(WORKFLOWS / "ci.yml")
    assert set(workflow["on"]) == {"pull_request", "push", "workflow_dispatch"}
    runs = [step["run"] for _, step in steps(workflow) if "run" in step]
    assert runs == [TEST_COMMAND]
    assert f"```console\n{TEST_COMMAND}\n```" in (ROOT / "README.md").read_text(encoding="utf-8")
    assert (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()[-1] == TEST_COMMAND
    [job] = workflow["jobs"].values()
    assert job["strategy"]["matrix"]["python"] == ["3.11", "3.12"]
    setup = next(step for _, step in steps(workflow) if step.get("uses", "").startswith("actions/setup-python@"))
    assert setup["with"]["python-version"] == "${{ matrix.python }}"


# A run: script may get tools only through the bootstrap, which installs uv.lock's pins by hash.
INSTALLERS = re.compile(r"\b(pip3?|pipx|uvx|npm|npx|gem|curl|wget)\b|\buv (tool|pip|add)\b|\bapt(-get)? install\b|>=")


@pytest.mark.parametrize("path", workflow_paths(), ids=lambda p: p.name)
def test_workflows_install_nothing_but_the_lock(path: Path):
    scripts = [step["run"] for _, step in steps(load_workflow(path)) if "run" in step]
    assert [script for script in scripts if INSTALLERS.search(script)] == []
    assert any("tools/nox_locked.py" in script for script in scripts)


def test_the_secret_bearing_job_is_behind_the_model_cache_environment():
    """Environment secrets reach only jobs that name the environment, and only from branches it admits."""
    for path in workflow_paths():
        for job_id, job in load_workflow(path)["jobs"].items():
            if any("secrets." in text for text in strings_in(job)):
                assert job.get("environment") == "model-cache", f"{path.name}: {job_id}"


def test_the_step_that_sees_the_secrets_installs_nothing():
    workflow = load_workflow(MODEL_CACHE)
    install = step_named(workflow, "Install the locked tools")["run"]
    run = step_named(workflow, "Run")["run"]
    assert "--install-only" in install
    assert 'tools/nox_locked.py -R -s "$OPERATION"' in run  # -R: reuse the environment, install nothing


def test_dependabot_updates_actions_and_the_lock_file():
    config = load_workflow(ROOT / ".github" / "dependabot.yml")
    assert {update["package-ecosystem"] for update in config["updates"]} == {"github-actions", "uv"}


def test_lint_gate_fails_on_script_injection_and_unpinned_actions(tmp_path: Path):
    """zizmor (as auditor) and actionlint (with shellcheck) pass the real workflows and fail planted mistakes."""
    clean = tmp_path / "clean" / ".github"
    shutil.copytree(ROOT / ".github", clean)
    planted = tmp_path / "planted" / ".github"
    shutil.copytree(ROOT / ".github", planted)
    workflow = planted / "workflows" / "model-cache.yml"
    text = workflow.read_text(encoding="utf-8")
    text = re.sub(r"uses: actions/checkout@\S+ # v[\d.]+", "uses: actions/checkout@v4", text)
    text = text.replace("    environment: model-cache\n", "")
    text = text.replace(
        'run: python3 tools/nox_locked.py --install-only -s "$OPERATION"',
        "run: echo ${{ github.event.inputs.confirm }} $OPERATION",
    )
    workflow.write_text(text, encoding="utf-8")

    def zizmor(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [tool("zizmor"), "--offline", "--persona=auditor", "--no-progress", "--format=plain", str(path)],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "NO_COLOR": "1"},
        )

    def actionlint(path: Path) -> subprocess.CompletedProcess[str]:
        files = sorted(str(p) for p in (path / "workflows").glob("*.yml"))
        return subprocess.run(
            [tool("actionlint"), f"-shellcheck={tool('shellcheck')}", "-no-color", *files],
            capture_output=True,
            text=True,
            check=False,
        )

    assert zizmor(clean).returncode == 0, zizmor(clean).stdout
    assert actionlint(clean).returncode == 0, actionlint(clean).stdout

    found = zizmor(planted)
    assert found.returncode != 0
    assert "template-injection" in found.stdout
    assert "unpinned-uses" in found.stdout
    assert "secrets-outside-env" in found.stdout
    linted = actionlint(planted)
    assert linted.returncode != 0
    assert "SC2086" in linted.stdout  # shellcheck ran on the run: block: unquoted $OPERATION


# -- model-cache.yml, run by act -------------------------------------------------------------


@dataclass
class ActRun:
    """One `act` run: its exit code, its JSON log, and what the stub actions recorded."""

    returncode: int
    events: list[dict[str, Any]]
    record: Path

    @property
    def log(self) -> str:
        return "\n".join(ANSI.sub("", str(event.get("msg", ""))) for event in self.events)

    @property
    def succeeded(self) -> bool:
        return self.returncode == 0 and any(event.get("jobResult") == "success" for event in self.events)

    def step_results(self) -> dict[str, str]:
        """The outcome of each of the workflow's steps (not the stubs' inner steps)."""
        return {
            str(event["step"]): str(event["stepResult"])
            for event in self.events
            if event.get("stage") == "Main" and "stepResult" in event and len(event.get("stepID", [])) == 1
        }

    def summaries(self) -> list[tuple[str, str]]:
        """What each step wrote to $GITHUB_STEP_SUMMARY, as act reports it."""
        return [(str(e["step"]), str(e["content"])) for e in self.events if e.get("command") == "summary"]

    def annotations(self, level: str) -> list[str]:
        return [str(event["arg"]) for event in self.events if event.get("command") == level]

    def silent_failures(self) -> list[str]:
        """The workflow's steps that failed without act reporting a line of their output or an error of theirs.

        Another command (a `::set-output::` of the step before, copied late) can be reported under the
        failed step's id when act dropped that step's own output: it does not count as the step speaking.
        """
        spoke = {
            tuple(e["stepID"])
            for e in self.events
            if "stepID" in e and (e.get("raw_output") or e.get("command") == "error")
        }
        return [
            str(event["step"])
            for event in self.events
            if event.get("stepResult") == "failure"
            and len(event.get("stepID", [])) == 1
            and tuple(event["stepID"]) not in spoke
        ]

    def nox_command(self) -> list[str] | None:
        """The command line the nox session ran, as nox logged it."""
        for line in self.log.splitlines():
            _, marker, command = line.partition("nox > python -m modal_jobs ")
            if marker:
                return shlex.split(command)
        return None

    def artifact(self, name: str) -> Path:
        return self.record / "artifacts" / name

    def artifact_inputs(self, name: str) -> dict[str, str]:
        data: dict[str, str] = json.loads((self.record / "artifacts" / f"{name}.inputs.json").read_text())
        return data


def step_events(step_id: str, name: str, *lines: dict[str, Any]) -> list[dict[str, Any]]:
    """A failed step's events as `act --json` reports them: its lines, then its result."""
    where = {"stage": "Main", "step": name, "stepID": [step_id]}
    return [{**where, **line} for line in lines] + [{**where, "stepResult": "failure", "msg": "Failure"}]


def test_a_failed_step_is_silent_unless_its_own_output_or_error_was_reported():
    """act can drop a fast-failing step's output; a late command of the step before does not make it speak."""
    late_command = {"command": "set-output", "raw": "::set-output:: numbers=1", "msg": "set-output"}
    dropped = ActRun(1, step_events("5", "Push the branch", late_command), Path("."))
    said_why = ActRun(1, step_events("5", "Push the branch", {"command": "error", "arg": "not overwritten"}), Path("."))
    printed = ActRun(1, step_events("2", "Run", {"raw_output": True, "msg": "error: no models.lock\n"}), Path("."))

    assert dropped.silent_failures() == ["Push the branch"]
    assert said_why.silent_failures() == [] and printed.silent_failures() == []


@pytest.fixture(scope="module")
def runner_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bare venv standing in for setup-python's interpreter: `python3` and nothing installed."""
    venv = tmp_path_factory.mktemp("runner-python")
    # Without pip, as on a stock Debian or Ubuntu: the workflows must not need it.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, capture_output=True)
    return venv / "bin"


# Runs of a workflow repeated when act dropped the output of the step that failed (`Act.__call__`).
ACT_SILENT_RETRIES = 3


@dataclass
class Act:
    """Runs a workflow (model-cache.yml unless told) with act for one event, offline, pointed at the local hub."""

    runner_bin: Path
    work: Path
    step_env: dict[str, str]
    repo: Path = ROOT
    workflow: Path = MODEL_CACHE
    job: str | None = None  # run only this job of the workflow
    tools: Path | None = None  # a directory put first on PATH, as stand-ins for the runner's own tools

    def __call__(
        self,
        event: str,
        payload: Mapping[str, Any],
        *,
        local_dir: Path | None,
        secrets: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ActRun:
        run = self.run_once(event, payload, local_dir=local_dir, secrets=secrets, env=env)
        for _ in range(ACT_SILENT_RETRIES):
            if not run.silent_failures():
                break
            # act on the host can drop the whole output of a step that fails fast: its exec returns on
            # the exit status before the pty's output is copied (nektos/act host_environment.go); about
            # 1 run in 30 on a busy machine, so one retry still left a test failing about once in 900.
            # Our failing steps always say why. The steps that fail that fast are the checks, which
            # change nothing, so another run starts from the same state.
            run = self.run_once(event, payload, local_dir=local_dir, secrets=secrets, env=env)
        return run

    def run_once(
        self,
        event: str,
        payload: Mapping[str, Any],
        *,
        local_dir: Path | None,
        secrets: Mapping[str, str] | None,
        env: Mapping[str, str] | None,
    ) -> ActRun:
        run_dir = self.work / f"run-{len(list(self.work.glob('run-*')))}"
        run_dir.mkdir()
        event_file = run_dir / "event.json"
        event_file.write_text(json.dumps(payload))
        empty = run_dir / "empty"
        empty.write_text("")
        record = run_dir / "record"
        step_env = {**self.step_env, **(env or {}), "STUB_RECORD_DIR": str(record)}
        if local_dir is not None:
            step_env["MODEL_CACHE_LOCAL_DIR"] = str(local_dir)
        argv = [
            tool("act"),
            event,
            "--json",
            *("-C", str(self.repo), "-W", str(act_readable(self.workflow, run_dir)), "-e", str(event_file)),
            *("-P", "ubuntu-latest=-self-hosted"),
            *(("-j", self.job) if self.job else ()),
            *stub_substitutions(self.workflow),
            # Offline: no image pulls, no cache or artifact server, no action fetches, and no
            # .env/.secrets/.vars/.input files picked up from the work tree.
            *("--pull=false", "--action-offline-mode", "--no-cache-server"),
            *("--cache-server-addr=127.0.0.1", "--artifact-server-addr=127.0.0.1"),
            *("--action-cache-path", str(run_dir / "act-cache")),
            *("--env-file", str(empty), "--secret-file", str(empty), "--var-file", str(empty)),
            *("--input-file", str(empty)),
            *(f"--env={key}={value}" for key, value in step_env.items()),
            *(f"--secret={key}={value}" for key, value in (secrets or {}).items()),
        ]
        path = [str(self.runner_bin), str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"]
        if self.tools is not None:
            path.insert(0, str(self.tools))
        env = {
            "PATH": os.pathsep.join(path),
            "HOME": str(run_dir / "home"),  # no ~/.actrc, no user configuration
            "ACT_DISABLE_VERSION_CHECK": "1",
            "DOCKER_HOST": f"unix://{run_dir}/no-docker.sock",
            "LANG": "C.UTF-8",
        }
        result = subprocess.run(argv, cwd=run_dir, env=env, capture_output=True, text=True, timeout=300, check=False)
        events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
        run = ActRun(result.returncode, events, record)
        (run_dir / "act.log").write_text(run.log + "\n" + result.stderr)
        return run


def act_readable(workflow: Path, run_dir: Path) -> Path:
    """The workflow as act 0.2.89 reads it: without `queue:` in a concurrency block, which its schema predates.

    act refuses the whole file over that one key, and act never runs two jobs of a group anyway: what
    the key does is tests/test_concurrency.py's to check. Every other line runs as written.
    """
    text = workflow.read_text(encoding="utf-8")
    kept = [line for line in text.splitlines(keepends=True) if not re.fullmatch(r"\s*queue: \w+\s*", line)]
    if len(kept) == len(text.splitlines()):
        return workflow
    copy = run_dir / "workflow" / workflow.name
    copy.parent.mkdir()
    copy.write_text("".join(kept), encoding="utf-8")
    return copy


def stub_substitutions(workflow: Path = MODEL_CACHE) -> list[str]:
    """`--local-repository owner/repo@sha=stub` for each action the workflow uses (act copies for checkout)."""
    refs = {
        match["repo"]: match["sha"]
        for _, step in steps(load_workflow(workflow))
        if (match := PINNED.fullmatch(step.get("uses", "")))
    }
    substitutions = []
    for repo, sha in refs.items():
        if repo == "actions/checkout":
            continue
        stub = STUBS / repo.split("/")[1]
        assert (stub / "action.yml").is_file(), f"no offline stub for {repo} in {STUBS}"
        substitutions.append(f"--local-repository={repo}@{sha}={stub}")
    return substitutions


def act_step_env(hub: LocalHub, tmp_path: Path) -> dict[str, str]:
    """What every step sees: the local hub, and uv installing only from its cache."""
    uv_cache = subprocess.run([tool("uv"), "cache", "dir"], capture_output=True, text=True, check=True).stdout.strip()
    return {
        **hub_env(hub, tmp_path / "hf-home"),
        "UV_OFFLINE": "1",
        "UV_CACHE_DIR": uv_cache,
        "UV_PYTHON_DOWNLOADS": "never",
        "NO_COLOR": "1",
    }


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@localhost"}
    env.update(GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@localhost")
    return subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=True).stdout


def lock_against(hub: LocalHub, repo: Path, tmp_path: Path, *, upgrade: bool = False) -> None:
    """Write the clone's models.lock from the local hub, as `nox -s lock` does against the Hub, and commit it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MODAL_", "GITHUB_"))}
    env.update(hub_env(hub, tmp_path / "hf-home-lock"), PYTHONPATH=str(ROOT))
    command = [sys.executable, "-m", "modal_jobs", "lock", "--model-list", str(repo / "models.toml")]
    command += ["--upgrade"] if upgrade else []
    subprocess.run(command, env=env, check=True, capture_output=True)
    git(repo, "add", "models.toml", "models.lock")
    git(repo, "commit", "--quiet", "-m", "Lock the model list")


@pytest.fixture
def locked_repo(tmp_path: Path, hub: LocalHub, repos: Repos) -> Path:
    """A clone of this repository whose models.lock pins the local hub's commits, as a merged pull request leaves it."""
    clone = tmp_path / "repo"
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(clone)], check=True)
    lock_against(hub, clone, tmp_path)
    hub.reset_counts()  # what a test counts is the workflow's own requests
    return clone


@pytest.fixture
def act(runner_python: Path, hub: LocalHub, tmp_path: Path, locked_repo: Path) -> Act:
    work = tmp_path / "act"
    work.mkdir()
    return Act(runner_python, work, act_step_env(hub, tmp_path), repo=locked_repo)


def dispatch(
    operation: str, model_size: str = "both", *, dry_run: bool = False, confirm: str = "", prune: bool = False
) -> dict[str, Any]:
    """A workflow_dispatch payload as GitHub sends it (input values as strings)."""
    inputs = {
        "operation": operation,
        "model_size": model_size,
        "dry_run": str(dry_run).lower(),
        "confirm": confirm,
        "prune": str(prune).lower(),
    }
    return {"inputs": inputs, "ref": "refs/heads/main"}


SUMMARY_FILES = ["--summary-json", "summary/summary.json", "--summary-md", "summary/summary.md"]
LOCK_WAIT = ["--lock-wait", str(load_workflow(MODEL_CACHE)["jobs"]["model-cache"]["env"]["LOCK_WAIT"])]


@pytest.mark.parametrize(
    ("operation", "model_size", "dry_run", "confirm", "extra", "outcome"),
    [
        ("list", "both", False, "", ["--locked"], "success"),
        # dry_run means nothing to verify; a selected model that is missing fails verify, and so the job.
        ("verify", "1.7B", True, "", ["--locked", *LOCK_WAIT], "failure"),
        ("download", "0.6B", True, "", ["--dry-run", "--locked", *LOCK_WAIT], "success"),
        ("clear", "both", True, "", ["--dry-run", *LOCK_WAIT], "success"),  # a preview needs no confirmation
        ("clear", "0.6B", False, VOLUME, ["--yes", *LOCK_WAIT], "success"),
    ],
)
def test_dispatch_runs_the_chosen_session_with_its_arguments(
    act: Act,
    repos: Repos,
    target: Path,
    operation: str,
    model_size: str,
    dry_run: bool,
    confirm: str,
    extra: list[str],
    outcome: str,
):
    run = act("workflow_dispatch", dispatch(operation, model_size, dry_run=dry_run, confirm=confirm), local_dir=target)

    assert run.step_results()["Run"] == outcome, run.log
    assert run.succeeded == (outcome == "success")
    assert f"nox > Running session {operation}" in run.log
    expected = [operation, "--model-size", model_size, *SUMMARY_FILES, "--local-dir", str(target), *extra]
    assert run.nox_command() == expected
    assert (run.record / "setup-python").read_text().strip() == "3.11"
    assert not (target.exists() and MODEL_DIRS & {p.name for p in target.iterdir()})  # nothing was downloaded


def test_download_writes_the_job_summary_and_uploads_both_summaries(act: Act, repos: Repos, target: Path):
    run = act("workflow_dispatch", dispatch("download"), local_dir=target)

    assert run.succeeded, run.log
    assert {p.name for p in target.iterdir()} >= MODEL_DIRS
    summaries = run.summaries()
    assert [step for step, _ in summaries] == ["Run"]  # written once, by the CLI; the note stayed quiet
    table = summaries[0][1]
    assert "| Model | Status | Commit | Files | Size | Time |" in table
    for repo_id in (BIG, SMALL, TOKENIZER):
        assert f"| `{repo_id}` | ✅ downloaded | `{repos.commits[repo_id][:7]}` |" in table

    artifact = run.artifact("model-cache-download-summary")
    assert sorted(p.name for p in artifact.iterdir()) == ["summary.json", "summary.md"]
    assert (artifact / "summary.md").read_text() == table
    rows = json.loads((artifact / "summary.json").read_text())["models"]
    assert {row["status"] for row in rows} == {"downloaded"}
    assert run.artifact_inputs("model-cache-download-summary") == {"if-no-files-found": "warn", "retention-days": "30"}


def test_push_downloads_everything(act: Act, repos: Repos, target: Path):
    # Even a payload carrying dispatch inputs cannot turn a push into anything but a download.
    payload = {
        "ref": "refs/heads/main",
        "head_commit": {"id": "0" * 40, "modified": ["models.toml"]},
        "inputs": {"operation": "clear", "confirm": VOLUME},
    }
    run = act("push", payload, local_dir=target)

    assert run.succeeded, run.log
    expected = ["download", "--model-size", "both", *SUMMARY_FILES, "--local-dir", str(target), "--prune", "--locked"]
    expected += LOCK_WAIT
    assert run.nox_command() == expected
    assert {p.name for p in target.iterdir()} >= MODEL_DIRS
    assert run.artifact("model-cache-download-summary").is_dir()


def plant_dropped_model(target: Path) -> None:
    """A model the cache wrote for a repo the list no longer names, and a directory it never wrote."""
    shutil.copytree(target / "Qwen3-TTS-Tokenizer-12Hz", target / "Old-Voice")
    for ours in [
        target / "Old-Voice" / POINTER_NAME,
        *(target / "Old-Voice").glob(f"{REVISIONS_DIR}/*/{MANIFEST_NAME}"),
    ]:
        ours.write_text(ours.read_text().replace(TOKENIZER, "Qwen/Old-Voice"))
    model_path(target, "Qwen/Old-Voice")  # a model a reader loads, of a repo the list no longer names
    (target / "notes").mkdir()
    (target / "notes" / "readme.txt").write_text("kept by hand")


def test_a_push_prunes_dropped_models_and_warns_about_unknown_directories(
    act: Act, cli: Cli, repos: Repos, target: Path
):
    assert cli("download").returncode == 0
    plant_dropped_model(target)
    payload = {"ref": "refs/heads/main", "head_commit": {"id": "0" * 40, "modified": ["models.toml"]}}

    run = act("push", payload, local_dir=target, env={"GITHUB_ACTIONS": "true"})

    assert run.succeeded, run.log
    assert not (target / "Old-Voice").exists()
    assert (target / "notes" / "readme.txt").read_text() == "kept by hand"
    [(_, table)] = run.summaries()
    assert "| `Qwen/Old-Voice` | 🗑️ pruned |" in table
    assert any("notes on" in warning and "never pruned" in warning for warning in run.annotations("warning"))


def test_a_dispatched_download_prunes_only_when_asked(act: Act, cli: Cli, repos: Repos, target: Path):
    assert cli("download").returncode == 0
    plant_dropped_model(target)

    run = act("workflow_dispatch", dispatch("download"), local_dir=target, env={"GITHUB_ACTIONS": "true"})
    assert run.succeeded, run.log
    assert "--prune" not in (run.nox_command() or [])
    model_path(target, "Qwen/Old-Voice")  # still there, whole
    assert any("Old-Voice on" in warning and "prune" in warning for warning in run.annotations("warning"))

    run = act("workflow_dispatch", dispatch("download", prune=True), local_dir=target)
    assert run.succeeded, run.log
    assert (run.nox_command() or [])[-4:] == ["--prune", "--locked", *LOCK_WAIT]
    assert not (target / "Old-Voice").exists()


@pytest.mark.parametrize("confirm", ["", "yes", VOLUME.upper()])
def test_clear_without_the_volume_name_fails_and_deletes_nothing(
    act: Act, cli: Cli, repos: Repos, target: Path, confirm: str
):
    assert cli("download").returncode == 0
    before = tree(target)

    run = act("workflow_dispatch", dispatch("clear", confirm=confirm), local_dir=target)

    assert not run.succeeded
    assert tree(target) == before
    assert run.step_results()["Check the request"] == "failure"
    assert "Running session" not in run.log
    [error] = run.annotations("error")
    assert f"type {VOLUME} into 'confirm'" in error
    [(step, note)] = run.summaries()
    assert step == "Note a run without a summary"
    assert "stopped before it wrote a summary" in note
    assert list(run.artifact("model-cache-clear-summary").iterdir()) == []


def test_a_failing_model_fails_the_job_and_still_uploads_its_summary(
    act: Act, hub: LocalHub, repos: Repos, target: Path
):
    hub.fail(BIG, 500, times=None, kind="resolve")  # the lock names the commit: its files are what fails

    run = act("workflow_dispatch", dispatch("download"), local_dir=target)

    assert not run.succeeded
    assert run.step_results()["Run"] == "failure"
    rows = json.loads((run.artifact("model-cache-download-summary") / "summary.json").read_text())["models"]
    statuses = {row["repo_id"]: row["status"] for row in rows}
    assert statuses == {BIG: "failed", SMALL: "downloaded", TOKENIZER: "downloaded"}
    [(step, table)] = run.summaries()
    assert step == "Run"
    assert f"| `{BIG}` | ❌ failed |" in table


def test_half_a_modal_token_fails_at_once_naming_the_missing_secret(act: Act):
    run = act("workflow_dispatch", dispatch("list"), local_dir=None, secrets={"MODAL_TOKEN_ID": "ak-test"})

    assert not run.succeeded
    assert run.step_results() == {
        "Check the request": "success",
        "Check out": "success",
        "Check the set-up": "failure",
        "Note a run without a summary": "success",
        "Upload the summary": "success",
    }
    [error] = run.annotations("error")
    assert "the secret MODAL_TOKEN_SECRET is missing from the environment model-cache" in error


# -- before set-up: a notice and a green run -------------------------------------------------

SET_UP_STEPS = {"Check the request": "success", "Check out": "success", "Check the set-up": "success"}


def test_a_push_of_the_lock_before_the_token_is_set_says_to_dispatch_the_download(act: Act):
    """The lock landed first: the run is green, downloads nothing, and names both steps left, in order."""
    payload = {"ref": "refs/heads/main", "head_commit": {"id": "0" * 40, "modified": ["models.lock"]}}
    run = act("push", payload, local_dir=None)

    assert run.succeeded, run.log
    assert run.step_results() == SET_UP_STEPS
    assert run.annotations("error") == [] and run.annotations("warning") == []
    [notice] = run.annotations("notice")
    assert "the environment model-cache has no Modal token yet: add MODAL_TOKEN_ID and MODAL_TOKEN_SECRET" in notice
    assert "then run the download this push would have run: Actions > Model cache > Run workflow" in notice
    [(step, summary)] = run.summaries()
    assert step == "Check the set-up" and notice in summary
    assert not run.artifact("model-cache-download-summary").exists()


def test_a_fork_without_a_lock_or_a_token_gets_notices_and_downloads_nothing(
    runner_python: Path, hub: LocalHub, tmp_path: Path
):
    """A fork's first dispatch: a notice for each missing step; nothing installed, nothing written."""
    fork = tmp_path / "fork"
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(fork)], check=True)
    assert not (fork / "models.lock").exists()
    work = tmp_path / "act"
    work.mkdir()
    act = Act(runner_python, work, act_step_env(hub, tmp_path), repo=fork)

    run = act("workflow_dispatch", dispatch("download"), local_dir=None)

    assert run.succeeded, run.log
    assert run.step_results() == SET_UP_STEPS
    lock, token = run.annotations("notice")
    assert "models.lock is not on main yet" in lock and "Model drift proposes the first lock" in lock
    assert "no Modal token yet" in token and "then run this again" in token
    assert "Running session" not in run.log
    assert hub.count() == 0


def test_the_hf_token_secret_reaches_the_hub(act: Act, hub: LocalHub, repos: Repos, target: Path):
    run = act("workflow_dispatch", dispatch("download", "0.6B"), local_dir=target, secrets=DISTINCT_SECRETS)

    assert run.succeeded, run.log
    assert set(hub.authorizations) == {f"Bearer {DISTINCT_SECRETS['HF_TOKEN']}"}


def test_the_modal_secrets_reach_modal_as_the_token_pair(act: Act, repos: Repos, modal_stand_in: ModalStandIn):
    """The real workflow, on the Modal path: what the Modal client sends is each secret in its own place."""
    run = act(
        "workflow_dispatch",
        dispatch("list"),
        local_dir=None,
        secrets=DISTINCT_SECRETS,
        env={"MODAL_SERVER_URL": modal_stand_in.url},
    )

    assert run.step_results()["Check the request"] == "success", run.log
    assert run.step_results()["Run"] == "failure"  # the stand-in refuses every call
    assert modal_stand_in.requests, run.log
    for headers in modal_stand_in.requests:
        assert headers["x-modal-token-id"] == DISTINCT_SECRETS["MODAL_TOKEN_ID"]
        assert headers["x-modal-token-secret"] == DISTINCT_SECRETS["MODAL_TOKEN_SECRET"]
    for value in DISTINCT_SECRETS.values():
        assert value not in run.log


# Each secret a value no other has: a step given the wrong one sends a value the test can tell apart.
DISTINCT_SECRETS = {"MODAL_TOKEN_ID": "ak-id-0001", "MODAL_TOKEN_SECRET": "as-secret-0002", "HF_TOKEN": "hf_token0003"}
