"""models.lock read back as `models_lock.render` writes it, without a TOML parser.

`tomllib` is pure Python: a lock of 20 000 files takes it about 0.3 s, most of a `list`. The lock
is generated text, one file per line, so each line of the shape `render` writes is read with one
regular expression. Anything else (an escaped string, a comment, a line out of place) gives None and
the caller parses the text with `tomllib`: this reader may make reading faster, never different.
It returns what `tomllib.loads` returns for the same text.
"""

from __future__ import annotations

import re
from typing import Any

# A TOML basic string with nothing to unescape: no quote, backslash or control character.
_STRING = r'"([^"\\\x00-\x1f\x7f]*)"'
_PLAIN = re.compile(_STRING)
_FIELD = re.compile(rf"(repo_id|revision|commit|digest) = {_STRING}")
_GLOBS = re.compile(rf"(include|exclude) = \[((?:{_STRING}(?:, {_STRING})*)?)\]")
# One file a line (TOML integers have no leading zeros); matched over the whole `files` block at once.
_FILE = re.compile(rf"^    \{{ path = {_STRING}, size = (0|[1-9][0-9]*), hash = {_STRING} \}},$", re.MULTILINE)
_KEYS = ("repo_id", "revision", "include", "exclude", "commit", "digest")


def read_rendered(text: str, header: str, version: int) -> dict[str, Any] | None:
    """The lock's data when every line is as `render` writes it (after `header`, `version`), else None."""
    lines = text.split("\n")
    if lines[:2] != [header.rstrip("\n"), f"version = {version}"] or lines[-1] != "":
        return None
    models: list[dict[str, Any]] = []
    at = 2
    while at < len(lines) - 1:
        read = _model(lines, at)
        if read is None:
            return None
        model, at = read
        models.append(model)
    return {"version": version, "model": models} if models else {"version": version}


def _model(lines: list[str], at: int) -> tuple[dict[str, Any], int] | None:
    """One `[[model]]` table starting at line `at` (its blank line), and the line after its `]`."""
    if lines[at : at + 2] != ["", "[[model]]"]:
        return None
    model: dict[str, Any] = {}
    at += 2
    while lines[at] != "files = [":
        field = _FIELD.fullmatch(lines[at]) or _GLOBS.fullmatch(lines[at])
        if field is None:
            return None
        key = field.group(1)
        # In render's order, each key once.
        if any(later in model for later in _KEYS[_KEYS.index(key) :]):
            return None
        model[key] = field.group(2) if field.re is _FIELD else _PLAIN.findall(field.group(2))
        at += 1
    try:
        end = lines.index("]", at + 1)
    except ValueError:
        return None
    # No string matched can hold a line break, so one match per line of the block means every line matched.
    found = _FILE.findall("\n".join(lines[at + 1 : end]))
    if len(found) != end - at - 1 or any(key not in model for key in ("repo_id", "revision", "commit", "digest")):
        return None
    model["files"] = [{"path": path, "size": int(size), "hash": digest} for path, size, digest in found]
    return model, end + 1
