"""`list` and `clear` on a local target, through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

from modal_jobs.model_dir import LOCK_NAME, MANIFEST_NAME
from tests.conftest import (
    BIG,
    SMALL,
    TOKENIZER,
    Cli,
    Repos,
    assert_complete,
    model_dir,
    rows_by_repo,
    run_probed,
    tree,
)


def test_list_reports_each_state_and_orphans(cli: Cli, repos: Repos, target: Path):
    assert cli("download").returncode == 0
    (model_dir(target, BIG) / MANIFEST_NAME).unlink()  # as a killed run leaves it
    cli.hub.commit(TOKENIZER, {"config.json": b"{}"})  # the Hub moved on, and the lock with it
    assert cli("lock", "--upgrade").returncode == 0
    (target / "old-model").mkdir()
    (target / "old-model" / "weights.bin").write_bytes(b"x" * 100)
    cli.model_list.write_text(
        cli.model_list.read_text() + '\n[[model]]\nrepo_id = "Qwen/Qwen3-TTS-12Hz-1.7B-CustomVoice"\n'
    )

    summary = cli.json("list")
    assert summary["exit_code"] == 0
    rows = rows_by_repo(summary)
    assert rows[SMALL]["status"] == "complete"
    assert rows[SMALL]["commit"] == repos.commits[SMALL]
    assert rows[SMALL]["files"] == 5
    assert rows[SMALL]["bytes"] == sum(len(b) for b in repos.files[SMALL].values())
    assert rows[BIG]["status"] == "incomplete"
    assert rows[TOKENIZER]["status"] == "stale"
    assert rows["Qwen/Qwen3-TTS-12Hz-1.7B-CustomVoice"]["status"] == "missing"
    assert summary["orphans"] == [
        {"name": "old-model", "path": str(target / "old-model"), "files": 1, "bytes": 100, "repo_id": None}
    ]
    assert summary["total_bytes"] == sum(row["bytes"] for row in rows.values())


def test_list_text_output_is_a_table_on_stdout(cli: Cli, repos: Repos):
    assert cli("download", "--model-size", "0.6B").returncode == 0
    result = cli("list")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0].split()[:2] == [BIG, "missing"]
    assert lines[1].split()[:3] == [SMALL, "complete", repos.commits[SMALL][:7]]
    assert lines[-1].startswith("total: ")


def test_clear_without_yes_deletes_nothing(cli: Cli, repos: Repos, target: Path):
    assert cli("download", "--model-size", "0.6B").returncode == 0
    snapshot = tree(target)
    result = cli("clear")
    assert result.returncode == 2
    assert result.stdout == ""
    assert "clear would remove 2 directories" in result.stderr
    assert "add --yes to remove them" in result.stderr
    assert tree(target) == snapshot

    summary = cli.json("clear", "--dry-run")
    assert summary["exit_code"] == 0
    assert {row["status"] for row in summary["models"]} == {"would-remove"}
    assert tree(target) == snapshot


def test_clear_one_model_keeps_the_others(cli: Cli, repos: Repos, target: Path):
    assert cli("download", "--model-size", "0.6B").returncode == 0
    summary = cli.json("clear", "--model", SMALL, "--yes")
    assert summary["exit_code"] == 0
    assert [(row["repo_id"], row["status"]) for row in summary["models"]] == [(SMALL, "removed")]
    assert not (target / "Qwen3-TTS-12Hz-0.6B-Base").exists()
    assert_complete(target, TOKENIZER, repos.files[TOKENIZER])


def test_clear_everything_removes_orphans_but_never_follows_links(cli: Cli, repos: Repos, target: Path, tmp_path: Path):
    assert cli("download", "--model-size", "0.6B").returncode == 0
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    (target / "linked-model").symlink_to(outside, target_is_directory=True)
    (target / "Qwen3-TTS-Tokenizer-12Hz" / "escape").symlink_to(outside, target_is_directory=True)

    summary = cli.json("clear", "--yes")
    assert summary["exit_code"] == 0
    assert {row["repo_id"] for row in summary["models"]} == {SMALL, TOKENIZER, "linked-model"}
    assert [p.name for p in target.iterdir()] == [LOCK_NAME]
    assert (outside / "keep.txt").read_text() == "mine"


def test_clear_on_an_empty_target_is_not_an_error(cli: Cli, target: Path):
    result = cli("clear", "--yes", "--json")
    assert result.returncode == 0
    assert json.loads(result.stdout)["models"] == []


def test_clearing_one_size_keeps_the_shared_models(cli: Cli, repos: Repos, target: Path):
    assert cli("download").returncode == 0
    summary = cli.json("clear", "--model-size", "1.7B", "--yes")
    assert [row["repo_id"] for row in summary["models"]] == [BIG]
    assert_complete(target, TOKENIZER, repos.files[TOKENIZER])
    summary = cli.json("clear", "--model-size", "both", "--dry-run")
    assert {row["repo_id"] for row in summary["models"]} == {SMALL, TOKENIZER}


def test_list_with_an_up_to_date_lock_needs_no_hub(cli: Cli, repos: Repos, target: Path):
    """models.lock is the desired state: `list` asks the Hub nothing and does not even import its client."""
    assert cli("download").returncode == 0
    summary, imported, requests = run_probed(cli, "list")
    assert {row["repo_id"]: (row["status"], row["commit"]) for row in summary["models"]} == {
        repo_id: ("complete", commit) for repo_id, commit in repos.commits.items()
    }
    assert (imported, requests) == (set(), 0)
    _, imported, requests = run_probed(cli, "verify")
    assert (imported, requests) == (set(), 0)

    cli.model_list.with_suffix(".lock").unlink()  # without a lock, the Hub says whether each model is current
    summary, imported, requests = run_probed(cli, "list")
    assert {row["status"] for row in summary["models"]} == {"complete"}
    assert "huggingface_hub" in imported and requests == len(repos.commits)
