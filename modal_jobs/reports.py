"""Where a summary goes when the run ends: the files asked for, GitHub's job summary and annotations."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from modal_jobs.summary import Summary, render_json, render_markdown


def github_annotations(summary: Summary) -> list[str]:
    """Workflow commands for what needs a look on GitHub: models the list no longer owns."""
    lines = []
    dropped = [o.name for o in summary.orphans if o.repo_id]
    unknown = [o.name for o in summary.orphans if not o.repo_id]
    if dropped:
        lines.append(
            f"::warning title=Models dropped from the list::{', '.join(dropped)} on {summary.target}: "
            "run download with prune to remove them"
        )
    if unknown:
        lines.append(
            f"::warning title=Directories the cache did not write::{', '.join(unknown)} on {summary.target}: "
            "never pruned; remove them by hand or with clear"
        )
    return lines


def write_summaries(summary: Summary, json_path: Path | None, markdown_path: Path | None) -> None:
    """Write the requested files, and append the Markdown to the GitHub job summary when there is one."""
    if json_path is not None:
        _write(json_path, render_json(summary))
    markdown = render_markdown(summary)
    if markdown_path is not None:
        _write(markdown_path, markdown)
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        with Path(step_summary).open("a", encoding="utf-8") as f:
            f.write(markdown)
    if os.environ.get("GITHUB_ACTIONS") == "true":
        # The runner reads workflow commands on stderr too; stdout stays the summary (JSON with --json).
        for line in github_annotations(summary):
            print(line, file=sys.stderr)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
