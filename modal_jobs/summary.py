"""The summary of a run: one row per model, rendered as JSON and Markdown by pure functions.

JSON contract (CI and other tools read it):

```json
{"operation": "download", "target": "/vol/models",
 "models": [{"repo_id": "...", "path": "/vol/models/<name>", "status": "downloaded",
             "commit": "<40 hex>", "files": 12, "bytes": 2400000000, "seconds": 41.2, "error": null,
             "fetch_bytes": 2400000000, "note": null}],
 "orphans": [{"name": "old-model", "path": "/vol/models/old-model", "files": 3, "bytes": 1024,
              "repo_id": "Qwen/old-model"}],
 "total_bytes": 2400000000, "fetch_bytes": 2400000000, "freed_bytes": 0, "note": null}
```

`bytes` is the model's size; `fetch_bytes` what was (or, in a plan, would be) transferred;
`freed_bytes` the size of the models that leave the target (pruned, or removed from the list). An
orphan with a `repo_id` is a model of ours the list dropped (`download --prune` removes it); one
without is a directory the cache did not write, which it never removes on its own.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    """What a row says of a model. A plan's rows say the action (`fetch`, `repair`, `prune`)."""

    DOWNLOADED = "downloaded"
    REPAIRED = "repaired"
    UP_TO_DATE = "up-to-date"
    PRUNED = "pruned"
    FAILED = "failed"
    FETCH = "fetch"
    REPAIR = "repair"
    PRUNE = "prune"
    COMPLETE = "complete"
    INCOMPLETE = "incomplete"
    MISSING = "missing"
    STALE = "stale"
    OK = "ok"
    DAMAGED = "damaged"
    REMOVED = "removed"
    WOULD_REMOVE = "would-remove"
    ADDED = "added"
    CHANGED = "changed"
    UNCHANGED = "unchanged"
    DROPPED = "removed-from-list"
    NOT_CHECKED = "not-checked"


class Operation(StrEnum):
    DOWNLOAD = "download"
    LIST = "list"
    VERIFY = "verify"
    CLEAR = "clear"
    PLAN = "plan"
    LOCK = "lock"


# What each operation may say of a model, and which of those fail the run.
STATUSES: dict[Operation, frozenset[Status]] = {
    Operation.DOWNLOAD: frozenset(
        {
            Status.DOWNLOADED,
            Status.REPAIRED,
            Status.UP_TO_DATE,
            Status.PRUNED,
            Status.FAILED,
            Status.FETCH,
            Status.REPAIR,
            Status.PRUNE,
        }
    ),
    Operation.LIST: frozenset({Status.COMPLETE, Status.INCOMPLETE, Status.MISSING, Status.STALE, Status.FAILED}),
    # The weekly check's verdict: every status but `ok` fails it (the rows say why); `failed`: a container lost,
    # or a file where the model's directory should be.
    Operation.VERIFY: frozenset(
        {Status.OK, Status.MISSING, Status.INCOMPLETE, Status.STALE, Status.DAMAGED, Status.FAILED}
    ),
    Operation.CLEAR: frozenset({Status.REMOVED, Status.WOULD_REMOVE}),
    Operation.LOCK: frozenset({Status.ADDED, Status.CHANGED, Status.UNCHANGED, Status.DROPPED, Status.FAILED}),
    Operation.PLAN: frozenset(
        {Status.ADDED, Status.CHANGED, Status.UNCHANGED, Status.DROPPED, Status.NOT_CHECKED, Status.FAILED}
    ),
}
FAILING_STATUSES = frozenset({Status.FAILED, Status.DAMAGED})
# Rows of models that leave (or left) the target: their sizes are shown but not added to the total.
GONE_STATUSES = frozenset({Status.PRUNED, Status.PRUNE, Status.DROPPED})
_ICONS = {
    Status.DOWNLOADED: "✅",
    Status.UP_TO_DATE: "✅",
    Status.REPAIRED: "🛠️",
    Status.COMPLETE: "✅",
    Status.OK: "✅",
    Status.REMOVED: "🗑️",
    Status.PRUNED: "🗑️",
    Status.FAILED: "❌",
    Status.DAMAGED: "❌",
    Status.INCOMPLETE: "⚠️",
    Status.STALE: "⚠️",
    Status.FETCH: "⬇️",
    Status.REPAIR: "🛠️",
    Status.PRUNE: "🗑️",
    Status.ADDED: "➕",
    Status.CHANGED: "✏️",
    Status.DROPPED: "➖",
    Status.NOT_CHECKED: "⚠️",
}


@dataclass(frozen=True)
class ModelRow:
    repo_id: str
    path: str
    status: Status
    commit: str | None = None
    files: int = 0
    bytes: int = 0
    seconds: float = 0.0
    error: str | None = None
    fetch_bytes: int = 0
    note: str | None = None

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
    repo_id: str | None = None  # set when the directory holds our manifest for a model the list dropped


