"""Find a cached model's directory: the one call an inference service needs.

```python
from modal_jobs.reader import model_path

path = model_path("/vol/models", "Qwen/Qwen3-TTS-12Hz-0.6B-Base")   # the current revision
path = model_path("/vol/models", repo_id, commit="<40 hex>")         # exactly this commit, or an error
path = model_path("/vol/models", repo_id, lock="models.lock")        # the commit models.lock names
```

It reads a few small files, never writes, never touches the network, and imports nothing but the
standard library of Python 3.9 or newer: an inference image can copy this one file. It never
guesses: every problem is one `ModelNotReady` naming the model, the file and the fix. Only a
missing pointer means "no pointer"; the model's directory, `.revisions` and the revision must be
real directories (the cache writes no symlink); no manifest path may lead outside its revision.

The layout (written by `python3 tools/nox_locked.py -s download`, see `modal_jobs.model_dir`):
`<target>/<name>/.current.json` names `.revisions/<dir>/`, whose `.model-cache.json` (written
last) lists every file with its size. A directory of the layout before revisions (files and
`.model-cache.json` directly in `<target>/<name>/`, no `.current.json`) is read as it is.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any

# The names of the layout: `modal_jobs.model_dir` writes what this module reads.
POINTER_NAME = ".current.json"
REVISIONS_DIR = ".revisions"
MANIFEST_NAME = ".model-cache.json"
POINTER_FORMAT = 1
MANIFEST_FORMAT = 1
LOCK_VERSIONS = (1, 2)  # every version of models.lock this reader takes a commit from
COMMAND = "python3 tools/nox_locked.py -s download"
LOCK_COMMAND = "python3 tools/nox_locked.py -s lock"
_COMMIT = re.compile(r"[0-9a-f]{40}")
_REPO_PART = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?")


class ModelNotReady(Exception):
    """The model cannot be loaded from this target: absent, incomplete, unreadable, or at another commit than asked."""


def model_path(
    target: str | os.PathLike[str],
    repo_id: str,
    commit: str | None = None,
    *,
    lock: str | os.PathLike[str] | None = None,
) -> Path:
    """The directory to load `repo_id` from, complete and (when `commit` or `lock` says) at that commit.

    `target`: where the cache keeps models, such as the volume's mount (`/vol/models`) or a `--local-dir`.
    """
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(_REPO_PART.fullmatch(p) for p in parts):
        raise ModelNotReady(f"{repo_id!r} is not a repo id ('owner/name'); pass it as models.toml names it")
    if commit is None and lock is not None:
        commit = locked_commit(lock, repo_id)
    model_dir = Path(target) / parts[1]
    if not _directory(model_dir, repo_id):
        raise ModelNotReady(f"{repo_id}: absent from {target} (no {model_dir.name}/); run `{COMMAND}` to cache it")
    found = _current_revision(model_dir, repo_id)
    have, files = _manifest(found, repo_id)
    if commit is not None and have != commit:
        raise ModelNotReady(
            f"{repo_id}: {target} holds commit {have[:12]}, not {commit[:12]} as asked; "
            f"run `{COMMAND}` with the lock that names {commit[:12]}, or ask for {have[:12]}"
        )
    root = os.path.realpath(found)
    for name, size in files:
        state = _file_state(found / name, root, size)
        if state is not None:
            raise ModelNotReady(f"{repo_id}: incomplete at {found}: {name} is {state}; run `{COMMAND}` to repair it")
    return found


def locked_commit(lock: str | os.PathLike[str], repo_id: str) -> str:
    """The commit `models.lock` names for `repo_id`, read with `parse_lock` (Python 3.9 and 3.10 have no tomllib)."""
    try:
        data = parse_lock(Path(lock).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelNotReady(f"{repo_id}: cannot read {lock} ({exc}); ship models.lock with the service") from None
    except ValueError as exc:
        raise ModelNotReady(f"{repo_id}: {lock} is malformed ({exc}); write it again: `{LOCK_COMMAND}`") from None
    version = data.get("version")
    if type(version) is not int or version not in LOCK_VERSIONS:
        raise ModelNotReady(f"{repo_id}: {lock} has version {version!r}, which this reader does not know; upgrade it")
    models = data.get("model", [])
    entries = [m for m in models if isinstance(m, dict) and m.get("repo_id") == repo_id] if type(models) is list else []
    if not entries:
        raise ModelNotReady(f"{repo_id}: not in {lock}; add it to models.toml and run `{LOCK_COMMAND}`")
    commit = entries[0].get("commit")
    if len(entries) > 1 or not isinstance(commit, str) or not _COMMIT.fullmatch(commit):
        why = "is locked twice" if len(entries) > 1 else f"has commit {commit!r}, not 40 lowercase hex characters"
        raise ModelNotReady(f"{repo_id}: {lock} is malformed ({repo_id} {why}); write it again with `{LOCK_COMMAND}`")
    return commit


def _current_revision(model_dir: Path, repo_id: str) -> Path:
    """The revision the pointer names, a real directory; the model's directory itself when there is no pointer."""
    path = model_dir / POINTER_NAME
    pointer = _read_json(path, repo_id)
    if pointer is None:
        return model_dir  # the layout before revisions: the manifest sits beside the files
    _known_format(pointer, POINTER_FORMAT, path, repo_id)
    revision = pointer.get("revision")  # what the reader uses of it: the model's name, the revision's
    plain = _safe_path(revision) and "/" not in str(revision)
    wrong = "repo_id" if pointer.get("repo_id") != repo_id else None if plain else "revision"
    if wrong is not None:
        raise ModelNotReady(f"{repo_id}: {path} is malformed ({wrong}); run `{COMMAND}` to write it again")
    found = model_dir / REVISIONS_DIR / str(revision)
    if not (_directory(found.parent, repo_id) and _directory(found, repo_id)):
        raise ModelNotReady(f"{repo_id}: incomplete at {found}: the revision is missing; run `{COMMAND}` to repair it")
    return found


