"""The model list: what it accepts, what it refuses (with one line and exit 2), and what a selection picks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from modal_jobs.errors import ModelListError, UsageError
from modal_jobs.model_list import load_model_list, parse_model_list, select_models

ROOT = Path(__file__).resolve().parent.parent

VALID = """
[volume]
name = "qwen3-tts-models"
mount = "/vol/models"

[[model]]
repo_id = "Qwen/Qwen3-TTS-12Hz-1.7B-Base"
size = "1.7B"

[[model]]
repo_id = "Qwen/Qwen3-TTS-12Hz-0.6B-Base"
size = "0.6B"
revision = "0123456789abcdef0123456789abcdef01234567"

[[model]]
repo_id = "Qwen/Qwen3-TTS-Tokenizer-12Hz"
"""


def test_repository_model_list_is_valid():
    model_list = load_model_list(ROOT / "models.toml")
    assert model_list.volume.name == "qwen3-tts-models"
    assert model_list.volume.mount == "/vol/models"
    assert [m.dirname for m in model_list.models] == [
        "Qwen3-TTS-12Hz-1.7B-Base",
        "Qwen3-TTS-12Hz-0.6B-Base",
        "Qwen3-TTS-Tokenizer-12Hz",
    ]
    assert model_list.sizes == ("1.7B", "0.6B")


def test_defaults_and_pinned_commit():
    model_list = parse_model_list(VALID)
    big, small, shared = model_list.models
    assert big.revision == "main" and big.pinned_commit is None
    assert small.pinned_commit == "0123456789abcdef0123456789abcdef01234567"
    assert shared.size is None


@pytest.mark.parametrize(
    ("sizes", "ids", "expected"),
    [
        ((), (), ["1.7B-Base", "0.6B-Base", "Tokenizer-12Hz"]),
        (("0.6B",), (), ["0.6B-Base", "Tokenizer-12Hz"]),
        (("1.7B",), (), ["1.7B-Base", "Tokenizer-12Hz"]),
        (("both",), (), ["1.7B-Base", "0.6B-Base", "Tokenizer-12Hz"]),
        (("ALL",), (), ["1.7B-Base", "0.6B-Base", "Tokenizer-12Hz"]),
        ((), ("Qwen/Qwen3-TTS-12Hz-0.6B-Base",), ["0.6B-Base"]),
        (("1.7B",), ("Qwen/Qwen3-TTS-12Hz-0.6B-Base",), ["1.7B-Base", "0.6B-Base", "Tokenizer-12Hz"]),
    ],
)
def test_selection(sizes, ids, expected):
    chosen = select_models(parse_model_list(VALID), sizes, ids)
    assert [m.dirname.removeprefix("Qwen3-TTS-").removeprefix("12Hz-") for m in chosen] == expected


def test_unknown_size_and_model_are_usage_errors():
    model_list = parse_model_list(VALID)
    with pytest.raises(UsageError, match=r"--model-size '7B' is not in .*choose one of 1.7B, 0.6B, both, all"):
        select_models(model_list, ("7B",))
    with pytest.raises(UsageError, match=r"--model 'Qwen/Nope' is not in"):
        select_models(model_list, (), ("Qwen/Nope",))


BAD_LISTS = [
    ('[[model]]\nrepo_id = "Qwen/A"\nsize = \n', r"not valid TOML: .*line 3.*fix the syntax"),
    (
        '[[model]]\nrepo_id = "Qwen/A"\nrevison = "main"\n',
        r"model #1 \(Qwen/A\): unknown key 'revison' in \[\[model\]\]; allowed keys",
    ),
    ('colour = "red"\n[[model]]\nrepo_id = "Qwen/A"\n', r"unknown key 'colour' in top-level table"),
    ('[volume]\nname = "v"\nsize = 3\n[[model]]\nrepo_id = "Qwen/A"\n', r"unknown key 'size' in \[volume\]"),
    ('[[model]]\nsize = "1B"\n', r"model #1: missing repo_id; add repo_id"),
    ('[[model]]\nrepo_id = "Qwen"\n', r"repo_id 'Qwen' is not 'owner/name'"),
    ('[[model]]\nrepo_id = "Qwen/a/b"\n', r"repo_id 'Qwen/a/b' is not 'owner/name'"),
    ('[[model]]\nrepo_id = "Qwen/.."\n', r"repo_id 'Qwen/\.\.' is not 'owner/name'"),
    ('[[model]]\nrepo_id = "/etc/passwd"\n', r"is not 'owner/name'"),
    ('[[model]]\nrepo_id = "Qwen//A"\n', r"is not 'owner/name'"),
    ('[[model]]\nrepo_id = "Qwen/a..b"\n', r"is not 'owner/name'"),
    ("[[model]]\nrepo_id = 7\n", r"repo_id 7 is not 'owner/name'"),
    (
        '[[model]]\nrepo_id = "Qwen/A"\n[[model]]\nrepo_id = "Other/A"\n',
        r"Qwen/A and Other/A would both land in 'A/'",
    ),
    ('[[model]]\nrepo_id = "Qwen/A"\n[[model]]\nrepo_id = "Qwen/a"\n', r"would both land in"),
    ('[volume]\nname = "v"\n', r"the model list is empty; add at least one \[\[model\]\]"),
    ("", r"the model list is empty"),
    ('model = "x"\n', r"'model' must be an array of tables"),
    ('[[model]]\nrepo_id = "Qwen/A"\nsize = "both"\n', r"size 'both' is reserved"),
    ('[[model]]\nrepo_id = "Qwen/A"\nrevision = ""\n', r"revision must be a branch, tag or 40-hex commit"),
    (
        '[[model]]\nrepo_id = "Qwen/A"\ninclude = "*.json"\n',
        r"include must be a non-empty list of glob strings",
    ),
    ('[volume]\nmount = "vol"\n[[model]]\nrepo_id = "Qwen/A"\n', r"mount 'vol' must be an absolute path"),
    (
        '[volume]\nname = "a b"\n[[model]]\nrepo_id = "Qwen/A"\n',
        r"name 'a b' is not a valid Modal Volume name",
    ),
]


@pytest.mark.parametrize(("text", "message"), BAD_LISTS)
def test_bad_model_list_is_refused_with_one_line(text, message):
    with pytest.raises(ModelListError, match=message) as info:
        parse_model_list(text, Path("models.toml"))
    assert "\n" not in str(info.value)
    assert str(info.value).startswith("models.toml")


def run_cli(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m modal_jobs ARGS` in its own process, as a person would run it."""
    return subprocess.run(
        [sys.executable, "-m", "modal_jobs", *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env=env,
    )


@pytest.mark.parametrize(("text", "message"), BAD_LISTS[:6])
def test_cli_exits_2_on_a_bad_model_list_and_writes_nothing(tmp_path, text, message):
    model_list = tmp_path / "models.toml"
    model_list.write_text(text)
    target = tmp_path / "target"
    result = run_cli("download", "--model-list", str(model_list), "--local-dir", str(target))
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert not target.exists()


def test_missing_model_list_names_the_fix(tmp_path):
    result = run_cli("list", "--model-list", str(tmp_path / "nope.toml"), "--local-dir", str(tmp_path))
    assert result.returncode == 2
    assert "no such model list; pass --model-list FILE" in result.stderr


def test_hf_home_inside_the_target_is_refused(tmp_path):
    target = tmp_path / "models"
    result = run_cli(
        "download",
        "--local-dir",
        str(target),
        env={"PATH": "/usr/bin:/bin", "HF_HOME": str(target / "hf"), "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 2
    assert "HF_HOME" in result.stderr and "keep the downloader's cache out of the target" in result.stderr
    assert not target.exists()


def test_local_dir_that_is_a_file_is_refused(tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    result = run_cli("list", "--local-dir", str(not_a_dir))
    assert result.returncode == 2
    assert "is not a directory" in result.stderr


def test_summary_path_that_is_a_directory_is_refused_before_running(tmp_path):
    result = run_cli("clear", "--local-dir", str(tmp_path), "--yes", "--summary-json", tmp_path)
    assert result.returncode == 2
    assert f"--summary-json {tmp_path} is a directory; name a file" in result.stderr


@pytest.mark.parametrize("value", ["nan", "-1", "inf", "soon"])
def test_lock_wait_must_be_a_finite_number_of_seconds(tmp_path, value):
    result = run_cli("download", "--local-dir", str(tmp_path), "--lock-wait", value)
    assert result.returncode == 2
    assert f"--lock-wait: {value!r} is not a number of seconds (0 or more)" in result.stderr


@pytest.mark.parametrize("args", [("download", "--bogus"), ("frobnicate",), ()])
def test_usage_errors_are_one_line_naming_the_help(args):
    result = run_cli(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ") and line.endswith("--help`")
