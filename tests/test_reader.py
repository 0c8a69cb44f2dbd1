"""The reader never guesses: whatever it cannot trust is `ModelNotReady` naming the file, never another layout.

Each case builds the layout the cache writes (with `modal_jobs.model_dir`'s own records), breaks
one thing, and checks the exact error and that its message names the file and the fix. The lock
parser is checked against tomllib: on every lock `render` writes they agree, and whatever the
parser takes from any text, tomllib reads the same way.
"""

from __future__ import annotations

import ast
import errno
import json
import os
import pathlib
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modal_jobs import models_lock, reader
from modal_jobs.model_dir import MANIFEST_NAME, POINTER_NAME, REVISIONS_DIR, FileRecord, Pointer, new_manifest
from modal_jobs.models_lock import LockedModel, ModelsLock
from modal_jobs.reader import ModelNotReady, model_path, parse_lock
from tests.conftest import ROOT

REPO = "Qwen/Model"
COMMIT = "c" * 40
OLDER = "0" * 40
FILES = {"config.json": b"{}", "speech_tokenizer/model.safetensors": b"w" * 100}
DOWNLOAD = "run `python3 tools/nox_locked.py -s download`"


def write_revision(where: Path, commit: str, files: dict[str, bytes] = FILES) -> None:
    """A complete revision (or the layout before revisions): its files, then its manifest."""
    for name, content in files.items():
        (where / name).parent.mkdir(parents=True, exist_ok=True)
        (where / name).write_bytes(content)
    records = [FileRecord(name, len(content), "git-sha1:" + "1" * 40) for name, content in files.items()]
    (where / MANIFEST_NAME).write_text(new_manifest(REPO, "main", commit, records, None, None).to_json())


@pytest.fixture
def model(tmp_path: Path) -> Path:
    """`<target>/Model/`: a current revision at COMMIT, and a leftover copy of the old layout at an older commit."""
    top = tmp_path / "target" / "Model"
    write_revision(top / REVISIONS_DIR / COMMIT, COMMIT)
    write_revision(top, OLDER)
    (top / POINTER_NAME).write_text(Pointer(REPO, COMMIT, COMMIT).to_json())
    return top


def refusal(model: Path, **kwargs: Any) -> str:
    """The reader's error for the model: exactly a ModelNotReady, one line, naming the model."""
    with pytest.raises(ModelNotReady) as raised:
        model_path(model.parent, REPO, **kwargs)
    assert type(raised.value) is ModelNotReady
    message = str(raised.value)
    assert "\n" not in message and message.startswith(f"{REPO}: ")
    return message


def test_the_current_revision_is_read_and_only_a_missing_pointer_means_the_old_layout(model: Path):
    assert model_path(model.parent, REPO) == model / REVISIONS_DIR / COMMIT
    (model / POINTER_NAME).unlink()
    assert model_path(model.parent, REPO) == model


def failing_read(path: Path, code: int) -> Callable[[Path], bytes]:
    """`Path.read_bytes` that fails with `code` for `path` alone, as a disk (EIO) or a permission (EACCES) would."""
    real = pathlib.Path.read_bytes

    def read_bytes(self: Path) -> bytes:
        if self == path:
            raise OSError(code, errno.errorcode[code])
        return real(self)

    return read_bytes


@pytest.mark.parametrize("code", [errno.EIO, errno.EACCES])
@pytest.mark.parametrize("name", [POINTER_NAME, f"{REVISIONS_DIR}/{COMMIT}/{MANIFEST_NAME}"])
def test_a_pointer_or_manifest_that_cannot_be_read_is_refused_not_taken_for_absent(
    model: Path, monkeypatch: pytest.MonkeyPatch, name: str, code: int
):
    monkeypatch.setattr(pathlib.Path, "read_bytes", failing_read(model / name, code))
    message = refusal(model)
    assert f"cannot read {model / name} ({errno.errorcode[code]}); check the target" in message


POINTERS = {
    "cut short": (b'{"format": 1, "repo_id": "Qwen/Mo', "is not a JSON object (cut short?)"),
    "not an object": (b'["format", 1]', "is not a JSON object (cut short?)"),
    "not UTF-8": (b'{"format": 1, "revision": "\xff"}', "is not a JSON object (cut short?)"),
    "empty": (b"", "is not a JSON object (cut short?)"),
    "another format": (json.dumps({"format": 2, "repo_id": REPO, "revision": COMMIT}).encode(), "has format 2"),
    "no revision": (json.dumps({"format": 1, "repo_id": REPO}).encode(), "is malformed (revision)"),
    "a number for a revision": (json.dumps({"format": 1, "repo_id": REPO, "revision": 7}).encode(), "(revision)"),
    "a revision that is a path": (
        json.dumps({"format": 1, "repo_id": REPO, "revision": "../../Other"}).encode(),
        "is malformed (revision)",
    ),
    "a revision with a slash": (json.dumps({"format": 1, "repo_id": REPO, "revision": "a/b"}).encode(), "(revision)"),
    "another model's pointer": (
        json.dumps({"format": 1, "repo_id": "Other/Model", "revision": COMMIT}).encode(),
        "is malformed (repo_id)",
    ),
    "a revision that does not exist": (
        json.dumps({"format": 1, "repo_id": REPO, "revision": "f" * 40}).encode(),
        "the revision is missing",
    ),
}


