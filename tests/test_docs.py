"""The README and docs/ say what the code does: every command they show parses, every sample matches a real run.

A command block (```console or ```sh) is checked line by line: the CLI's own parser takes each
`python -m modal_jobs`, nox and `modal run` command line (a renamed flag fails here); workflow
inputs and the example's options must exist. An output block that starts with `$ python -m
modal_jobs` is compared with what that command prints against the local hub, commits and
timings aside.
"""

from __future__ import annotations

import inspect
import itertools
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from local_hub.server import LocalHub, hub_env
from modal_jobs.cli_parser import build_parser, seed_command_line
from modal_jobs.modal_app import HF_SECRET_NAME
from tests.conftest import BIG, MODEL_LIST, ROOT, SMALL, TOKENIZER, repo_files
from tests.test_inference_example import load_example
from tests.test_workflows import MODEL_CACHE, load_workflow

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^ *```(\w*)\n(.*?)^ *```", re.M | re.S)  # a block in a list item is indented
NOXFILE = (ROOT / "noxfile.py").read_text()
NAMED_SESSIONS = set(re.findall(r'session\(name="([\w-]+)"', NOXFILE))  # `list`, `container-requirements`
NOX_SESSIONS = set(re.findall(r"^def (\w+)\(session", NOXFILE, re.M)) | NAMED_SESSIONS


def blocks(kinds: tuple[str, ...]) -> list[tuple[str, str]]:
    return [(f"{page.name}", body) for page in PAGES for kind, body in BLOCK.findall(page.read_text()) if kind in kinds]


def command_lines() -> list[tuple[str, list[str]]]:
    found = []
    for page, body in blocks(("console", "sh")):
        for line in body.splitlines():
            line = line.split("  #")[0].strip()
            if line and not line.startswith("#"):
                found.append((page, shlex.split(line.removeprefix("$ "))))
    return found


def test_the_readme_fits_on_a_screen_or_two():
    """Its links, like every page's, are tests/test_links.py's."""
    assert len((ROOT / "README.md").read_text().splitlines()) < 150


@pytest.mark.parametrize(("page", "argv"), command_lines(), ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_every_command_the_docs_show_is_one_the_code_takes(page: str, argv: list[str]):
    if argv[:3] == ["python", "-m", "modal_jobs"] or argv[:3] == ["python3", "-m", "modal_jobs"]:
        cli_args = argv[3:]
    elif argv[:2] in (["python3", "tools/nox_locked.py"], ["nox", "-s"]) or argv[0] == "nox":
        words = argv[2:] if argv[0] == "python3" else argv[1:]
        if "--" not in words:
            sessions = [w for w in words if not w.startswith("-")]
            assert set(sessions) <= NOX_SESSIONS | {"lint", "tests", "bench"}, f"{page}: unknown session in {argv}"
            return
        session = words[words.index("-s") + 1]
        extra = words[words.index("--") + 1 :]
        if session in ("tests", "bench"):
            return
        assert session in NOX_SESSIONS, f"{page}: no nox session {session!r}"
        cli_args = [session, *extra]
    elif argv[:4] == ["modal", "run", "-m", "modal_jobs.download_models"]:
        cli_args = argv[4:]
    elif argv[:3] == ["modal", "run", "examples/inference.py"]:
        entrypoint = load_example().main.info.raw_f
        assert entrypoint is not None
        options = {f"--{name.replace('_', '-')}" for name in inspect.signature(entrypoint).parameters}
        assert {a for a in argv[3:] if a.startswith("--")} <= options, f"{page}: {argv}"
        return
    elif argv[:3] == ["gh", "workflow", "run"]:
        dispatch = load_workflow(ROOT / ".github" / "workflows" / argv[3])["on"]["workflow_dispatch"]
        inputs = (dispatch or {}).get("inputs", {})  # a dispatch without inputs is `workflow_dispatch:` alone
        for name, value in (pair.split("=", 1) for flag, pair in itertools.pairwise(argv) if flag == "-f"):
            assert name in inputs, f"{page}: {argv[3]} has no input {name!r}"
            assert "options" not in inputs[name] or value in inputs[name]["options"], f"{page}: {name}={value}"
        return
    elif argv[:3] == ["modal", "secret", "create"]:
        assert argv[3] == HF_SECRET_NAME, f"{page}: the app reads the secret {HF_SECRET_NAME!r}, not {argv[3]!r}"
        assert [pair.split("=")[0] for pair in argv[4:]] == ["HF_TOKEN"], f"{page}: {argv}"
        return
    elif argv[:2] in (["modal", "setup"], ["modal", "token"]) or argv[:2] == ["cd", "models"]:
        return  # Modal's own set-up: not ours to parse
    else:
        raise AssertionError(f"{page}: a command block holds {argv}, which this test does not know how to check")
    try:
        build_parser().parse_args(seed_command_line(cli_args))
    except SystemExit as exc:
        raise AssertionError(f"{page}: `{shlex.join(argv)}` is not a command line the CLI takes") from exc


def test_the_workflow_dispatch_inputs_the_docs_name_exist():
    assert "operation" in load_workflow(MODEL_CACHE)["on"]["workflow_dispatch"]["inputs"]


def normalized(text: str) -> list[str]:
    """Lines without what differs between runs: commits, durations and rates."""
    text = re.sub(r"\b[0-9a-f]{7}\b", "<commit>", text)
    text = re.sub(r" in [0-9.]+s \([0-9.]+ [KMG]?i?B/s\)", " in <time>", text)
    return [line.rstrip() for line in text.splitlines() if line.strip()]


def test_the_readme_sample_is_what_the_cli_prints(tmp_path: Path):
    """The README's run: download 0.6B, the Hub changes one file, `lock --upgrade`, download again."""
    (sample,) = [body for page, body in blocks(("text",)) if page == "README.md" and body.startswith("$ python")]
    command, *expected = sample.splitlines()
    with LocalHub(tmp_path / "hub") as hub:
        for i, repo_id in enumerate((BIG, SMALL, TOKENIZER)):
            hub.commit(repo_id, repo_files(repo_id, i, 3_000_000 // (i + 1)))
        (tmp_path / "models.toml").write_text(MODEL_LIST)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MODAL_", "GITHUB_"))}
        env.update(hub_env(hub, tmp_path / "hf-home"), PYTHONPATH=str(ROOT))

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            argv = [sys.executable, "-m", "modal_jobs", *args]
            return subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, check=True)

        run("download", "--model-size", "0.6B", "--local-dir", "models")
        hub.commit(SMALL, {**repo_files(SMALL, 1, 1_500_000), "config.json": b'{"v": 2}'})
        run("lock", "--upgrade")
        result = run(*shlex.split(command.removeprefix("$ python -m modal_jobs ")))
    assert normalized(result.stderr + result.stdout) == normalized("\n".join(expected))
