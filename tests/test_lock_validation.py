"""models.lock read as hostile input: a lock edited by hand (even with its digest recomputed) never reaches a target.

The lock decides which bytes land where, so it passes the checks the Hub's answers pass: 40-hex
commits, safe paths, byte counts, known hashes, nothing twice; its digest covers every field of an
entry. A lock that fails is refused with one line naming the file, the entry and the fix, before
any target is opened: the current revision stays current.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from modal_jobs import models_lock
from modal_jobs.errors import ModelListError
from modal_jobs.model_dir import FileRecord, UntrustedRecord, checked_record, set_digest
from modal_jobs.models_lock import LockedModel, ModelsLock
from modal_jobs.reader import model_path
from tests.conftest import MODEL_LIST, SMALL, TOKENIZER, Cli, Repos, rows_by_repo

FIX = "run `python3 tools/nox_locked.py -s lock` to write it again"
LOCK = Path("models.lock")
CONFIG = FileRecord("config.json", 120, "git-sha1:" + "1" * 40)
WEIGHTS = FileRecord("model.safetensors", 2_000_000, "sha256:" + "2" * 64)
MODEL = LockedModel("Qwen/Model", "main", None, None, "c" * 40, (CONFIG, WEIGHTS))


def lock_file(cli: Cli) -> Path:
    return cli.model_list.with_suffix(".lock")


def with_entry(lock: ModelsLock, repo_id: str, edit: Callable[[LockedModel], LockedModel]) -> ModelsLock:
    """The lock with one entry edited, as a hand (or a script) would, its digest recomputed by `render`."""
    return ModelsLock(tuple(edit(m) if m.repo_id == repo_id else m for m in lock.models))


def everything(root: Path) -> dict[str, str | bytes]:
    """Every entry below `root`: files with their bytes (the writers' lock with its holder's pid), the rest by kind."""
    found: dict[str, str | bytes] = {}
    for path in sorted(root.rglob("*")):
        name = str(path.relative_to(root))
        if path.is_symlink():
            found[name] = f"-> {os.readlink(path)}"
        elif path.is_dir():
            found[name] = "directory"
        else:
            found[name] = path.read_bytes()
    return found


def escaping_path(model: LockedModel) -> LockedModel:
    return replace(model, files=(*model.files, FileRecord("../../Victim/keep.txt", 4, "git-sha1:" + "0" * 40)))


ATTACKS = {
    "a file path out of the revision": (escaping_path, "unsafe file path from the lock: '../../Victim/keep.txt'"),
    "a commit that is a path": (
        lambda m: replace(m, commit="../Victim"),
        "commit '../Victim' is not 40 lowercase hex characters",
    ),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_a_hand_edited_lock_with_its_digest_recomputed_never_reaches_the_target(
    cli: Cli, repos: Repos, target: Path, tmp_path: Path, attack: str
):
    """The issue's two attacks, under every lock mode: exit 2, one line, not a byte changed on the target."""
    assert cli("download", "--model", SMALL).returncode == 0
    served = model_path(target, SMALL)
    before = everything(target)
    edit, problem = ATTACKS[attack]
    hostile = with_entry(models_lock.parse(lock_file(cli).read_text(), lock_file(cli)), SMALL, edit)
    lock_file(cli).write_text(models_lock.render(hostile))
    written = lock_file(cli).read_bytes()
    index = [m.repo_id for m in hostile.models].index(SMALL) + 1
    for mode in ((), ("--locked",), ("--frozen",)):
        result = cli("download", "--model", SMALL, *mode)
        assert result.returncode == 2, (mode, result.stderr)
        assert result.stderr == f"error: {lock_file(cli)}: model #{index} ({SMALL}): {problem}; {FIX}\n", mode
    assert everything(target) == before
    assert model_path(target, SMALL) == served
    assert lock_file(cli).read_bytes() == written, "a refused lock is left for a person to look at"
    assert not list(tmp_path.rglob("Victim"))


def rendered(*models: LockedModel) -> str:
    return models_lock.render(ModelsLock(models))


