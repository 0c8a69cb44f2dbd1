"""`plan --base-model-list`: what merging a changed model list would do, checked against the Hub, no target needed."""

from __future__ import annotations

import json
from pathlib import Path

from modal_jobs.summary import human_bytes
from tests.conftest import BIG, MODEL_LIST, SMALL, TOKENIZER, Cli, Repos, rows_by_repo

NEW = "Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def without_big(model_list: str) -> str:
    return model_list.replace(f'[[model]]\nrepo_id = "{BIG}"\nsize = "1.7B"\n', "")


def test_rows_say_what_was_added_removed_and_changed_with_sizes(cli: Cli, repos: Repos, tmp_path: Path):
    cli.hub.commit(NEW, {"config.json": b"{}", "model.safetensors": b"w" * 3000})
    v2 = cli.hub.commit(SMALL, {**repos.files[SMALL], "extra.json": b"{}"}, branch="v2")
    base = write(tmp_path / "base.toml", MODEL_LIST)
    changed = MODEL_LIST.replace(f'repo_id = "{BIG}"\nsize = "1.7B"', f'repo_id = "{NEW}"\nsize = "0.6B-cv"').replace(
        f'repo_id = "{SMALL}"\nsize = "0.6B"', f'repo_id = "{SMALL}"\nsize = "0.6B"\nrevision = "v2"'
    )
    cli.model_list.write_text(changed)
    step_summary = tmp_path / "step-summary.md"

    result = cli(
        "plan", "--base-model-list", str(base), "--json", local=False, env={"GITHUB_STEP_SUMMARY": str(step_summary)}
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    rows = rows_by_repo(summary)
    assert {repo: row["status"] for repo, row in rows.items()} == {
        NEW: "added",
        SMALL: "changed",
        TOKENIZER: "unchanged",
        BIG: "removed-from-list",
    }
    assert rows[NEW]["commit"] and rows[NEW]["files"] == 2 and rows[NEW]["bytes"] == 3002
    assert rows[SMALL]["commit"] == v2
    assert rows[SMALL]["note"] == f"revision main → v2; was at commit {repos.commits[SMALL][:7]}"
    small_bytes = sum(len(b) for b in repos.files[SMALL].values()) + 2
    assert rows[SMALL]["bytes"] == small_bytes
    assert rows[TOKENIZER]["fetch_bytes"] == 0
    # With no target, everything added or changed is the most the merge can transfer.
    assert summary["fetch_bytes"] == 3002 + small_bytes
    markdown = step_summary.read_text()
    assert f"| `{NEW}` | ➕ added |" in markdown
    assert "**At most:**" in markdown
    # A removed model says what leaves the volume: the commit its base entry resolves to, its files and bytes.
    big_bytes = sum(len(b) for b in repos.files[BIG].values())
    assert rows[BIG]["commit"] == repos.commits[BIG]
    assert (rows[BIG]["files"], rows[BIG]["bytes"], rows[BIG]["fetch_bytes"]) == (5, big_bytes, 0)
    assert rows[BIG]["note"] == "download --prune removes it from the volume"
    assert summary["freed_bytes"] == big_bytes
    assert summary["total_bytes"] == 3002 + small_bytes + sum(len(b) for b in repos.files[TOKENIZER].values())
    big = human_bytes(big_bytes)
    assert f"| `{BIG}` | ➖ removed-from-list | `{repos.commits[BIG][:7]}` | 5 | {big} | – |" in markdown
    assert f"**Frees:** {big} in 1 model." in markdown
    # no target: nothing listed, nothing created
    assert not cli.target.exists()


def test_the_terminal_says_what_a_removal_frees(cli: Cli, repos: Repos, tmp_path: Path):
    base = write(tmp_path / "base.toml", MODEL_LIST)
    cli.model_list.write_text(without_big(MODEL_LIST))
    result = cli("plan", "--base-model-list", str(base), local=False)
    assert result.returncode == 0, result.stderr
    big = human_bytes(sum(len(b) for b in repos.files[BIG].values()))
    row = next(line for line in result.stdout.splitlines() if line.startswith(BIG))
    assert row.split()[1:5] == ["removed-from-list", repos.commits[BIG][:7], "5", "files"], row
    assert row.endswith(big)
    assert result.stdout.splitlines()[-1].endswith(f", frees: {big}"), result.stdout


def test_a_removed_model_whose_base_entry_no_longer_resolves_says_so_without_failing(
    cli: Cli, repos: Repos, tmp_path: Path
):
    gone = "Qwen/Deleted-Since"
    base = write(tmp_path / "base.toml", MODEL_LIST + f'\n[[model]]\nrepo_id = "{gone}"\n')
    assert cli("lock", local=False).returncode == 0
    result = cli("plan", "--base-model-list", str(base), "--json", local=False)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    row = rows_by_repo(summary)[gone]
    assert row["status"] == "removed-from-list"
    assert (row["commit"], row["files"], row["bytes"], row["error"]) == (None, 0, 0, None)
    assert row["note"].startswith("the base entry did not resolve, so what leaves is unknown: ")
    assert f"repository {gone} not found" in row["note"]
    assert summary["freed_bytes"] == 0
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"warning: {gone}: removed from the list, and its base entry did not resolve: "), line


