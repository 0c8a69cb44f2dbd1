"""The steps on a complete target (no-op re-run, verify, list) and the peak-memory step."""

from __future__ import annotations

import os
import shutil
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

from bench.context import PEAK_MEMORY_LIMIT, Bench, fresh, loaded_path
from bench.measure import BenchError, Pairs
from bench.report import Measurement, MemoryRow
from bench.workload import memory_repo, publish, publish_complete_target


def no_op_rerun(bench: Bench) -> list[Measurement]:
    """Everything complete: the re-run should ask the Hub once per model and finish within a second."""
    target = _downloaded(bench)
    download = bench.cache("download", target, bench.workload.model_list)
    startup = [sys.executable, "-c", "import modal_jobs.cli"]
    cache, requests = counting_requests(bench, download, "download-noop")
    a, b = bench.rounds(cache, lambda: bench.run(startup, label="startup").seconds)
    models = len(bench.workload.repo_ids)
    per_model = max(requests) / models
    return [
        Measurement(
            f"no-op re-run ({models} models)",
            "modal_jobs download",
            "python -c 'import modal_jobs.cli'",
            Pairs(a, b),
            None,
            "< 1 s, ≤ 1 request/model",
            statistics.median(a) < 1.0 and per_model <= 1,
            {
                "requests per model": round(per_model, 2),
                "wall, median s": round(statistics.median(a), 3),
                "start-up (import), median s": round(statistics.median(b), 3),
                "wall less start-up, median s": round(statistics.median(x - y for x, y in zip(a, b, strict=True)), 3),
            },
        )
    ]


def verify(bench: Bench) -> list[Measurement]:
    """Re-hashing what is on the target against hashing the same bytes with one openssl process."""
    target = _downloaded(bench)
    paths = [str(loaded_path(target, f.dest)) for f in bench.workload.files]
    command = bench.cache("verify", target, bench.workload.model_list)
    openssl = ["openssl", "dgst", "-sha256", *paths]
    a, b = bench.rounds(
        lambda: bench.run(command, label="verify").seconds,
        lambda: bench.run(openssl, label="openssl-verify").seconds,
    )
    pairs = Pairs(a, b)
    return [
        Measurement(
            "verify",
            "modal_jobs verify",
            "openssl dgst -sha256",
            pairs,
            bench.workload.total_bytes,
            f"≥ 1.6× on {os.cpu_count()} cores",
            pairs.speed.median >= 1.6,
            {"files": len(paths)},
        )
    ]


def list_many_files(bench: Bench) -> list[Measurement]:
    """`list` over a target with many small files and an up-to-date models.lock, against `find` stat-ing the same tree.

    With the lock, `list` needs no Hub: every run must make no request. One run without the lock (the
    Hub asked once per complete model) is noted beside it.
    """
    target, model_list = bench.work / "list-target", bench.work / "list.toml"
    repo_ids = [f"bench/many-files-{i}" for i in range(1, 4)]
    files = publish_complete_target(
        bench.hub, repo_ids, bench.settings.list_files // len(repo_ids), target, model_list, seed=7
    )
    command = bench.cache("list", target, model_list)
    unlocked = bench.run(command, label="list-unlocked").seconds
    bench.run([sys.executable, "-m", "modal_jobs", "lock", "--model-list", str(model_list)], label="lock")
    find = ["find", str(target), "-type", "f", "-printf", "%s\n"]
    cache, requests = counting_requests(bench, command, "list")
    a, b = bench.rounds(cache, lambda: bench.run(find, label="find").seconds)
    shutil.rmtree(target, ignore_errors=True)
    return [
        Measurement(
            f"list ({files} files, models.lock up to date)",
            "modal_jobs list",
            "find -type f -printf '%s'",
            Pairs(a, b),
            None,
            "< 0.3 s, no Hub request",
            statistics.median(a) < 0.3 and max(requests) == 0,
            {
                "files": files,
                "ms per 1000 files": round(1000 * statistics.median(a) / files * 1000, 1),
                "Hub requests, most in one run": max(requests),
                "without models.lock (one run), s": round(unlocked, 3),
            },
        )
    ]


def peak_memory(bench: Bench) -> list[Measurement]:
    """Cold downloads of the same number of files at two sizes: peak memory must not follow the file size."""
    count = bench.settings.memory_files
    rows = []
    for label, size in zip(("smaller", "larger"), bench.settings.memory_sizes, strict=True):
        repo = memory_repo(f"bench/memory-{label}", count, size)
        workload = publish(bench.hub, [repo], bench.work / "sources", bench.work / f"memory-{label}.toml", seed=99)
        target = bench.work / f"memory-{label}"
        peaks = []
        for _ in bench.deadline.rounds(min(2, bench.settings.pairs)):
            fresh(target)
            peaks.append(
                bench.run(bench.cache("download", target, workload.model_list), label=f"memory-{label}").max_rss
            )
        shutil.rmtree(target, ignore_errors=True)
        rows.append(
            MemoryRow(f"{count} files of {size / 1e6:.0f} MB", count + 1, size, tuple(peaks), PEAK_MEMORY_LIMIT)
        )
    bench.memory += tuple(rows)
    return []


def _downloaded(bench: Bench) -> Path:
    if bench.downloaded is None:
        raise BenchError("needs the target the cold download leaves, and the cold download did not run")
    return bench.downloaded


def counting_requests(bench: Bench, command: list[str], label: str) -> tuple[Callable[[], float], list[int]]:
    """A round of `command` that also notes how many requests the hub got, and the list it notes them in."""
    requests: list[int] = []

    def cache() -> float:
        bench.hub.reset_counts()
        seconds = bench.run(command, label=label).seconds
        requests.append(bench.hub.count())
        return seconds

    return cache, requests