def refusal(text: str) -> str:
    with pytest.raises(ModelListError) as raised:
        models_lock.parse(text, LOCK)
    message = str(raised.value)
    assert "\n" not in message
    return message


SHAPES = {
    "commit ../Victim": (replace(MODEL, commit="../Victim"), "commit '../Victim' is not 40 lowercase hex characters"),
    "commit in capitals": (replace(MODEL, commit="C" * 40), f"commit '{'C' * 40}' is not 40 lowercase hex characters"),
    "commit cut short": (replace(MODEL, commit="c" * 39), f"commit '{'c' * 39}' is not 40 lowercase hex characters"),
    "repo id out of the target": (replace(MODEL, repo_id="../Victim"), None),
    "revision with a space": (replace(MODEL, revision="ma in"), "revision 'ma in' is not a branch, tag or commit"),
    "empty include": (replace(MODEL, include=()), "include is not a non-empty list of globs"),
    "no files": (replace(MODEL, files=()), "files is not a non-empty array of files"),
    "negative size": (
        replace(MODEL, files=(replace(CONFIG, size=-1), WEIGHTS)),
        "size -1 of 'config.json' from the lock is not a number of bytes",
    ),
    "unknown hash": (
        replace(MODEL, files=(replace(CONFIG, hash="md5:abc"), WEIGHTS)),
        "hash 'md5:abc' of 'config.json' from the lock is neither sha256:<64 hex> nor git-sha1:<40 hex>",
    ),
    "hash in capitals": (
        replace(MODEL, files=(CONFIG, replace(WEIGHTS, hash="sha256:" + "A" * 64))),
        f"hash 'sha256:{'A' * 64}' of 'model.safetensors' from the lock is neither",
    ),
    "a path twice": (replace(MODEL, files=(CONFIG, CONFIG, WEIGHTS)), "'config.json' is listed twice"),
}
PATHS = ["../../Victim/keep.txt", "/etc/passwd", "sub\\x.json", "a//b", "./a", "a/../../b", ""]
RESERVED = [".model-cache.json", ".revisions/x/y", ".current.json", ".cache/huggingface/x", ".model-cache.damaged"]


def test_a_record_checked_before_vouches_only_for_the_same_fields_of_the_same_types():
    """Passed records are remembered (`list` meets each file twice, in the lock and in its manifest), by fields
    of their exact types: True equals 1 and 1.0 equals 1, and neither is a byte count."""
    passed = checked_record("config.json", 1, CONFIG.hash)
    assert checked_record("config.json", 1, CONFIG.hash, source="the lock") is passed
    for size in (True, 1.0):
        with pytest.raises(UntrustedRecord, match=f"size {size!r} of 'config.json' from the lock is not a number"):
            checked_record("config.json", size, CONFIG.hash, source="the lock")


@pytest.mark.parametrize("case", sorted(SHAPES))
def test_a_well_formed_lock_with_a_field_of_the_wrong_shape_is_refused_naming_the_entry(case: str):
    model, problem = SHAPES[case]
    message = refusal(rendered(model))
    where = "models.lock: model #1" if model.repo_id == "../Victim" else "models.lock: model #1 (Qwen/Model)"
    assert message.startswith(f"{where}: {problem or 'repo_id'}") and message.endswith(f"; {FIX}")


@pytest.mark.parametrize("path", PATHS + RESERVED)
def test_every_file_path_goes_through_the_hub_listings_check(path: str):
    message = refusal(rendered(replace(MODEL, files=(FileRecord(path, 1, CONFIG.hash), WEIGHTS))))
    said = "collides with the cache's own" if path in RESERVED else "unsafe file path from the lock"
    assert message.startswith("models.lock: model #1 (Qwen/Model): ") and said in message and repr(path) in message


TEXT_EDITS: dict[str, tuple[Callable[[str], str], str]] = {
    "a size written as a string": (lambda t: t.replace("size = 120", 'size = "120"'), "size '120' of 'config.json'"),
    "a size written as a boolean": (lambda t: t.replace("size = 120", "size = true"), "size True of 'config.json'"),
    "an unknown key": (lambda t: t.replace('revision = "main"', 'revision = "main"\nmirror = "x"'), "unknown key"),
    "no commit": (lambda t: t.replace(f'commit = "{"c" * 40}"\n', ""), "no commit"),
    "a file with another key": (
        lambda t: t.replace(' size = 120, hash = "', ' size = 120, mode = 1, hash = "'),
        "a file is not a table of path, size and hash",
    ),
}