def _manifest(found: Path, repo_id: str) -> tuple[str, list[tuple[str, int]]]:
    """The commit and the files (path, size) the revision's manifest names, every field checked."""
    path = found / MANIFEST_NAME
    manifest = _read_json(path, repo_id)
    if manifest is None:
        raise ModelNotReady(f"{repo_id}: incomplete at {found} (no manifest for it); run `{COMMAND}` to finish it")
    _known_format(manifest, MANIFEST_FORMAT, path, repo_id)
    if manifest.get("repo_id") != repo_id:
        raise ModelNotReady(f"{repo_id}: {path} is the manifest of {manifest.get('repo_id')!r}; run `{COMMAND}`")
    commit, records = manifest.get("commit"), manifest.get("files")
    malformed = f"{repo_id}: {path} is malformed ({{}}); run `{COMMAND}` to repair it"
    if not isinstance(commit, str) or type(records) is not list or not records:
        raise ModelNotReady(malformed.format("commit" if not isinstance(commit, str) else "files"))
    files = []
    for index, record in enumerate(records, start=1):
        name = record.get("path") if isinstance(record, dict) else None
        size = record.get("size") if isinstance(record, dict) else None
        if not _safe_path(name) or type(size) is not int or size < 0:
            raise ModelNotReady(malformed.format(f"file #{index}"))
        files.append((str(name), size))
    return commit, files


def _known_format(data: dict[str, Any], known: int, path: Path, repo_id: str) -> None:
    if data.get("format") != known:
        raise ModelNotReady(
            f"{repo_id}: {path} has format {data.get('format')!r}, which this reader does not know; "
            f"upgrade the reader, or run `{COMMAND}`"
        )


def _file_state(path: Path, root: str, size: int) -> str | None:
    """What is wrong with one file of a revision, or None: it lies inside the revision and has its size."""
    real = os.path.realpath(path)
    if os.path.commonpath([root, real]) != root:
        return f"a link leading outside the revision (to {real})"
    try:
        found = Path(real).stat()
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    if not stat.S_ISREG(found.st_mode):
        return "not a file"
    return None if found.st_size == size else f"{found.st_size} bytes, not {size}"


def _directory(path: Path, repo_id: str) -> bool:
    """True for a real directory, False for nothing there; a symlink or anything else is refused."""
    mode = _mode(path, repo_id)
    if mode is None or stat.S_ISDIR(mode):
        return mode is not None
    what = "a symlink" if stat.S_ISLNK(mode) else "not a directory"
    raise ModelNotReady(f"{repo_id}: {path} is {what}, which the cache never writes; remove it and run `{COMMAND}`")


def _read_json(path: Path, repo_id: str) -> dict[str, Any] | None:
    """A small JSON object of the layout; None only when there is no such file (ENOENT), never when unreadable."""
    mode = _mode(path, repo_id)
    if mode is None:
        return None
    if not stat.S_ISREG(mode):
        raise ModelNotReady(f"{repo_id}: {path} is not a file (a symlink?); remove it and run `{COMMAND}`")
    try:
        data = json.loads(path.read_bytes())
    except OSError as exc:
        raise ModelNotReady(f"{repo_id}: cannot read {path} ({exc.strerror or exc}); check the target") from None
    except (ValueError, RecursionError):
        data = None
    if not isinstance(data, dict):
        raise ModelNotReady(f"{repo_id}: {path} is not a JSON object (cut short?); run `{COMMAND}` to write it again")
    return data


