"""The driver's command line: the flags of the script this cache grew from, as aliases of the commands.

`modal run download_models.py --model-size 0.6B`, `… --list-only` and `… --clear` are in people's
shell histories; `python -m modal_jobs` and `modal run -m modal_jobs.download_models` take them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from modal_jobs.cli_parser import build_parser
from modal_jobs.summary import human_bytes
from tests.conftest import BIG, ROOT, SMALL, TOKENIZER, Cli, Repos, assert_complete, model_dir, rows_by_repo, tree


def seed(cli: Cli, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m modal_jobs` with the seed's flags first, as they were typed, then the test's list and target."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "modal_jobs",
            *args,
            "--model-list",
            str(cli.model_list),
            "--local-dir",
            str(cli.target),
        ],
        env=cli.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )


def test_model_size_alone_downloads(cli: Cli, repos: Repos, target: Path):
    result = seed(cli, "--model-size", "0.6B", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["operation"] == "download"
    assert {repo: row["status"] for repo, row in rows_by_repo(summary).items()} == {
        SMALL: "downloaded",
        TOKENIZER: "downloaded",
    }
    assert_complete(target, SMALL, repos.files[SMALL])
    assert not model_dir(target, BIG).exists()


def test_list_only_lists(cli: Cli, repos: Repos):
    assert cli("download", "--model-size", "0.6B").returncode == 0
    result = seed(cli, "--list-only")
    assert result.returncode == 0, result.stderr
    assert result.stdout == cli("list").stdout
    assert [line.split()[1] for line in result.stdout.splitlines()[:-1]] == ["missing", "complete", "complete"]


def test_clear_without_yes_lists_what_would_go_and_removes_nothing(cli: Cli, repos: Repos, target: Path):
    assert cli("download", "--model-size", "0.6B").returncode == 0
    before = tree(target)
    result = seed(cli, "--clear")
    assert result.returncode == 2
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    size = human_bytes(sum(len(b) for repo in (SMALL, TOKENIZER) for b in repos.files[repo].values()))
    names = f"{SMALL.split('/')[1]}/, {TOKENIZER.split('/')[1]}/"
    assert line == (
        f"error: clear would remove 2 directories ({size}) from {target}: {names}; "
        "add --yes to remove them (--dry-run only lists them)"
    )
    assert tree(target) == before


def test_clear_with_yes_removes(cli: Cli, repos: Repos, target: Path):
    assert cli("download", "--model-size", "0.6B").returncode == 0
    result = seed(cli, "--clear", "--yes", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["operation"] == "clear"
    assert {row["status"] for row in summary["models"]} == {"removed"}
    assert tree(target) == {}


def test_help_shows_the_seed_flags_as_aliases_of_the_commands(cli: Cli):
    result = subprocess.run(
        [sys.executable, "-m", "modal_jobs", "--help"], env=cli.env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    lines = [" ".join(line.split()) for line in result.stdout.splitlines()]
    assert "--model-size LABEL [options] download --model-size LABEL [options]" in lines
    assert "--list-only [options] list [options]" in lines
    assert "--clear [options] clear [options] (removes only with --yes)" in lines


def test_two_seed_commands_at_once_are_refused_in_one_line(cli: Cli, repos: Repos):
    result = seed(cli, "--list-only", "--clear", "--yes")
    assert result.returncode == 2
    assert result.stderr == (
        "error: --list-only and --clear name two commands; pass one of them; see `python -m modal_jobs --help`\n"
    )


def test_a_command_line_that_names_its_command_is_left_as_it_is(cli: Cli, repos: Repos):
    """`--clear` means `clear` only in the seed's place, before any command: after one, it is an error as before."""
    result = cli("download", "--clear")
    assert result.returncode == 2
    assert "unrecognized arguments: --clear" in result.stderr
    assert not cli.target.exists()


def test_the_older_spellings_of_the_model_list_flags_still_work():
    """`--catalog` and `--base-catalog` were the flags' first names: workflows in forks still pass them."""
    parser = build_parser()
    old = parser.parse_args(["plan", "--catalog", "a.toml", "--base-catalog", "b.toml"])
    new = parser.parse_args(["plan", "--model-list", "a.toml", "--base-model-list", "b.toml"])
    assert (
        (old.model_list, old.base_model_list)
        == (new.model_list, new.base_model_list)
        == (Path("a.toml"), Path("b.toml"))
    )
    assert parser.parse_args(["path", "Qwen/X", "--catalog", "a.toml"]).model_list == Path("a.toml")