@pytest.mark.parametrize("case", sorted(TEXT_EDITS))
def test_an_entry_with_wrong_types_or_keys_is_refused_naming_it(case: str):
    edit, problem = TEXT_EDITS[case]
    text = edit(rendered(MODEL))
    assert text != rendered(MODEL)
    message = refusal(text)
    assert message.startswith(f"models.lock: model #1 (Qwen/Model): {problem}") and message.endswith(f"; {FIX}")


def test_the_whole_lock_is_checked_too():
    twice = refusal(rendered(MODEL, MODEL))
    assert twice == f"models.lock: Qwen/Model is locked twice; {FIX}"
    assert refusal(rendered(MODEL).replace("version = 2", "version = true")).startswith(
        "models.lock: lock version True"
    )
    assert refusal(rendered(MODEL).replace("version = 2", "version = 2\nsigned = 1")).startswith(
        "models.lock: unknown key 'signed'"
    )
    assert refusal("<<<<<<< HEAD\n").startswith("models.lock: not valid TOML (")


@pytest.mark.parametrize("line_end", ["\r\n", "\r"], ids=["CRLF", "CR"])
def test_a_lock_saved_with_other_line_ends_reads_as_written_and_lock_leaves_it(tmp_path: Path, line_end: str):
    """As text mode reads it: an editor's CRLF or CR is the same lock, and `write` (which compares it so) agrees."""
    path = tmp_path / "models.lock"
    path.write_bytes(rendered(MODEL).replace("\n", line_end).encode())

    assert models_lock.read(path) == ModelsLock((MODEL,))
    assert models_lock.write(path, ModelsLock((MODEL,))) is False


EVERY_FIELD: dict[str, Callable[[LockedModel], LockedModel]] = {
    "repo_id": lambda m: replace(m, repo_id="Qwen/Someone-Else"),
    "revision": lambda m: replace(m, revision="v2"),
    "include": lambda m: replace(m, include=("*.json",)),
    "exclude": lambda m: replace(m, exclude=("*.bin",)),
    "commit": lambda m: replace(m, commit="f" * 40),
    "a file's path": lambda m: replace(m, files=(replace(CONFIG, path="other.json"), WEIGHTS)),
    "a file's size": lambda m: replace(m, files=(replace(CONFIG, size=121), WEIGHTS)),
    "a file's hash": lambda m: replace(m, files=(replace(CONFIG, hash="git-sha1:" + "9" * 40), WEIGHTS)),
}


@pytest.mark.parametrize("field", sorted(EVERY_FIELD))
def test_the_digest_covers_every_field_of_an_entry(field: str):
    """A field edited by hand, the digest left as it was (a merge resolved by hand): refused, whatever the field."""
    original = rendered(MODEL)
    edited = rendered(EVERY_FIELD[field](MODEL))
    digest = next(line for line in original.splitlines() if line.startswith("digest = "))
    stale = "\n".join(digest if line.startswith("digest = ") else line for line in edited.splitlines()) + "\n"
    assert stale != original
    message = refusal(stale)
    assert message.endswith(f": the digest does not match the entry (edited by hand?); {FIX}")


