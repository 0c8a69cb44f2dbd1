"""Sessions: `nox -s lint tests` checks the project; `lock`, `download`, `plan`, `list`, `verify`, `clear`, `path`
run the cache.

Pass options to the cache after `--`: `nox -s download -- --model-size 0.6B --local-dir models`.
Without `--local-dir` they work on the Modal Volume named in models.toml. Without nox installed,
`python3 tools/nox_locked.py` runs it (and uv) from uv.lock: `python3 tools/nox_locked.py -s lint tests`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nox

nox.needs_version = ">=2025.5.1"
nox.options.default_venv_backend = "uv"
nox.options.sessions = ["lint", "tests"]
nox.options.error_on_external_run = True


def install(session: nox.Session, *groups: str, bytecode: bool = False) -> None:
    """Install the locked dependencies into the session's environment, not this package.

    The sessions run the checkout itself (`python -m modal_jobs` from the repository's root), so
    nothing is built: the build backend (hatchling), which uv.lock does not pin, never runs here.
    `bytecode`: compile every installed module now, for the sessions that start hundreds of
    processes; uv writes none by default, and under PYTHONDONTWRITEBYTECODE each process would
    compile huggingface_hub, httpx and modal again.
    """
    session.run_install(
        "uv",
        "sync",
        "--locked",
        "--no-install-project",
        "--no-default-groups",
        *(f"--group={group}" for group in groups),
        *(["--compile-bytecode"] if bytecode else []),
        env={"UV_PROJECT_ENVIRONMENT": session.virtualenv.location},
        silent=True,
    )


def compile_checkout(session: nox.Session) -> None:
    """Bytecode for the checkout's packages, which the sessions run from source: without it each process
    compiles them again when PYTHONDONTWRITEBYTECODE is set, and the benchmark would time that."""
    packages = ("modal_jobs", "local_hub", "bench", "tests", "examples", "tools")
    session.run("python", "-m", "compileall", "-q", *packages, silent=True)


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite (offline: a local hub on 127.0.0.1 stands in for the Hugging Face Hub)."""
    install(session, "test", bytecode=True)
    compile_checkout(session)
    # Six at a time: many tests wait on a deadline, a stalled body or act, not on a core, so six keep two cores
    # busy (four left them idle for about a tenth of the run). `-- -n0` runs them one by one. The ten slowest are
    # listed: the budget is 3 minutes on 2 cores.
    session.run("pytest", "--numprocesses=6", "--dist=worksteal", "--durations=10", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Check formatting, lint and types (ruff, mypy), and the GitHub workflows (zizmor, actionlint, schemas)."""
    install(session, "lint", "test", "workflow-lint")
    session.run("ruff", "format", "--check", ".")
    session.run("ruff", "check", ".")
    session.run("mypy")
    # The bootstrap is outside mypy's `files`: it runs before any environment exists, on Python 3.9+
    # (checked as 3.10, the oldest mypy knows). So does the reader, which inference images copy alone.
    session.run("mypy", "--python-version=3.10", "tools", "modal_jobs/reader.py")
    workflows = sorted(str(path) for path in Path(".github/workflows").glob("*.y*ml"))
    # --offline: the online audits ask GitHub about refs and advisories; lint must pass without a network.
    # --persona auditor: every finding counts, secrets outside an environment too; a finding judged
    # wrong is silenced where it stands, with `# zizmor: ignore[<audit>]` and the reason.
    session.run("zizmor", "--offline", "--persona", "auditor", "--quiet", ".github")
    # actionlint silently skips `run:` scripts when it cannot find shellcheck, so name the session's own.
    shellcheck = shutil.which("shellcheck", path=session.bin)
    if shellcheck is None:
        session.error("shellcheck is not installed in the lint session; actionlint would not check run: scripts")
    session.run("actionlint", f"-shellcheck={shellcheck}", *workflows)
    session.run("check-jsonschema", "--builtin-schema", "vendor.github-workflows", *workflows)
    session.run("check-jsonschema", "--builtin-schema", "vendor.dependabot", ".github/dependabot.yml")


@nox.session(name="workflow-audit", default=False)
def workflow_audit(session: nox.Session) -> None:
    """zizmor with its online audits (impostor commits, ref-version mismatch): needs GH_TOKEN, as the weekly run has."""
    install(session, "workflow-lint")
    if not (os.environ.get("GH_TOKEN") or os.environ.get("GITHUB_TOKEN")):
        session.error("the online audits ask GitHub's API: set GH_TOKEN (any read-only token, e.g. `gh auth token`)")
    # No --offline: the online audits run, and any finding fails the session.
    session.run("zizmor", "--persona", "auditor", "--quiet", ".github")


# Ctrl-C reaches the command and nox alike (one process group). nox's default is to send SIGTERM 0.3 s later,
# which the command takes as a second signal: it would end at once, before saying what it left. It stops
# within a fraction of a second on its own; nox waits this long before insisting.
STOP_SECONDS = 30.0


def _cache_session(session: nox.Session, operation: str) -> None:
    install(session)
    session.run("python", "-m", "modal_jobs", operation, *session.posargs, interrupt_timeout=STOP_SECONDS)


@nox.session(default=False)
def lock(session: nox.Session) -> None:
    """Write models.lock: the commit and files of every model of models.toml (`-- --upgrade`, `-- --check`)."""
    _cache_session(session, "lock")


@nox.session(default=False)
def download(session: nox.Session) -> None:
    """Download the selected models to the volume (or --local-dir), skipping what is complete."""
    _cache_session(session, "download")


@nox.session(name="list", default=False)
def list_models(session: nox.Session) -> None:
    """List every model with its state, size and commit, and directories no entry owns."""
    _cache_session(session, "list")


@nox.session(default=False)
def plan(session: nox.Session) -> None:
    """Check the model list against the Hub and say what merging it would change (`-- --base-model-list FILE`)."""
    _cache_session(session, "plan")


@nox.session(default=False)
def verify(session: nox.Session) -> None:
    """Re-hash the cached models against their manifests; damage is repaired by the next download."""
    _cache_session(session, "verify")


@nox.session(default=False)
def clear(session: nox.Session) -> None:
    """Remove cached models; refuses without --yes."""
    _cache_session(session, "clear")


@nox.session(default=False)
def path(session: nox.Session) -> None:
    """Print the directory a reader loads a model from: on the volume, or `-- REPO_ID --local-dir DIR`."""
    _cache_session(session, "path")


@nox.session(default=False)
def unlock(session: nox.Session) -> None:
    """Say who holds the Modal Volume's writer lease; `-- --yes` breaks it when the run holding it died."""
    _cache_session(session, "unlock")


@nox.session(name="container-requirements", default=False)
def container_requirements(session: nox.Session) -> None:
    """Write modal_jobs/container-requirements.txt from uv.lock: what the Modal image installs, hashes included."""
    session.run_install(
        "uv",
        "export",
        "--quiet",
        "--frozen",
        "--only-group=container",
        "--no-emit-project",
        "--output-file=modal_jobs/container-requirements.txt",
    )


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Measure download, re-run, verify, list and memory against curl and openssl on a local hub (`-- --quick`)."""
    install(session, bytecode=True)
    compile_checkout(session)
    session.run("python", "-m", "bench.run", *session.posargs)