@dataclass(frozen=True)
class Summary:
    operation: Operation
    target: str
    models: tuple[ModelRow, ...]
    orphans: tuple[OrphanRow, ...] = field(default=())
    note: str | None = None  # a run-wide remark, such as why --prune did nothing

    def __post_init__(self) -> None:
        allowed = STATUSES[Operation(self.operation)]
        unknown = sorted({str(row.status) for row in self.models} - set(allowed))
        if unknown:
            raise ValueError(f"{self.operation} rows may say {', '.join(sorted(allowed))}, not {', '.join(unknown)}")

    @property
    def total_bytes(self) -> int:
        """The rows' bytes, without models a prune removes (or removed) or the list dropped."""
        return sum(row.bytes for row in self.models if row.status not in GONE_STATUSES)

    @property
    def fetch_bytes(self) -> int:
        return sum(row.fetch_bytes for row in self.models)

    @property
    def freed_bytes(self) -> int:
        """The rows' bytes of models that leave (or left) the target: pruned, or removed from the list."""
        return sum(row.bytes for row in self.models if row.status in GONE_STATUSES)

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
            "fetch_bytes": self.fetch_bytes,
            "freed_bytes": self.freed_bytes,
            "note": self.note,
        }


def render_json(summary: Summary) -> str:
    return json.dumps(summary.to_dict(), indent=2) + "\n"


def render_markdown(summary: Summary) -> str:
    """The Markdown of a job summary, pull request or issue: what the cache did not write is quoted as `code`."""
    lines = [
        f"### Model cache: {summary.operation} on {code(summary.target)}",
        "",
        "| Model | Status | Commit | Files | Size | Time |",
        "| --- | --- | --- | ---: | ---: | ---: |",
    ]
    for row in summary.models:
        icon = "❌" if row.failed else _ICONS.get(row.status, "•")  # a row that fails the run says so
        commit = f"`{row.commit[:7]}`" if row.commit else "–"
        seconds = f"{row.seconds:.1f} s" if row.seconds else "–"
        lines.append(
            f"| {cell(row.repo_id)} | {icon} {row.status} | {commit} | {row.files} "
            f"| {human_bytes(row.bytes)} | {seconds} |"
        )
    count = len(summary.models)
    lines += ["", f"**Total:** {human_bytes(summary.total_bytes)} in {count} {_models(count)}."]
    if summary.fetch_bytes:
        verb = "Transfers" if summary.operation is Operation.DOWNLOAD else "At most"
        lines.append(f"**{verb}:** {human_bytes(summary.fetch_bytes)}.")
    if summary.freed_bytes:
        gone = sum(row.status in GONE_STATUSES for row in summary.models)
        lines.append(
            f"**{_freed(summary).capitalize()}:** {human_bytes(summary.freed_bytes)} in {gone} {_models(gone)}."
        )
    notes = [row for row in summary.models if row.note and not row.error]
    if notes:
        lines += ["", "**Details:**", ""]
        lines += [f"- {code(row.repo_id)}: {code(row.note or '')}" for row in notes]
    failures = [row for row in summary.models if row.error]
    if failures:
        lines += ["", "**Problems:**", ""]
        lines += [f"- {code(row.repo_id)}: {code(row.error or '')}" for row in failures]
    dropped = [o for o in summary.orphans if o.repo_id]
    unknown = [o for o in summary.orphans if not o.repo_id]
    if dropped:
        lines += ["", "**Dropped from the model list** (`download --prune` removes them):", ""]
        lines += [
            f"- {code(o.name + '/')} ({code(o.repo_id or '')}): {o.files} files, {human_bytes(o.bytes)}"
            for o in dropped
        ]
    if unknown:
        lines += ["", "**Not written by the cache** (never pruned; remove by hand or with `clear`):", ""]
        lines += [f"- {code(o.name + '/')}: {o.files} files, {human_bytes(o.bytes)}" for o in unknown]
    if summary.note:
        lines += ["", f"**Note:** {code(summary.note)}"]
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
        elif row.note and summary.operation is Operation.LIST:  # the revisions a model keeps, and their sizes
            line += f"  {_one_line(row.note)}"
        lines.append(line)
    lines.extend(
        f"{o.name + '/':<{width}}  {'dropped' if o.repo_id else 'orphan':<12} {'-':<7}  {o.files:>6} files  "
        f"{human_bytes(o.bytes):>10}"
        for o in summary.orphans
    )
    total = f"total: {human_bytes(summary.total_bytes)}"
    if summary.fetch_bytes:
        total += f", transfer: {human_bytes(summary.fetch_bytes)}"
    if summary.freed_bytes:
        total += f", {_freed(summary)}: {human_bytes(summary.freed_bytes)}"
    lines.append(total)
    if summary.note:
        lines.append(f"note: {_one_line(summary.note)}")
    return "\n".join(lines) + "\n"


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _freed(summary: Summary) -> str:
    """`freed` once a prune removed models, `frees` while it is only planned."""
    return "freed" if any(row.status is Status.PRUNED for row in summary.models) else "frees"


def _models(count: int) -> str:
    return "model" if count == 1 else "models"


def code(text: str) -> str:
    """`text` on one line as one Markdown code span, whatever it holds: nothing in it renders as markup.

    The span's fence is one backtick longer than the longest run of backticks inside, so none of them
    closes it (CommonMark), and a space pads a text that starts or ends with a backtick.
    """
    flat = _one_line(text)
    fence = "`" * (1 + max((len(run) for run in re.findall(r"`+", flat)), default=0))
    pad = " " if flat.startswith("`") or flat.endswith("`") else ""
    return f"{fence}{pad}{flat}{pad}{fence}"


def cell(text: str) -> str:
    """A code span in a table cell: GitHub splits cells at `|` even inside one, unless it is escaped."""
    return code(text).replace("|", "\\|")


def _one_line(text: str) -> str:
    return " ".join(text.split())
