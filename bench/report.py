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
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.measure import Pairs, Spread, Timed

Fact = float | int | str
Runs = Sequence[Timed]


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
    cpu: Pairs | None = None  # CPU seconds (user + system, the process tree) of A and B, pair by pair


@dataclass(frozen=True)
class CpuRow:
    """CPU seconds (user + system, the whole process tree) of each side of one transfer path's cold downloads.

    Each tuple has one value per measured round. The overhead is what the cache spends beyond the
    library alone plus the hash of every byte: per pair, the cache's CPU less the library's, less
    the median CPU of `openssl dgst -sha256` over the same bytes.
    """

    path: str
    bytes: int
    cache: tuple[float, ...]
    library: tuple[float, ...]  # huggingface_hub alone, with the cache's settings
    hashing: tuple[float, ...]  # openssl dgst -sha256 over the same bytes
    curl: tuple[float, ...] = ()  # one curl, where it can take the path
    limit: float = 0.05  # the overhead's target, a share of the library's CPU
    user: CpuRow | None = None  # the same runs counted in user seconds only (no target of its own)

    def per_gb(self, seconds: float) -> float:
        return seconds / (self.bytes / 1e9)

    @property
    def overhead(self) -> float:
        """Seconds of CPU the cache spends beyond the library and the hash (median over pairs)."""
        beyond = [c - lib for c, lib in zip(self.cache, self.library, strict=True)]
        return statistics.median(beyond) - statistics.median(self.hashing)

    @property
    def overhead_share(self) -> float:
        return self.overhead / statistics.median(self.library)

    @classmethod
    def of_runs(cls, path: str, size: int, cache: Runs, library: Runs, hashing: Runs, curl: Runs = ()) -> CpuRow:
        """The row in user + system seconds, with the same runs in user seconds beside it."""

        def row(seconds: Callable[[Timed], float], user: CpuRow | None) -> CpuRow:
            def side(runs: Runs) -> tuple[float, ...]:
                return tuple(seconds(t) for t in runs)

            return cls(path, size, side(cache), side(library), side(hashing), side(curl), user=user)

        return row(lambda t: t.cpu, row(lambda t: t.user, None))


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
    cpu: tuple[CpuRow, ...] = ()
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
                    "cpu": {"a": list(m.cpu.a), "b": list(m.cpu.b)} if m.cpu else None,
                }
                for m in report.measurements
            ],
            "cpu": [_cpu_json(row) for row in report.cpu if row.cache and row.library and row.hashing],
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


def _cpu_json(row: CpuRow) -> dict[str, object]:
    """One path's CPU, its overhead and verdict; `user`: the same in user seconds, without a verdict."""
    sides = {k: v for k, v in asdict(row).items() if k not in ("limit", "user")}
    overhead = {"overhead": round(row.overhead, 3), "overhead_share": round(row.overhead_share, 4)}
    user = None if row.user is None else {**_cpu_json(row.user), "limit": None, "met": None}
    return {**sides, **overhead, "limit": row.limit, "met": row.overhead_share <= row.limit, "user": user}


def render_markdown(report: Report) -> str:
    lines = ["## Benchmark", "", _machine_line(report.machine), "", *_main_table(report.measurements)]
    lines += _cpu_table(report.cpu)
    lines += _memory_table(report.memory)
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


def _main_table(measurements: tuple[Measurement, ...]) -> list[str]:
    lines = [
        "| measurement | A (the cache) | B (reference) | A median | B median | speed A/B, median [min–max]"
        " | CPU s/GB, A / B | target | met |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for m in measurements:
        if not m.pairs.a:
            continue
        a = _time_and_rate(Spread.of(m.pairs.a).median, m.bytes)
        b = _time_and_rate(Spread.of(m.pairs.b).median, m.bytes)
        lines.append(
            f"| {m.name} | `{m.a}` | `{m.b}` | {a} | {b} | {_spread(m.pairs.speed)} ({len(m.pairs.a)} pairs)"
            f" | {_cpu_pair(m)} | {m.target} | {_met(m.met)} |"
        )
    return lines


def _cpu_table(rows: tuple[CpuRow, ...]) -> list[str]:
    """CPU per GB of each side of the cold downloads, and what the cache spends beyond the library and the hash."""
    rows = tuple(row for row in rows if row.cache and row.library and row.hashing)
    if not rows:
        return []
    lines = [
        "",
        "| CPU per GB of the process tree, median | the cache | huggingface_hub alone, the cache's"
        " settings | one curl | openssl dgst -sha256 | the cache beyond library + hash | target | met |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        met = row.overhead_share <= row.limit
        lines.append(_cpu_line(row, f"user + system, {len(row.cache)} rounds", f"≤ {row.limit:.0%} | {_met(met)}"))
        if row.user is not None:
            lines.append(_cpu_line(row.user, "user seconds only", "— | —"))
    return lines


def _cpu_line(row: CpuRow, what: str, verdict: str) -> str:
    cache, library, hashing = (row.per_gb(statistics.median(v)) for v in (row.cache, row.library, row.hashing))
    curl = f"{row.per_gb(statistics.median(row.curl)):.2f} s" if row.curl else "— (cannot take this path)"
    beyond = f"{row.per_gb(row.overhead):+.2f} s, {row.overhead_share:+.1%} of the library"
    return (
        f"| cold download, {row.path}, {what} | {cache:.2f} s | {library:.2f} s | {curl} | {hashing:.2f} s"
        f" | {beyond} | {verdict} |"
    )


def _memory_table(memory: tuple[MemoryRow, ...]) -> list[str]:
    rows = [row for row in memory if row.peak_rss]
    if not rows:
        return []
    lines = [
        "",
        "| peak memory of a cold download | files | largest file | peak RSS, median [min–max] | target | met |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        rss = Spread.of([r / 1e6 for r in row.peak_rss])
        lines.append(
            f"| {row.workload} | {row.files} | {row.largest_file / 1e6:.0f} MB"
            f" | {rss.median:.0f} MB [{rss.low:.0f}–{rss.high:.0f}] | < {row.limit / 1e6:.0f} MB"
            f" | {_met(max(row.peak_rss) < row.limit)} |"
        )
    return lines


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


def _cpu_pair(m: Measurement) -> str:
    if m.cpu is None or not m.cpu.a or not m.bytes:
        return "—"
    a, b = (statistics.median(v) / (m.bytes / 1e9) for v in (m.cpu.a, m.cpu.b))
    return f"{a:.2f} / {b:.2f}"


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
    cache = listing(("modal_jobs", "commit", "download workers", "hash workers", "hf download chunk", "socket read"))
    return f"Machine: {system}.\nCache: {cache}."
