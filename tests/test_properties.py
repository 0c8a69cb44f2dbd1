"""Property tests: no model list crashes the parser, and nothing accepted maps outside the target."""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

from hypothesis import given, settings
from hypothesis import strategies as st

from modal_jobs.errors import ModelListError
from modal_jobs.model_dir import RESERVED_NAMES, UnsafePathError, safe_relative_path
from modal_jobs.model_list import is_valid_repo_id, parse_model_list

ROOT = Path("/vol/models")
KEYS = st.sampled_from(["repo_id", "size", "revision", "include", "exclude", "name", "mount", "x"])
VALUES = st.one_of(
    st.text(max_size=30),
    st.integers(),
    st.booleans(),
    st.lists(st.text(max_size=8), max_size=3),
)
SEGMENTS = st.sampled_from(["..", ".", "", "a", "Qwen", "model.bin", "~", "\\", "/", ".cache", "x y"])


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_parses_or_fails_with_the_documented_error(text: str) -> None:
    try:
        parse_model_list(text)
    except ModelListError as exc:
        assert "\n" not in str(exc)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.dictionaries(KEYS, VALUES, max_size=5), max_size=4))
def test_structured_model_lists_never_crash(models: list[dict[str, object]]) -> None:
    text = "".join("[[model]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in m.items()) for m in models)
    try:
        model_list = parse_model_list(text)
    except ModelListError:
        return
    for model in model_list.models:
        assert is_valid_repo_id(model.repo_id)
        assert "/" not in model.dirname and model.dirname not in (".", "..")
        assert (ROOT / model.dirname).parent == ROOT


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=60) | st.lists(SEGMENTS, max_size=5).map("/".join))
def test_accepted_repo_ids_land_one_level_below_the_target(repo_id: str) -> None:
    text = f"[[model]]\nrepo_id = {json.dumps(repo_id)}\n"
    try:
        model_list = parse_model_list(text)
    except ModelListError:
        return
    (model,) = model_list.models
    normalized = PurePosixPath("/vol/models", model.dirname)
    assert normalized.parent == PurePosixPath("/vol/models")
    assert ".." not in model.dirname.split("/") and model.dirname.strip(".")


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=60) | st.lists(SEGMENTS, min_size=1, max_size=6).map("/".join))
def test_accepted_hub_paths_stay_inside_the_model_directory(path: str) -> None:
    try:
        relative = PurePosixPath(safe_relative_path(path))
    except UnsafePathError:
        return
    model_dir = PurePosixPath("/vol/models/Model")
    parts = (model_dir / relative).parts
    assert parts[: len(model_dir.parts)] == model_dir.parts
    assert ".." not in relative.parts and "." not in path.split("/")
    assert relative.parts[0] not in RESERVED_NAMES
    assert "\\" not in path and not path.startswith("/")
