"""The summary: its JSON contract and its Markdown table, rendered from rows by pure functions."""

from __future__ import annotations

import json
import re

import pytest

from modal_jobs.summary import (
    ModelRow,
    Operation,
    OrphanRow,
    Status,
    Summary,
    human_bytes,
    render_json,
    render_markdown,
    render_text,
)

COMMIT = "3f2a9c1" + "0" * 33


def sample() -> Summary:
    return Summary(
        Operation.DOWNLOAD,
        "/vol/models",
        (
            ModelRow("Qwen/A", "/vol/models/A", Status.DOWNLOADED, COMMIT, 12, 5 * 1024**3 // 2, 41.25),
            ModelRow(
                "Qwen/B", "/vol/models/B", Status.FAILED, None, 0, 0, 0.5, "access denied (HTTP 401):\n set HF_TOKEN"
            ),
        ),
        (OrphanRow("old", "/vol/models/old", 3, 2048),),
    )


def test_json_has_the_documented_keys_and_totals():
    data = json.loads(render_json(sample()))
    assert list(data) == [
        "operation",
        "target",
        "models",
        "orphans",
        "total_bytes",
        "fetch_bytes",
        "freed_bytes",
        "note",
    ]
    assert list(data["models"][0]) == [
        "repo_id",
        "path",
        "status",
        "commit",
        "files",
        "bytes",
        "seconds",
        "error",
        "fetch_bytes",
        "note",
    ]
    assert data["total_bytes"] == 5 * 1024**3 // 2
    assert data["orphans"] == [{"name": "old", "path": "/vol/models/old", "files": 3, "bytes": 2048, "repo_id": None}]


def test_markdown_is_a_table_with_human_sizes_short_commits_and_reasons():
    markdown = render_markdown(sample())
    assert "| `Qwen/A` | ✅ downloaded | `3f2a9c1` | 12 | 2.5 GiB | 41.2 s |" in markdown
    assert "| `Qwen/B` | ❌ failed | – | 0 | 0 B | 0.5 s |" in markdown
    assert "**Total:** 2.5 GiB in 2 models." in markdown
    assert "- `Qwen/B`: `access denied (HTTP 401): set HF_TOKEN" in markdown
    assert "- `old/`: 3 files, 2.0 KiB" in markdown


def test_models_that_leave_are_counted_as_freed_not_in_the_total():
    plan = Summary(
        Operation.PLAN,
        "(no target)",
        (
            ModelRow("Qwen/A", "(no target)/A", Status.ADDED, COMMIT, 2, 3 * 1024**2, fetch_bytes=3 * 1024**2),
            ModelRow("Qwen/B", "(no target)/B", Status.DROPPED, COMMIT, 5, 2 * 1024**3),
        ),
    )
    assert (plan.total_bytes, plan.freed_bytes) == (3 * 1024**2, 2 * 1024**3)
    assert json.loads(render_json(plan))["freed_bytes"] == 2 * 1024**3
    markdown = render_markdown(plan)
    assert "| `Qwen/B` | ➖ removed-from-list | `3f2a9c1` | 5 | 2.0 GiB | – |" in markdown
    assert "**Frees:** 2.0 GiB in 1 model." in markdown
    assert render_text(plan).splitlines()[-1] == "total: 3.0 MiB, transfer: 3.0 MiB, frees: 2.0 GiB"

    pruned = Summary(Operation.DOWNLOAD, "/x", (ModelRow("Qwen/B", "/x/B", Status.PRUNED, COMMIT, 5, 1024),))
    assert "**Freed:** 1.0 KiB in 1 model." in render_markdown(pruned)
    assert render_text(pruned).splitlines()[-1] == "total: 0 B, freed: 1.0 KiB"


def test_exit_code_follows_the_rows():
    assert sample().exit_code == 1
    ok = Summary(Operation.VERIFY, "/x", (ModelRow("Qwen/A", "/x/A", Status.OK),))
    assert ok.exit_code == 0


def test_human_bytes():
    assert [human_bytes(n) for n in (0, 1023, 1024, 5 * 1024**2, 3 * 1024**4)] == [
        "0 B",
        "1023 B",
        "1.0 KiB",
        "5.0 MiB",
        "3072.0 GiB",
    ]


def test_each_operation_has_its_own_statuses():
    with pytest.raises(
        ValueError, match="verify rows may say damaged, failed, incomplete, missing, ok, stale, not downloaded"
    ):
        Summary(Operation.VERIFY, "/x", (ModelRow("Qwen/A", "/x/A", Status.DOWNLOADED),))


def outside_code_spans(markdown: str) -> str:
    """What a CommonMark reader renders as markup: the text with every code span taken out (equal backtick runs)."""
    return re.sub(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", "", markdown)


HOSTILE = "config`.json @someone ](http://x) ``x`` [click](http://evil.example) **bold** | cell"


def test_what_the_cache_did_not_write_is_quoted_so_it_mentions_no_one_and_links_nowhere():
    summary = Summary(
        Operation.PLAN,
        "(no target)",
        (
            ModelRow("Qwen/A", "(no target)/A", Status.FAILED, error=f"{HOSTILE}: not found (HTTP 404)"),
            ModelRow("Qwen/B", "(no target)/B", Status.CHANGED, COMMIT, 1, 10, note=f"1 file(s) changed: {HOSTILE}"),
            ModelRow("evil/`x` @a|b", "(no target)/x", Status.DROPPED, COMMIT, 1, 10),
        ),
        (OrphanRow(f"{HOSTILE}\nnext line", "/vol/models/x", 1, 10, f"@{HOSTILE}"),),
        note=HOSTILE,
    )
    markdown = render_markdown(summary)

    rendered = outside_code_spans(markdown)
    for markup in ("@someone", "@a", "](http", "[click]", "**bold**", "config"):
        assert markup not in rendered, (markup, rendered)
    # Each quote holds the text itself, whole and on one line: a reader still sees what the Hub said.
    assert f"- `Qwen/A`: ```{HOSTILE}: not found (HTTP 404)```" in markdown
    assert "| ``evil/`x` @a\\|b`` | ➖ removed-from-list |" in markdown
    assert "\nnext line" not in markdown and f"```{HOSTILE} next line/```" in markdown