@pytest.mark.parametrize("case", sorted(POINTERS))
def test_a_pointer_that_cannot_be_trusted_is_refused_naming_it(model: Path, case: str):
    content, said = POINTERS[case]
    (model / POINTER_NAME).write_bytes(content)
    message = refusal(model)
    assert said in message
    if "missing" not in said:
        assert str(model / POINTER_NAME) in message and DOWNLOAD in message


def test_a_pointer_that_is_a_symlink_or_a_directory_is_refused(model: Path, tmp_path: Path):
    pointer = model / POINTER_NAME
    elsewhere = tmp_path / "pointer.json"
    elsewhere.write_bytes(pointer.read_bytes())
    pointer.unlink()
    pointer.symlink_to(elsewhere)
    assert f"{pointer} is not a file (a symlink?)" in refusal(model)
    elsewhere.unlink()  # a dangling link is still a pointer that is there
    assert f"{pointer} is not a file (a symlink?)" in refusal(model)
    pointer.unlink()
    pointer.mkdir()
    assert f"{pointer} is not a file (a symlink?)" in refusal(model)


def manifest_with(**fields: Any) -> bytes:
    base: dict[str, Any] = {"format": 1, "repo_id": REPO, "revision": "main", "commit": COMMIT}
    base["files"] = [{"path": "config.json", "size": 2, "hash": "git-sha1:" + "1" * 40}]
    return json.dumps({**base, **fields}).encode()


def one_file(**fields: Any) -> bytes:
    return manifest_with(files=[{"path": "config.json", "size": 2, "hash": "x", **fields}])


MANIFESTS = {
    "cut short": (manifest_with()[:40], "is not a JSON object (cut short?)"),
    "nested too deep": (b"[" * 100_000, "is not a JSON object (cut short?)"),
    "another format": (manifest_with(format=2), "has format 2, which this reader does not know"),
    "another model's": (manifest_with(repo_id="Other/Model"), "is the manifest of 'Other/Model'"),
    "no files": (manifest_with(files=None), "is malformed (files)"),
    "an empty list of files": (manifest_with(files=[]), "is malformed (files)"),
    "files not a list": (manifest_with(files={"config.json": 2}), "is malformed (files)"),
    "a number for a commit": (manifest_with(commit=7), "is malformed (commit)"),
    "a file without a size": (manifest_with(files=[{"path": "config.json"}]), "is malformed (file #1)"),
    "a file that is not an object": (manifest_with(files=["config.json"]), "is malformed (file #1)"),
    "a size as a string": (one_file(size="2"), "is malformed (file #1)"),
    "a size as a boolean": (one_file(size=True), "is malformed (file #1)"),
    "a negative size": (one_file(size=-1), "is malformed (file #1)"),
    "a size with a fraction": (one_file(size=2.0), "is malformed (file #1)"),
    "a path out of the revision": (one_file(path="../../Model/config.json"), "is malformed (file #1)"),
    "an absolute path": (one_file(path="/etc/hostname"), "is malformed (file #1)"),
    "a backslash": (one_file(path="speech_tokenizer\\model.safetensors"), "is malformed (file #1)"),
    "a number for a path": (one_file(path=3), "is malformed (file #1)"),
    "an empty path": (one_file(path=""), "is malformed (file #1)"),
}


@pytest.mark.parametrize("case", sorted(MANIFESTS))
def test_a_manifest_that_cannot_be_trusted_is_refused_naming_it(model: Path, case: str):
    content, said = MANIFESTS[case]
    manifest = model / REVISIONS_DIR / COMMIT / MANIFEST_NAME
    manifest.write_bytes(content)
    message = refusal(model)
    assert f"{manifest} {said}" in message and DOWNLOAD in message


