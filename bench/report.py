"""The benchmark's results, rendered as Markdown and JSON by pure functions.

JSON (`bench/results.json`):

```json
{"format": 1, "machine": {"cores": 2, "python": "3.11.7", "huggingface_hub": "2.4.0", ...},
 "settings": {"scale": 1.0, "pairs": 5, ...},
 "measurements": [{"name": "cold download", "a": "modal_jobs download", "b": "curl",
                   "bytes": 1530000000, "a_seconds": [...], "b_seconds": [...],
                   "speed": {"median": 0.31, "low": 0.29, "high": 0.33},
                   "target": "A >= 0.8x B", "met": false, "facts": {"peak_rss_mb": 92.0}}]}
```

`speed` is B's time over A's, pair by pair: above 1, the cache is faster than the reference.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.measure import Pairs, Spread

Fact = float | int | str


@dataclass(frozen=True)
class Measurement:
    name: str
    a: str  # the cache's command
    b: str  # the reference it is compared with
    pairs: Pairs
    bytes: int | None  # what each side transfers or hashes, for a rate; None when it is not about bytes
    target: str
    met: bool | None  # None: no target
    facts: Mapping[str, Fact] = field(default_factory=dict)


@dataclass(frozen=True)
class MemoryRow:
    """Peak resident memory of cold downloads of one workload."""

    workload: str
    files: int
    largest_file: int
    peak_rss: tuple[int, ...]  # bytes, one per run
    limit: int  # bytes


@dataclass(frozen=True)
class Report:
    machine: Mapping[str, Fact]
    settings: Mapping[str, Fact]
    measurements: tuple[Measurement, ...]
    memory: tuple[MemoryRow, ...] = ()
    errors: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


def to_json(report: Report) -> str:
    return json.dumps(
        {
            "format": 1,
            "machine": dict(report.machine),
            "settings": dict(report.settings),
            "measurements": [
                {
                    "name": m.name,
                    "a": m.a,
                    "b": m.b,
                    "bytes": m.bytes,
                    "a_seconds": [round(s, 4) for s in m.pairs.a],
                    "b_seconds": [round(s, 4) for s in m.pairs.b],
                    "speed": {k: round(v, 3) for k, v in asdict(m.pairs.speed).items()} if m.pairs.a else None,
                    "target": m.target,
                    "met": m.met,
                    "facts": dict(m.facts),
                }
                for m in report.measurements
            ],
            "memory": [
                {
                    "workload": row.workload,
                    "files": row.files,
                    "largest_file": row.largest_file,
                    "peak_rss": list(row.peak_rss),
                    "limit": row.limit,
                    "met": max(row.peak_rss) < row.limit,
                }
                for row in report.memory
                if row.peak_rss
            ],
            "errors": list(report.errors),
            "notes": list(report.notes),
        },
        indent=1,
    )


def render_markdown(report: Report) -> str:
    lines = [
        "## Benchmark",
        "",
        _machine_line(report.machine),
        "",
        "| measurement | A (the cache) | B (reference) | A median | B median | speed A/B, median [min–max]"
        " | target | met |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for m in report.measurements:
        if not m.pairs.a:
            continue
        a = _time_and_rate(Spread.of(m.pairs.a).median, m.bytes)
        b = _time_and_rate(Spread.of(m.pairs.b).median, m.bytes)
        lines.append(
            f"| {m.name} | `{m.a}` | `{m.b}` | {a} | {b} | {_spread(m.pairs.speed)} ({len(m.pairs.a)} pairs)"
            f" | {m.target} | {_met(m.met)} |"
        )
    memory = [row for row in report.memory if row.peak_rss]
    if memory:
        lines += [
            "",
            "| peak memory of a cold download | files | largest file | peak RSS, median [min–max] | target | met |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for row in memory:
            rss = Spread.of([r / 1e6 for r in row.peak_rss])
            lines.append(
                f"| {row.workload} | {row.files} | {row.largest_file / 1e6:.0f} MB"
                f" | {rss.median:.0f} MB [{rss.low:.0f}–{rss.high:.0f}] | < {row.limit / 1e6:.0f} MB"
                f" | {_met(max(row.peak_rss) < row.limit)} |"
            )
    facts = [(m.name, key, value) for m in report.measurements for key, value in m.facts.items()]
    if facts:
        lines += ["", "| measurement | fact | value |", "| --- | --- | --- |"]
        lines += [f"| {name} | {key} | {_fact(value)} |" for name, key, value in facts]
    if report.errors:
        lines += ["", "Failed:", "", *(f"- {error}" for error in report.errors)]
    lines += ["", *(f"- {note}" for note in report.notes)]
    settings = ", ".join(f"{k}={v}" for k, v in report.settings.items())
    lines += ["", f"Settings: {settings}.", ""]
    return "\n".join(lines)


def write_json(report: Report, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_json(report) + "\n")


def human_rate(bytes_per_second: float) -> str:
    for unit, size in (("GB/s", 1e9), ("MB/s", 1e6), ("kB/s", 1e3)):
        if bytes_per_second >= size:
            return f"{bytes_per_second / size:.2f} {unit}"
    return f"{bytes_per_second:.0f} B/s"


def _time_and_rate(seconds: float, size: int | None) -> str:
    shown = f"{seconds:.3f} s" if seconds < 10 else f"{seconds:.1f} s"
    return shown if size is None else f"{shown}, {human_rate(size / seconds)}"


def _spread(spread: Spread) -> str:
    return f"{spread.median:.2f}× [{spread.low:.2f}–{spread.high:.2f}]"


def _met(met: bool | None) -> str:
    return "—" if met is None else ("yes" if met else "**no**")


def _fact(value: Fact) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _machine_line(machine: Mapping[str, Fact]) -> str:
    def listing(keys: tuple[str, ...]) -> str:
        return "; ".join(f"{k} {machine[k]}" for k in keys if k in machine)

    system = listing(("cpu", "cores", "memory", "kernel", "python", "huggingface_hub", "httpx2", "openssl", "curl"))
    cache = listing(("modal_jobs", "commit", "download workers", "hash workers", "hf download chunk"))
    return f"Machine: {system}.\nCache: {cache}."