def _mode(path: Path, repo_id: str) -> int | None:
    """The file type and mode of `path` itself (a symlink is not followed); None only when nothing is there."""
    try:
        return os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ModelNotReady(f"{repo_id}: cannot read {path} ({exc.strerror or exc}); check the target") from None


def _safe_path(path: object) -> bool:
    """A relative path that stays below its directory: no '..', no absolute path, no backslash, no NUL."""
    if not isinstance(path, str) or not path or "\\" in path or "\x00" in path or path.startswith("/"):
        return False
    return all(part not in ("", ".", "..") for part in path.split("/"))


# -- models.lock, as `modal_jobs.models_lock.render` writes it --------------------------------------

# A TOML basic string as JSON reads it alike: no raw control character but tab, no escape but
# JSON's (less `\/`), no escaped surrogate. Anything else TOML allows is refused, never guessed at.
_STRING = re.compile(r'"(?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\["\\btnfr]|\\u(?![dD][89a-fA-F])[0-9A-Fa-f]{4})*"')
_INTEGER = re.compile(r"(?:0|[1-9][0-9]*)(?=[ \t,\]}\n#]|$)")
_KEY = re.compile(r"[A-Za-z0-9_-]+")
_EQUALS = re.compile(r"[ \t]*=[ \t]*")
# Spaces, then a comment to the end of the line; `_GAP` (between the values of an array) also spans lines.
_SPACE = re.compile(r"[ \t]*(?:#[^\x00-\x08\x0a-\x1f\x7f]*)?")
_GAP = re.compile(r"(?:[ \t\n]|#[^\x00-\x08\x0a-\x1f\x7f]*)*")


def parse_lock(text: str) -> dict[str, Any]:
    """The TOML that `render` writes, without tomllib: what this takes, tomllib reads alike; the rest is a ValueError.

    Bare keys, `[[model]]` tables, basic strings, non-negative integers, arrays, inline tables and
    comments: nothing else of TOML (no other tables, no dotted or quoted keys, no other values).
    """
    return _LockParser(text.replace("\r\n", "\n")).document()


class _LockParser:
    def __init__(self, text: str) -> None:
        self.text, self.i = text, 0

    def document(self) -> dict[str, Any]:
        root: dict[str, Any] = {}
        table = root
        while self.i < len(self.text):
            self.skip()
            if self.take("[[model]]"):
                if "model" in root and table is root:
                    raise self.fail("[[model]] after a key named model")
                table = {}
                root.setdefault("model", []).append(table)
            elif self.at("["):
                raise self.fail("a table other than [[model]]")
            elif not (self.at("\n") or self.i == len(self.text)):
                self.pair(table)
            self.skip()
            if self.i < len(self.text):
                self.expect("\n")
        return root

    def pair(self, table: dict[str, Any], depth: int = 0) -> None:
        key = self.match(_KEY, "a bare key")
        self.match(_EQUALS, "'='")
        if key in table:
            raise self.fail(f"{key} given twice")
        table[key] = self.value(depth)

    def value(self, depth: int) -> Any:
        if depth > 4:
            raise self.fail("values nested too deep")
        if self.at('"'):
            return json.loads(self.match(_STRING, "a string TOML and JSON read alike"), strict=False)
        if self.take("["):
            return self.sequence([], "]", depth + 1)
        if self.take("{"):
            return self.sequence({}, "}", depth + 1)
        return int(self.match(_INTEGER, "a string, a non-negative integer, an array or an inline table"))

    def sequence(self, items: Any, close: str, depth: int) -> Any:
        """An array (over lines, with comments, a last comma allowed) or an inline table (one line, none)."""
        array = close == "]"
        self.skip(newlines=array)
        while not self.take(close):
            if array:
                items.append(self.value(depth))
            else:
                self.pair(items, depth)
            self.skip(newlines=array)
            if self.take(","):
                self.skip(newlines=array)
                if not array and self.at(close):
                    raise self.fail("a comma before '}'")
            elif not self.at(close):
                raise self.fail(f"',' or {close!r} expected")
        return items

    def skip(self, newlines: bool = False) -> None:
        self.match(_GAP if newlines else _SPACE, "")  # both match the empty string

    def at(self, token: str) -> bool:
        return self.text.startswith(token, self.i)

    def take(self, token: str) -> bool:
        found = self.at(token)
        self.i += len(token) if found else 0
        return found

    def expect(self, token: str) -> None:
        if not self.take(token):
            raise self.fail(f"{token!r} expected")

    def match(self, pattern: re.Pattern[str], what: str) -> str:
        found = pattern.match(self.text, self.i)
        if found is None:
            raise self.fail(f"{what} expected")
        self.i = found.end()
        return found.group()

    def fail(self, what: str) -> ValueError:
        return ValueError(f"line {self.text.count(chr(10), 0, self.i) + 1}: {what}")
