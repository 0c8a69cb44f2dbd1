"""The fast reader of models.lock reads what `render` writes exactly as tomllib does, and gives up on anything else."""

from __future__ import annotations

import tomllib
from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from modal_jobs.lock_text import read_rendered
from modal_jobs.model_dir import FileRecord
from modal_jobs.models_lock import HEADER, LOCK_VERSION, LockedModel, ModelsLock, render

# Strings with quotes, backslashes, control characters, DEL and non-ASCII: render escapes some of them.
TEXT = st.text(
    alphabet=st.sampled_from(["a", "Z", "/", ".", " ", '"', "\\", "\t", "\x00", "\x7f", "é", "[", ","]),
    min_size=1,
    max_size=12,
)
GLOBS = st.none() | st.lists(TEXT, max_size=3).map(tuple)
FILES = st.lists(st.builds(FileRecord, TEXT, st.integers(0, 10**12), TEXT), max_size=4).map(tuple)
MODELS = st.lists(st.builds(LockedModel, TEXT, TEXT, GLOBS, GLOBS, TEXT, FILES), max_size=3)


def lock_text(models: list[LockedModel]) -> str:
    return render(ModelsLock(tuple(models)))


@settings(max_examples=60, deadline=None)
@given(MODELS)
def test_every_rendered_lock_reads_as_tomllib_reads_it(models: list[LockedModel]) -> None:
    text = lock_text(models)
    fast = read_rendered(text, HEADER, LOCK_VERSION)
    assert fast is None or fast == tomllib.loads(text)


def test_a_plain_lock_takes_the_fast_path():
    files = tuple(FileRecord(f"shard/{i:05d}.json", i, f"git-sha1:{i:040x}") for i in range(200))
    models = [
        LockedModel("org/a", "main", None, None, "c" * 40, files),
        LockedModel("org/b", "v2", ("*.json", "sub/*"), (), "d" * 40, files[:1]),
    ]
    text = lock_text(models)
    fast = read_rendered(text, HEADER, LOCK_VERSION)
    assert fast is not None and fast == tomllib.loads(text)
    assert read_rendered(lock_text([]), HEADER, LOCK_VERSION) == {"version": LOCK_VERSION}


EDITS: dict[str, Callable[[str], str]] = {
    "a comment": lambda t: t.replace("files = [\n", "files = [ # edited\n", 1),
    "a leading zero": lambda t: t.replace("size = 1,", "size = 01,", 1),
    "a key twice": lambda t: t.replace('revision = "main"\n', 'revision = "main"\nrevision = "v1"\n', 1),
    "keys out of order": lambda t: t.replace('revision = "main"\n', "", 1).replace(
        "files = [\n", 'revision = "main"\nfiles = [\n', 1
    ),
    "CRLF": lambda t: t.replace("\n", "\r\n"),
    "no final newline": lambda t: t[:-1],
    "an unclosed list": lambda t: t[: t.rindex("]")],
    "another header": lambda t: t.replace("Do not edit", "Edit", 1),
    "a missing commit": lambda t: t.replace(f'commit = "{"c" * 40}"\n', "", 1),
    "an escaped string": lambda t: t.replace('"org/a"', '"org\\u002fa"', 1),
}


def test_any_other_text_is_left_to_tomllib():
    files = (FileRecord("a.json", 1, "git-sha1:x"), FileRecord("b.json", 2, "sha256:y"))
    text = lock_text([LockedModel("org/a", "main", None, None, "c" * 40, files)])
    assert read_rendered(text, HEADER, LOCK_VERSION) is not None
    for name, edit in EDITS.items():
        assert read_rendered(edit(text), HEADER, LOCK_VERSION) is None, name
