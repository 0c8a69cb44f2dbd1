"""The summary of a run: one row per model, rendered as JSON and Markdown by pure functions.

JSON contract (CI and other tools read it):

```json
{"operation": "download", "target": "/vol/models",
 "models": [{"repo_id": "...", "path": "/vol/models/<name>", "status": "downloaded",
             "commit": "<40 hex>", "files": 12, "bytes": 2400000000, "seconds": 41.2, "error": null}],
 "orphans": [{"name": "old-model", "path": "/vol/models/old-model", "files": 3, "bytes": 1024}],
 "total_bytes": 2400000000}
```
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# What each operation may say of a model, and which of those fail the run.
STATUSES = {
    "download": ("downloaded", "up-to-date", "repaired", "failed", "planned"),
    "list": ("complete", "incomplete", "missing", "stale"),
    "verify": ("ok", "damaged"),
    "clear": ("removed", "would-remove"),
}
FAILING_STATUSES = frozenset({"failed", "damaged"})
_ICONS = {
    "downloaded": "✅",
    "up-to-date": "✅",
    "repaired": "🛠️",
    "complete": "✅",
    "ok": "✅",
    "removed": "🗑️",
    "failed": "❌",
    "damaged": "❌",
    "incomplete": "⚠️",
    "stale": "⚠️",
}


@dataclass(frozen=True)
class ModelRow:
    repo_id: str
    path: str
    status: str
    commit: str | None = None
    files: int = 0
    bytes: int = 0
    seconds: float = 0.0
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.status in FAILING_STATUSES or self.error is not None


@dataclass(frozen=True)
class OrphanRow:
    """A directory on the target that no entry of the model list owns."""

    name: str
    path: str
    files: int
    bytes: int


@dataclass(frozen=True)
class Summary:
    operation: str
    target: str
    models: tuple[ModelRow, ...]
    orphans: tuple[OrphanRow, ...] = field(default=())

    def __post_init__(self) -> None:
        allowed = STATUSES[self.operation]
        unknown = sorted({row.status for row in self.models} - set(allowed))
        if unknown:
            raise ValueError(f"{self.operation} rows may say {', '.join(allowed)}, not {', '.join(unknown)}")

    @property
    def total_bytes(self) -> int:
        return sum(row.bytes for row in self.models)

    @property
    def exit_code(self) -> int:
        return 1 if any(row.failed for row in self.models) else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "operation": self.operation,
            "target": self.target,
            "models": [{**asdict(row), "seconds": round(row.seconds, 3)} for row in self.models],
            "orphans": [asdict(o) for o in self.orphans],
            "total_bytes": self.total_bytes,
        }


def render_json(summary: Summary) -> str:
    return json.dumps(summary.to_dict(), indent=2) + "\n"


def render_markdown(summary: Summary) -> str:
    lines = [
        f"### Model cache: {summary.operation} on `{summary.target}`",
        "",
        "| Model | Status | Commit | Files | Size | Time |",
        "| --- | --- | --- | ---: | ---: | ---: |",
    ]
    for row in summary.models:
        icon = _ICONS.get(row.status, "•")
        commit = f"`{row.commit[:7]}`" if row.commit else "–"
        seconds = f"{row.seconds:.1f} s" if row.seconds else "–"
        lines.append(
            f"| `{row.repo_id}` | {icon} {row.status} | {commit} | {row.files} | {human_bytes(row.bytes)} | {seconds} |"
        )
    noun = "model" if len(summary.models) == 1 else "models"
    lines += ["", f"**Total:** {human_bytes(summary.total_bytes)} in {len(summary.models)} {noun}."]
    failures = [row for row in summary.models if row.error]
    if failures:
        lines += ["", "**Problems:**", ""]
        lines += [f"- `{row.repo_id}`: {_one_line(row.error or '')}" for row in failures]
    if summary.orphans:
        lines += ["", "**Not in the model list** (remove with `clear --yes`):", ""]
        lines += [f"- `{o.name}/`: {o.files} files, {human_bytes(o.bytes)}" for o in summary.orphans]
    return "\n".join(lines) + "\n"


def render_text(summary: Summary) -> str:
    """The terminal's view: one aligned line per model."""
    width = max((len(row.repo_id) for row in summary.models), default=0)
    lines = []
    for row in summary.models:
        commit = row.commit[:7] if row.commit else "-"
        size = human_bytes(row.bytes)
        line = f"{row.repo_id:<{width}}  {row.status:<12} {commit:<7}  {row.files:>6} files  {size:>10}"
        if row.error:
            line += f"  {_one_line(row.error)}"
        lines.append(line)
    lines.extend(
        f"{o.name + '/':<{width}}  {'orphan':<12} {'-':<7}  {o.files:>6} files  {human_bytes(o.bytes):>10}"
        for o in summary.orphans
    )
    lines.append(f"total: {human_bytes(summary.total_bytes)}")
    return "\n".join(lines) + "\n"


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


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


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _one_line(text: str) -> str:
    return " ".join(text.split())