def test_a_commit_pinned_in_the_list_that_the_lock_does_not_hold_is_a_disagreement(
    cli: Cli, repos: Repos, target: Path
):
    pinned = repos.commits[TOKENIZER]
    cli.model_list.write_text(
        MODEL_LIST.replace(f'repo_id = "{TOKENIZER}"', f'repo_id = "{TOKENIZER}"\nrevision = "{pinned}"')
    )
    assert cli("lock").returncode == 0
    other = cli.hub.commit(TOKENIZER, {"config.json": b"{}"})
    lock = models_lock.parse(lock_file(cli).read_text(), lock_file(cli))
    lock_file(cli).write_text(models_lock.render(with_entry(lock, TOKENIZER, lambda m: replace(m, commit=other))))

    check = cli("lock", "--check")
    assert check.returncode == 1
    line = f"{TOKENIZER}: the lock's commit {other[:12]} is not {pinned[:12]}, which models.toml pins"
    assert line in check.stderr
    refused = cli("download", "--locked")
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and f"models.lock is out of date ({line}" in refused.stderr
    assert not target.exists()

    assert cli("lock").returncode == 0
    fixed = models_lock.parse(lock_file(cli).read_text(), lock_file(cli)).get(TOKENIZER)
    assert fixed is not None and fixed.commit == pinned
    assert cli("lock", "--check").returncode == 0


def version_1(text: str) -> str:
    """The lock as a version-1 writer left it: the same entries, each digest over its files only."""
    lock = models_lock.parse(text, LOCK)
    digests = iter(set_digest(m.files) for m in sorted(lock.models, key=lambda m: m.repo_id))
    lines = [f'digest = "{next(digests)}"' if line.startswith("digest = ") else line for line in text.splitlines()]
    return "\n".join(lines).replace("version = 2", "version = 1", 1) + "\n"


def test_a_version_1_lock_is_refused_and_lock_rewrites_it_at_the_same_commits(
    cli: Cli, repos: Repos, target: Path, tmp_path: Path
):
    """A fork's lock from before the digest covered every field: one line naming the fix, which moves no commit."""
    assert cli("lock").returncode == 0
    current = lock_file(cli).read_text()
    old = version_1(current)
    lock_file(cli).write_text(old)
    cli.hub.commit(SMALL, {**repos.files[SMALL], "config.json": b'{"v": 2}'})  # the Hub moved meanwhile

    refused = cli("download")
    assert refused.returncode == 2
    assert refused.stderr == (
        f"error: {lock_file(cli)}: lock version 1 was written by an earlier modal_jobs; "
        "run `python3 tools/nox_locked.py -s lock` to rewrite it at the same commits, and commit it\n"
    )
    assert not target.exists()

    base = tmp_path / "base"  # main still holds the old lock while the pull request rewrites it
    base.mkdir()
    (base / "models.toml").write_text(MODEL_LIST)
    (base / "models.lock").write_text(old)
    cli.hub.reset_counts()
    assert cli("lock").returncode == 0
    assert lock_file(cli).read_text() == current
    assert cli.hub.count() == 0
    plan = cli("plan", "--base-model-list", str(base / "models.toml"), "--json", local=False)
    assert plan.returncode == 0, plan.stderr
    assert {row["status"] for row in rows_by_repo(json.loads(plan.stdout)).values()} == {"unchanged"}


def test_lock_writes_again_a_lock_it_cannot_trust_and_check_refuses_it(cli: Cli, repos: Repos):
    """`lock` is the fix every refusal names: it must not refuse the lock too."""
    assert cli("lock").returncode == 0
    good = lock_file(cli).read_text()
    lock_file(cli).write_text(good.replace("size = ", "size = 1", 1))
    check = cli("lock", "--check")
    assert check.returncode == 2
    assert check.stderr.count("\n") == 1 and "the digest does not match the entry (edited by hand?)" in check.stderr
    result = cli("lock")
    assert result.returncode == 0, result.stderr
    assert "the digest does not match the entry (edited by hand?); resolving every model again" in result.stderr
    assert lock_file(cli).read_text() == good


def test_a_hub_listing_with_an_impossible_size_fails_the_model_before_any_transfer(
    cli: Cli, repos: Repos, target: Path
):
    """The Hub's answers pass the same check as the lock: the listing is refused, nothing is fetched."""
    cli.hub.override_tree(SMALL, "config.json", size=-5)
    summary = cli.json("download", "--model", SMALL)
    row = rows_by_repo(summary)[SMALL]
    assert row["status"] == "failed"
    assert "size -5 of 'config.json' from the Hub is not a number of bytes" in row["error"]
    assert cli.hub.count(kind="resolve", method="GET") == 0