def test_revision_directories_must_be_real_directories_inside_the_model(model: Path, tmp_path: Path):
    """A symlinked `.revisions`, revision or model directory is refused, however complete what it leads to."""
    revisions = model / REVISIONS_DIR
    outside = tmp_path / "outside"
    revisions.rename(outside)
    revisions.symlink_to(outside, target_is_directory=True)
    assert f"{revisions} is a symlink, which the cache never writes; remove it and {DOWNLOAD}" in refusal(model)
    revisions.unlink()
    revisions.mkdir()
    (revisions / COMMIT).symlink_to(outside / COMMIT, target_is_directory=True)
    assert f"{revisions / COMMIT} is a symlink" in refusal(model)
    (revisions / COMMIT).unlink()
    (revisions / COMMIT).write_text("a file")
    assert f"{revisions / COMMIT} is not a directory" in refusal(model)

    real = tmp_path / "real-model"
    model.rename(real)
    model.symlink_to(real, target_is_directory=True)
    assert f"{model} is a symlink" in refusal(model)


def test_a_file_that_leads_outside_its_revision_is_refused(model: Path, tmp_path: Path):
    revision = model / REVISIONS_DIR / COMMIT
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "config.json").write_bytes(FILES["config.json"])  # the right size, but not ours
    (revision / "config.json").unlink()
    (revision / "config.json").symlink_to(outside / "config.json")
    assert f"incomplete at {revision}: config.json is a link leading outside the revision" in refusal(model)

    (revision / "config.json").unlink()
    (revision / "config.json").write_bytes(FILES["config.json"])
    (outside / "model.safetensors").write_bytes(FILES["speech_tokenizer/model.safetensors"])
    (revision / "speech_tokenizer" / "model.safetensors").unlink()
    (revision / "speech_tokenizer").rmdir()
    (revision / "speech_tokenizer").symlink_to(outside, target_is_directory=True)
    message = refusal(model)
    leads = f"speech_tokenizer/model.safetensors is a link leading outside the revision (to {os.path.realpath(outside)}"
    assert leads in message


def test_a_folder_where_a_file_belongs_is_refused(model: Path):
    config = model / REVISIONS_DIR / COMMIT / "config.json"
    config.unlink()
    config.mkdir()
    assert f"config.json is not a file; {DOWNLOAD} to repair it" in refusal(model)


def test_a_repo_id_that_could_lead_outside_the_target_is_refused(model: Path):
    for repo_id in ("Qwen/..", "..", "Qwen/a/b", "Qwen\\Model"):
        with pytest.raises(ModelNotReady, match="is not a repo id"):
            model_path(model.parent, repo_id)


# -- the lock, read without tomllib ----------------------------------------------------------------


def write_lock(path: Path, *models: LockedModel) -> Path:
    path.write_text(models_lock.render(ModelsLock(models)))
    return path


def locked(repo_id: str = REPO, commit: str = COMMIT) -> LockedModel:
    return LockedModel(repo_id, "main", None, None, commit, (FileRecord("config.json", 2, "git-sha1:" + "1" * 40),))


def test_the_lock_names_the_commit_to_load(model: Path, tmp_path: Path):
    lock = write_lock(tmp_path / "models.lock", locked(), locked("Qwen/Other", OLDER))
    assert model_path(model.parent, REPO, lock=lock) == model / REVISIONS_DIR / COMMIT
    write_lock(lock, locked(commit=OLDER))
    assert f"holds commit {COMMIT[:12]}, not {OLDER[:12]} as asked" in refusal(model, lock=lock)


LOCKS = {
    "a commit that is a path": ([locked(commit="../Victim")], "has commit '../Victim', not 40 lowercase hex"),
    "a commit in capitals": ([locked(commit="C" * 40)], f"has commit '{'C' * 40}', not 40 lowercase hex"),
    "locked twice": ([locked(), locked()], "(Qwen/Model is locked twice)"),
    "absent": ([locked("Qwen/Other")], "not in"),
}


@pytest.mark.parametrize("case", sorted(LOCKS))
def test_a_lock_entry_that_cannot_be_trusted_is_refused_naming_the_lock(model: Path, tmp_path: Path, case: str):
    models, said = LOCKS[case]
    lock = write_lock(tmp_path / "models.lock", *models)
    message = refusal(model, lock=lock)
    assert said in message and str(lock) in message and "python3 tools/nox_locked.py -s lock" in message


TEXTS = {
    "not TOML": ("<<<<<<< HEAD\n", "is malformed (line 1:"),
    "TOML that lock never writes": ("version = 2\n[model]\nrepo_id = 'Qwen/Model'\n", "is malformed (line 2:"),
    "a literal string": ("version = 2\n[[model]]\nrepo_id = 'Qwen/Model'\n", "is malformed (line 3:"),
    "a newer version": ('version = 3\n[[model]]\nrepo_id = "Qwen/Model"\n', "has version 3, which this reader"),
    "no version": ('[[model]]\nrepo_id = "Qwen/Model"\n', "has version None"),
    "cut short": ('version = 2\n[[model]]\nrepo_id = "Qwen/Mo', "is malformed (line 3:"),
}


