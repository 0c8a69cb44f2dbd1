"""`plan --base-model-list` trusts a changed models.lock only as far as the Hub backs it.

The pull request's check (model-plan.yml) runs this plan: an entry the lock changes must name a
commit its revision's history on the Hub reaches, with the Hub's files at that commit. A forged
lock (a Hub pull request's commit, files of its own) fails, naming the entry; the weekly drift
refresh, a lock written against the Hub, passes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from modal_jobs import models_lock
from modal_jobs.model_dir import FileRecord
from modal_jobs.models_lock import LockedModel
from tests.conftest import BIG, MODEL_LIST, SMALL, TOKENIZER, Cli, Repos, rows_by_repo
from tests.test_docs_samples import normalized, sample


def locked_base(cli: Cli, tmp_path: Path) -> Path:
    """The base branch: the list and the lock `lock` wrote against the hub, in a directory of their own."""
    assert cli("lock", local=False).returncode == 0
    base = tmp_path / "base" / "models.toml"
    base.parent.mkdir()
    base.write_text(MODEL_LIST)
    shutil.copy(cli.model_list.with_suffix(".lock"), base.with_suffix(".lock"))
    return base


def replace_entry(lock_file: Path, entry: LockedModel) -> None:
    """Write the lock with one entry replaced, its digest computed anew: as a forger would."""
    lock = models_lock.read(lock_file)
    assert lock is not None
    others = tuple(m for m in lock.models if m.repo_id != entry.repo_id)
    models_lock.write(lock_file, models_lock.ModelsLock((*others, entry)))


def locked_entry(lock_file: Path, repo_id: str) -> LockedModel:
    lock = models_lock.read(lock_file)
    entry = lock.get(repo_id) if lock is not None else None
    assert entry is not None, f"{repo_id} is not in {lock_file}"
    return entry


def plan(cli: Cli, base: Path) -> tuple[int, dict[str, dict[str, object]], str]:
    result = cli("plan", "--locked", "--base-model-list", str(base), "--json", local=False)
    assert result.stdout, result.stderr
    return result.returncode, rows_by_repo(json.loads(result.stdout)), result.stderr


def test_a_lock_naming_a_hub_pull_requests_commit_fails_the_check_naming_the_entry(
    cli: Cli, repos: Repos, tmp_path: Path
):
    """Anyone can open a pull request on a Hub repo; the Hub serves its commit by hash, with its author's files."""
    base = locked_base(cli, tmp_path)
    forged = cli.hub.open_pr(BIG, {**repos.files[BIG], "model.safetensors": b"not qwen's weights"})
    # The forger locks that commit, exactly as `lock` would for a list pinned to it, then calls it `main`.
    pinned = tmp_path / "pinned" / "models.toml"
    pinned.parent.mkdir()
    pinned.write_text(MODEL_LIST.replace(f'repo_id = "{BIG}"\n', f'repo_id = "{BIG}"\nrevision = "{forged}"\n'))
    assert cli("lock", "--model-list", str(pinned), local=False).returncode == 0
    entry = locked_entry(pinned.with_suffix(".lock"), BIG)
    assert entry.commit == forged
    replace_entry(cli.model_list.with_suffix(".lock"), LockedModel(BIG, "main", None, None, forged, entry.files))
    assert cli("lock", "--check", local=False).returncode == 0  # the lock matches the list: only the Hub can tell
    cli.hub.reset_counts()

    code, rows, stderr = plan(cli, base)

    assert code == 1
    assert rows[BIG]["status"] == "failed"
    assert f"commit {forged[:12]}, which is not in the history of revision 'main'" in str(rows[BIG]["error"])
    assert f"its head is {repos.commits[BIG][:12]}" in str(rows[BIG]["error"])
    assert {rows[SMALL]["status"], rows[TOKENIZER]["status"]} == {"unchanged"}
    assert f"{BIG}: models.lock names commit {forged[:12]}" in stderr
    assert normalized(sample("models.md", "text", f"{BIG}: models.lock")) == normalized(stderr)  # the page's sample
    # Only the changed entry was asked about: one history, and no tree for a commit the revision never reached.
    assert cli.hub.count(kind="commits") == 1 and cli.hub.count(kind="tree") == 0


