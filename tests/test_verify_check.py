"""`verify` as the weekly check: every selected model of the list judged, each one not `ok` failing it by name."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from modal_jobs.model_dir import MANIFEST_NAME
from tests.conftest import BIG, MODEL_LIST, SMALL, TOKENIZER, Cli, Repos, model_dir, repo_files, rows_by_repo, tree

EXTRA = "Qwen/Qwen3-TTS-12Hz-1.7B-CustomVoice"


def flip_a_byte(path: Path) -> None:
    """Damage a file at its size, as a new inode: a revision's files may be hard links to another's."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.unlink()
    path.write_bytes(bytes(data))


def test_the_check_fails_on_each_missing_incomplete_stale_or_damaged_model_and_names_it(
    cli: Cli, repos: Repos, target: Path, tmp_path: Path
):
    cli.hub.commit(EXTRA, repo_files(EXTRA, 4, 500_000))
    cli.model_list.write_text(MODEL_LIST + f'\n[[model]]\nrepo_id = "{EXTRA}"\nsize = "1.7B"\n')
    assert cli("download").returncode == 0
    shutil.rmtree(target / BIG.split("/")[1])  # lost, or cleared
    (model_dir(target, SMALL) / MANIFEST_NAME).unlink()  # as a killed run leaves it
    moved = cli.hub.commit(TOKENIZER, {**repos.files[TOKENIZER], "config.json": b'{"v": 2}'})
    assert cli("lock", "--upgrade", "--model", TOKENIZER).returncode == 0  # the lock moved; the volume did not
    flip_a_byte(model_dir(target, EXTRA) / "model.safetensors")
    markdown = tmp_path / "check.md"

    result = cli("verify", "--locked", "--json", "--summary-md", str(markdown))

    assert result.returncode == 1, result.stderr
    rows = rows_by_repo(json.loads(result.stdout))
    assert {repo_id: row["status"] for repo_id, row in rows.items()} == {
        BIG: "missing",
        SMALL: "incomplete",
        TOKENIZER: "stale",
        EXTRA: "damaged",
    }
    assert rows[BIG]["error"] == "missing: run download to fetch it"
    assert rows[SMALL]["error"] == "incomplete (no manifest): run download to fetch it"
    assert rows[TOKENIZER]["error"] == (
        f"at commit {repos.commits[TOKENIZER][:12]}, models.lock names {moved[:12]}; run download"
    )
    assert rows[EXTRA]["error"].startswith("1 damaged file(s): model.safetensors (sha256 mismatch)")
    written = markdown.read_text()
    for repo_id, row in rows.items():
        assert f"| `{repo_id}` | ❌ {row['status']} |" in written
        assert f"- `{repo_id}`: `{row['error']}`" in written  # the body names each one and why

    assert cli("download", "--locked").returncode == 0
    assert cli("verify", "--locked").returncode == 0


def test_a_selection_is_judged_whole_and_without_a_lock_the_commit_is_not(cli: Cli, repos: Repos, target: Path):
    assert cli("download", "--model-size", "0.6B").returncode == 0
    summary = cli.json("verify", "--model-size", "1.7B")  # the size's models and the shared ones
    assert summary["exit_code"] == 1
    assert {repo_id: row["status"] for repo_id, row in rows_by_repo(summary).items()} == {
        BIG: "missing",
        TOKENIZER: "ok",
    }
    assert cli.json("verify", "--model-size", "0.6B")["exit_code"] == 0

    cli.model_list.with_suffix(".lock").unlink()
    cli.hub.commit(SMALL, {**repos.files[SMALL], "config.json": b'{"v": 2}'})
    summary = cli.json("verify", "--model-size", "0.6B")
    assert summary["exit_code"] == 0  # nothing says which commit is wanted: sound is ok
    assert summary["note"] == f"not checked against models.lock, which does not name them: {SMALL}, {TOKENIZER}"


def test_verify_of_a_target_that_does_not_exist_fails_every_model_missing_and_creates_nothing(
    cli: Cli, repos: Repos, tmp_path: Path
):
    cli.target = tmp_path / "does-not-exist"
    result = cli("verify")
    assert result.returncode == 1
    assert [line.split()[:2] for line in result.stdout.splitlines()[:3]] == [
        [BIG, "missing"],
        [SMALL, "missing"],
        [TOKENIZER, "missing"],
    ]
    assert (
        result.stdout.splitlines()[-1]
        == f"note: {cli.target} does not exist (check --local-dir); verify created nothing"
    )
    assert f"{cli.target} does not exist" in result.stderr
    assert not cli.target.exists()


def test_a_verify_that_finds_nothing_wrong_changes_nothing(cli: Cli, repos: Repos, target: Path):
    assert cli("download").returncode == 0
    before = tree(target)
    assert cli("verify", "--locked").returncode == 0
    assert tree(target) == before