def test_given_a_target_a_removed_model_says_what_the_target_holds(cli: Cli, repos: Repos, tmp_path: Path):
    assert cli("download").returncode == 0
    base = write(tmp_path / "base.toml", MODEL_LIST)
    cli.model_list.write_text(without_big(MODEL_LIST))
    row = rows_by_repo(cli.json("plan", "--base-model-list", str(base)))[BIG]
    big_bytes = sum(len(b) for b in repos.files[BIG].values())
    assert (row["commit"], row["files"], row["bytes"]) == (repos.commits[BIG], 5, big_bytes)
    assert row["note"] == f"on the target: 5 file(s), {human_bytes(big_bytes)}; download --prune removes them"
    # The target's manifest names the commit's files: the tree is not listed again.
    assert cli.hub.count(kind="tree", repo_id=BIG) == 1


def test_an_invalid_list_fails_the_check_in_one_line(cli: Cli, tmp_path: Path):
    cli.model_list.write_text(MODEL_LIST + '\n[[model]]\nrepo_id = "not a repo"\n')
    result = cli("plan", "--base-model-list", str(write(tmp_path / "base.toml", MODEL_LIST)), local=False)
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert "repo_id 'not a repo' is not 'owner/name'" in result.stderr


def test_a_model_that_does_not_resolve_fails_the_check(cli: Cli, repos: Repos, tmp_path: Path):
    cli.model_list.write_text(MODEL_LIST.replace('repo_id = "Qwen/Qwen3-TTS-Tokenizer-12Hz"', 'repo_id = "Qwen/Typo"'))
    result = cli("plan", "--base-model-list", str(write(tmp_path / "base.toml", MODEL_LIST)), "--json", local=False)
    assert result.returncode == 1
    row = rows_by_repo(json.loads(result.stdout))["Qwen/Typo"]
    assert row["status"] == "failed"
    assert "repository Qwen/Typo not found" in row["error"]
    assert "Qwen/Typo@main: resolve revision: repository Qwen/Typo not found" in result.stderr


def test_a_gated_repo_without_a_token_is_not_checked_not_failed(cli: Cli, repos: Repos):
    cli.hub.fail(SMALL, 401, times=None, gated=True)
    summary = cli.json("plan", "--local-dir", str(cli.target))
    assert summary["exit_code"] == 0
    row = rows_by_repo(summary)[SMALL]
    assert row["status"] == "not-checked"
    assert row["note"] == "not checked: needs HF_TOKEN"


def test_a_gated_repo_refusing_a_saved_login_fails_the_check(cli: Cli, repos: Repos):
    """A token saved by `hf auth login` is a token: the refusal is the answer, not a missing token."""
    cli.hub.fail(SMALL, 401, times=None, gated=True)
    token_file = Path(cli.env["HF_HOME"]) / "token"
    token_file.parent.mkdir(parents=True, exist_ok=True)
    token_file.write_text("hf_saved_login_token")
    summary = cli.json("plan", "--local-dir", str(cli.target))
    assert summary["exit_code"] == 1
    assert rows_by_repo(summary)[SMALL]["status"] == "failed"


def test_given_a_target_the_plan_says_what_is_already_there(cli: Cli, repos: Repos):
    assert cli("download", "--model-size", "0.6B").returncode == 0
    summary = cli.json("plan")
    rows = rows_by_repo(summary)
    assert rows[SMALL]["fetch_bytes"] == 0
    assert rows[SMALL]["note"] == "on the target: up-to-date"
    assert rows[BIG]["note"] == "on the target: fetch"
    assert summary["fetch_bytes"] == rows[BIG]["bytes"]


def test_against_a_base_without_a_lock_every_model_is_added_with_all_its_bytes(cli: Cli, repos: Repos, tmp_path: Path):
    """A fork's first lock: the base has models.toml alone, and the cache has downloaded nothing under it."""
    (tmp_path / "base").mkdir()
    base = write(tmp_path / "base" / "models.toml", MODEL_LIST)
    assert cli("lock", local=False).returncode == 0  # the pull request adds models.lock

    result = cli("plan", "--locked", "--base-model-list", str(base), "--json", local=False)

    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    rows = rows_by_repo(summary)
    for repo_id, files in repos.files.items():
        size = sum(len(b) for b in files.values())
        row = rows[repo_id]
        assert (row["status"], row["commit"], row["files"], row["bytes"]) == ("added", repos.commits[repo_id], 5, size)
        assert row["fetch_bytes"] == size
        assert row["note"] == "first lock: the base has no models.lock, so the merge downloads it"
    assert summary["fetch_bytes"] == sum(len(b) for files in repos.files.values() for b in files.values())