def test_a_lock_whose_files_differ_from_the_hubs_tree_at_its_commit_fails_naming_the_file(
    cli: Cli, repos: Repos, tmp_path: Path
):
    base = locked_base(cli, tmp_path)
    moved = cli.hub.commit(BIG, {**repos.files[BIG], "config.json": b'{"fixed": 1}'})
    assert cli("lock", "--upgrade", local=False).returncode == 0  # an honest refresh, then one file swapped
    entry = locked_entry(cli.model_list.with_suffix(".lock"), BIG)
    assert entry.commit == moved
    swapped = tuple(
        FileRecord(f.path, f.size, "sha256:" + "0" * 64) if f.path == "model.safetensors" else f for f in entry.files
    )
    replace_entry(cli.model_list.with_suffix(".lock"), LockedModel(BIG, "main", None, None, moved, swapped))

    code, rows, stderr = plan(cli, base)

    assert code == 1
    assert rows[BIG]["status"] == "failed"
    error = str(rows[BIG]["error"])
    assert f"models.lock's files for commit {moved[:12]} are not the Hub's tree at that commit" in error
    assert "model.safetensors (differs)" in error
    assert f"{BIG}: models.lock's files" in stderr


def test_the_drift_refresh_and_a_rollback_to_an_older_commit_pass(cli: Cli, repos: Repos, tmp_path: Path):
    """A lock written against the Hub passes; so does an ancestor of the head (a deliberate rollback), pages away."""
    base = locked_base(cli, tmp_path)
    moved = cli.hub.commit(BIG, {**repos.files[BIG], "config.json": b'{"fixed": 1}'})
    assert cli("lock", "--upgrade", local=False).returncode == 0
    cli.hub.reset_counts()

    code, rows, _ = plan(cli, base)

    assert code == 0
    assert rows[BIG]["status"] == "changed" and rows[BIG]["commit"] == moved
    assert cli.hub.count(kind="commits", repo_id=BIG) == 1 and cli.hub.count(kind="tree", repo_id=BIG) == 1
    assert cli.hub.count(repo_id=SMALL) == cli.hub.count(repo_id=TOKENIZER) == 0  # unchanged: not asked again

    # Main moves on twice more; a lock still at the first commit is two pages down the history.
    for n in (2, 3):
        cli.hub.commit(BIG, {**repos.files[BIG], "config.json": b'{"fixed": %d}' % n})
    cli.hub.commits_per_page = 1
    first = locked_entry(base.with_suffix(".lock"), BIG)
    shutil.copy(cli.model_list.with_suffix(".lock"), base.with_suffix(".lock"))  # main merged the refresh
    replace_entry(cli.model_list.with_suffix(".lock"), first)  # this pull request takes BIG back
    cli.hub.reset_counts()

    code, rows, _ = plan(cli, base)

    assert code == 0, rows
    assert rows[BIG]["commit"] == repos.commits[BIG]
    assert cli.hub.count(kind="commits", repo_id=BIG) == 4  # one page per commit: head, two fixes, the first


def test_a_pinned_revision_must_be_the_locked_commit(cli: Cli, repos: Repos, tmp_path: Path):
    """Caught before the Hub is asked: a list pinned to one commit and a lock naming another disagree."""
    base = locked_base(cli, tmp_path)
    old = repos.commits[BIG]
    newer = cli.hub.commit(BIG, {**repos.files[BIG], "config.json": b'{"fixed": 1}'})
    cli.model_list.write_text(MODEL_LIST.replace(f'repo_id = "{BIG}"\n', f'repo_id = "{BIG}"\nrevision = "{old}"\n'))
    assert cli("lock", local=False).returncode == 0
    entry = locked_entry(cli.model_list.with_suffix(".lock"), BIG)
    replace_entry(cli.model_list.with_suffix(".lock"), LockedModel(BIG, old, None, None, newer, entry.files))
    cli.hub.reset_counts()

    result = cli("plan", "--locked", "--base-model-list", str(base), "--json", local=False)

    assert result.returncode == 2
    assert f"{BIG}: the lock's commit {newer[:12]} is not {old[:12]}, which models.toml pins" in result.stderr
    assert cli.hub.count() == 0