@pytest.mark.parametrize("case", sorted(TEXTS))
def test_a_lock_the_parser_does_not_understand_is_refused_naming_it(model: Path, tmp_path: Path, case: str):
    text, said = TEXTS[case]
    lock = tmp_path / "models.lock"
    lock.write_text(text)
    message = refusal(model, lock=lock)
    assert f"{lock} {said}" in message


# Every string `render` may write: any text, escapes and quotes included, as models.toml allows it.
TEXT = st.text(min_size=1, max_size=20)
PATHS = st.lists(TEXT, min_size=1, max_size=4, unique=True)
LOCKED = st.builds(
    LockedModel,
    repo_id=TEXT,
    revision=TEXT,
    include=st.none() | st.lists(TEXT, min_size=1, max_size=3).map(tuple),
    exclude=st.none() | st.lists(TEXT, min_size=1, max_size=3).map(tuple),
    commit=TEXT,
    files=PATHS.flatmap(
        lambda paths: st.tuples(*(st.builds(FileRecord, st.just(p), st.integers(0, 2**70), TEXT) for p in paths))
    ),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(LOCKED, max_size=3))
def test_the_parser_reads_every_lock_render_writes_as_tomllib_does(models: list[LockedModel]):
    text = models_lock.render(ModelsLock(tuple(models)))
    assert parse_lock(text) == tomllib.loads(text)


# Pieces of TOML, and of what is not TOML, glued at random.
# fmt: off
PIECES = [
    '"', "'", "\\", "\\u0041", "\\ud800", "\\U0001F600", "\\/", "\\x41", "\n", "\r\n", "\r", "\t", " ", "#", "=",
    "[", "]", "[[model]]", "{", "}", ",", ".", "0", "01", "7", "-1", "1_0", "true", "a", "model", "version", "é",
    "\x00", "\x7f", '"""', "= [", "= {", "a = 1",
]
# fmt: on


KEYS = st.sampled_from(["a", "model", "version", "files", "x-y_1", "7", "a.b", '"q"', "a b"])
SCALARS = st.sampled_from(['"a"', '"é\\u00e9\\t"', '"\t"', "0", "7", "2400000000", '""', *PIECES])
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda items: "[" + ", ".join(items) + "]"),
        st.lists(inner, max_size=3).map(lambda items: "[\n" + "".join(f"    {i},\n" for i in items) + "]"),
        st.lists(st.tuples(KEYS, inner), max_size=3).map(
            lambda pairs: "{ " + ", ".join(f"{k} = {v}" for k, v in pairs) + " }"
        ),
    ),
    max_leaves=8,
)
LINES = st.one_of(
    st.sampled_from(["[[model]]", "[model]", "# a comment", "", *PIECES]),
    st.tuples(KEYS, VALUES).map(lambda pair: f"{pair[0]} = {pair[1]}"),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(LINES, st.sampled_from(["\n", "\r\n", " ", "", " # c\n"])), max_size=8))
def test_whatever_the_parser_takes_tomllib_reads_alike(lines: list[tuple[str, str]]):
    text = "".join(line + end for line, end in lines)
    try:
        ours = parse_lock(text)
    except ValueError:
        return
    assert ours == tomllib.loads(text)


def test_the_reader_runs_without_tomllib_on_the_python_the_readme_names(model: Path, tmp_path: Path):
    """Python 3.9 and 3.10 have no tomllib: the reader, copied alone, reads a lock with it made unimportable."""
    source = (ROOT / "modal_jobs" / "reader.py").read_text()
    ast.parse(source, feature_version=(3, 9))  # no syntax newer than the oldest Python the README names
    alone = tmp_path / "vendored"
    alone.mkdir()
    (alone / "reader.py").write_text(source)
    lock = write_lock(tmp_path / "models.lock", locked())
    script = f"""
import sys
sys.modules["tomllib"] = None  # as on Python 3.9 and 3.10: `import tomllib` raises ImportError
sys.path.insert(0, {str(alone)!r})
import reader
print(reader.model_path({str(model.parent)!r}, {REPO!r}, lock={str(lock)!r}))
"""
    result = subprocess.run(
        [sys.executable, "-I", "-c", script], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{model / REVISIONS_DIR / COMMIT}\n"


def test_the_reader_takes_every_lock_version_the_cache_writes():
    assert models_lock.LOCK_VERSION in reader.LOCK_VERSIONS
