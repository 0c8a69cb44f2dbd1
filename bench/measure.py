"""Timed processes and interleaved pairs: the only place the benchmark looks at a clock.

Every command runs as its own process with its output in files, and is reaped with `wait4`, which
gives that one child's peak resident memory. Its CPU is the growth of `RUSAGE_CHILDREN` across the
run: user + system seconds of the whole process tree (the child and every process it waited for).
A pair is one run of the cache (A) and one of the reference (B) back to back; ratios are taken
within a pair, so drift over a run cancels out.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path


class BenchError(Exception):
    """A measured command failed: the numbers would mean nothing."""


@dataclass(frozen=True)
class Timed:
    seconds: float
    cpu: float  # user + system seconds of the process and its descendants
    max_rss: int  # bytes
    user: float = 0.0  # of `cpu`, the user seconds: steadier than the kernel's share, which page-cache reclaim swings


@dataclass
class Deadline:
    """The time for all the measured rounds; a loop of rounds stops early (after one round) when it passes."""

    seconds: float
    started: float = field(default_factory=time.monotonic)

    @property
    def passed(self) -> bool:
        return time.monotonic() - self.started > self.seconds

    def rounds(self, count: int) -> Iterator[int]:
        for index in range(count):
            if index > 0 and self.passed:
                return
            yield index


@dataclass
class Runner:
    """Runs commands with one environment and working directory; logs land in `logs/`."""

    env: Mapping[str, str]
    cwd: Path
    logs: Path
    timeout: float
    _runs: int = 0

    def __call__(self, argv: Sequence[str], *, label: str) -> Timed:
        """Run `argv` to completion; raise BenchError (with the end of its stderr) unless it exits 0."""
        self._runs += 1
        self.logs.mkdir(parents=True, exist_ok=True)
        stem = self.logs / f"{self._runs:04d}-{label}"
        out_path, err_path = stem.with_suffix(".out"), stem.with_suffix(".err")
        with out_path.open("wb") as out, err_path.open("wb") as err:
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            process = subprocess.Popen(
                list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=dict(self.env), cwd=self.cwd
            )
            killer = threading.Timer(self.timeout, process.kill)
            killer.start()
            try:
                _, status, usage = os.wait4(process.pid, 0)
            finally:
                killer.cancel()
            seconds = time.perf_counter() - started
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
        process.returncode = code = os.waitstatus_to_exitcode(status)
        if code != 0:
            tail = err_path.read_text(errors="replace")[-2000:].strip()
            raise BenchError(f"{label}: {' '.join(argv[:4])} … exited {code} after {seconds:.1f}s: {tail}")
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        return Timed(seconds, cpu, usage.ru_maxrss * 1024, after.ru_utime - before.ru_utime)

    def output(self, label: str) -> str:
        """Stdout of the most recent run with this label."""
        matches = sorted(self.logs.glob(f"*-{label}.out"))
        return matches[-1].read_text() if matches else ""


@dataclass(frozen=True)
class Spread:
    median: float
    low: float
    high: float

    @staticmethod
    def of(values: Sequence[float]) -> Spread:
        return Spread(statistics.median(values), min(values), max(values))


@dataclass(frozen=True)
class Pairs:
    """Seconds of A and B, one entry per pair, in the order they ran."""

    a: tuple[float, ...]
    b: tuple[float, ...]

    @property
    def speed(self) -> Spread:
        """How much faster A is than B (B's time / A's time), per pair: 0.8 means A ran at 80% of B's pace."""
        return Spread.of([b / a for a, b in zip(self.a, self.b, strict=True)])


def run_rounds(
    deadline: Deadline, count: int, *runs: Callable[[], float], warmup: int = 1
) -> tuple[tuple[float, ...], ...]:
    """Each run in turn, round after round (A, B, A, B, …): `count` rounds, fewer if the deadline passes.

    The first `warmup` rounds are run and dropped: the first write of a gigabyte into fresh files, or
    the first import after the repo changed, is not what a measurement is about.
    """
    for _ in range(warmup):
        for run in runs:
            run()
    series: list[list[float]] = [[] for _ in runs]
    for _ in deadline.rounds(count):
        for values, run in zip(series, runs, strict=True):
            values.append(run())
    return tuple(tuple(values) for values in series)
