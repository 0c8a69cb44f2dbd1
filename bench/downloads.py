"""The cold downloads, on plain HTTP and over Xet, each against references doing the same work in the same run."""

from __future__ import annotations

import shutil
import statistics
import sys
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path

from bench.context import PEAK_MEMORY_LIMIT, Bench, fresh, loaded_path
from bench.measure import BenchError, Pairs, Timed
from bench.report import CpuRow, Measurement, MemoryRow
from bench.workload import curl_config, expected_sha256
from local_hub.server import LocalHub

# Who used the CPU, in the rounds of a cold download.
CACHE, LIBRARY, DEFAULTS = "modal_jobs download", "huggingface_hub alone", "huggingface_hub alone, library defaults"
CURL, OPENSSL = "curl", "openssl dgst -sha256"


def cold_download(bench: Bench) -> list[Measurement]:
    """Plain HTTP: the cache fetching and verifying every file, against one curl process fetching the same
    files in turn (then openssl hashing them), and against huggingface_hub alone."""
    workload, run = bench.workload, bench.run
    target, fetched = bench.work / "target", bench.work / "curl"
    config = bench.work / "curl.cfg"
    config.write_text(curl_config(workload.files, fetched))
    download = bench.cache("download", target, workload.model_list)
    # One process, one connection reused for every URL, one file after another (no --parallel).
    curl = ["curl", "--silent", "--show-error", "--fail", "--noproxy", "*", "--create-dirs", "--config", str(config)]
    openssl = ["openssl", "dgst", "-sha256", *(str(fetched / f.dest) for f in workload.files)]
    peaks: list[int] = []
    cpu: dict[str, list[Timed]] = {CACHE: [], CURL: [], OPENSSL: [], LIBRARY: [], DEFAULTS: []}
    requests: dict[str, int] = {}

    def cache() -> float:
        return _cold_cache_run(bench, target, download, "download-cold", peaks, cpu, requests)

    def transfer() -> float:
        fresh(fetched)
        timed = run(curl, label="curl")
        cpu[CURL].append(timed)
        return timed.seconds

    def hash_fetched() -> float:
        timed = run(openssl, label="openssl-fetched")
        cpu[OPENSSL].append(timed)
        _check_digests(run.output("openssl-fetched"), expected_sha256(workload.files, fetched))
        return timed.seconds

    library = _bare_hub(bench, cpu[LIBRARY], "http", "cache")
    defaults = _bare_hub(bench, cpu[DEFAULTS], "http", "defaults")
    a, b, hashing, c, d = bench.rounds(cache, transfer, hash_fetched, library, defaults)
    shutil.rmtree(fetched, ignore_errors=True)
    _drop_warm_up(peaks, cpu, bench.settings.warmup)
    bench.downloaded = target
    ceiling = _server_ceiling(bench)
    return _plain_http_rows(bench, (a, b, hashing, c, d), peaks, cpu, requests, ceiling)


def _plain_http_rows(
    bench: Bench,
    rounds: tuple[tuple[float, ...], ...],
    peaks: list[int],
    cpu: dict[str, list[Timed]],
    requests: dict[str, int],
    ceiling: float,
) -> list[Measurement]:
    """The plain-HTTP rows: against the library (tuned and default), one curl, and curl then openssl."""
    workload = bench.workload
    a, b, hashing, c, d = rounds
    largest, size = max(f.size for f in workload.files), workload.total_bytes
    bench.memory += (
        MemoryRow("model_list-shaped repos, plain HTTP", len(workload.files), largest, tuple(peaks), PEAK_MEMORY_LIMIT),
    )
    bench.cpu += (CpuRow.of_runs("plain HTTP", size, cpu[CACHE], cpu[LIBRARY], cpu[OPENSSL], cpu[CURL]),)
    against_library, transfer_only = Pairs(a, c), Pairs(a, b)
    with_hashing = Pairs(a, tuple(t + h for t, h in zip(b, hashing, strict=True)))
    details = _plain_http_details(bench, requests, ceiling)
    row = partial(Measurement, "cold download, plain HTTP", "modal_jobs download")
    seconds = {who: _seconds(runs) for who, runs in cpu.items()}
    ours = seconds[CACHE]
    library_met, curl_met = against_library.speed.median >= 0.95, transfer_only.speed.median >= 0.6
    return [
        row(
            "huggingface_hub alone",
            against_library,
            size,
            "≥ 0.95×",
            library_met,
            details,
            Pairs(ours, seconds[LIBRARY]),
        ),
        row(
            "huggingface_hub alone, library defaults", Pairs(a, d), size, "—", None, cpu=Pairs(ours, seconds[DEFAULTS])
        ),
        row("one curl process", transfer_only, size, "≥ 0.6×", curl_met, cpu=Pairs(ours, seconds[CURL])),
        Measurement(
            "cold download, plain HTTP, verified",
            "modal_jobs download",
            "one curl; openssl dgst -sha256",
            with_hashing,
            size,
            "—",
            None,
            {"openssl over the fetched files, median s": round(statistics.median(hashing), 3)},
            Pairs(ours, tuple(t + h for t, h in zip(seconds[CURL], seconds[OPENSSL], strict=True))),
        ),
    ]


def _plain_http_details(bench: Bench, requests: Mapping[str, int], ceiling: float) -> dict[str, int | float]:
    """What the main plain-HTTP row carries besides its times and CPU: requests, and the hub's own ceiling."""
    files, models = len(bench.workload.files), len(bench.workload.repo_ids)
    metadata = requests.get("revision", 0) + requests.get("tree", 0)
    return {
        "files": files,
        "bytes": bench.workload.total_bytes,
        **{f"requests: {kind}": count for kind, count in requests.items()},
        "requests per file": round(sum(requests.values()) / files, 2),
        "requests per model (excluding files)": round(metadata / models, 2),
        "the hub alone (curl to /dev/null), MB/s": round(ceiling / 1e6),
    }


def cold_download_xet(bench: Bench) -> list[Measurement]:
    """Xet: the hub sends the LFS files through its CAS, as the real Hub does; the cache (verifying every
    byte) against huggingface_hub alone (hf_xet, nothing verified). curl cannot speak Xet."""
    workload = bench.workload
    target = bench.work / "target-xet"
    download = bench.cache("download", target, workload.model_list)
    peaks: list[int] = []
    cpu: dict[str, list[Timed]] = {CACHE: [], LIBRARY: [], DEFAULTS: []}
    requests: dict[str, int] = {}

    def cache() -> float:
        return _cold_cache_run(bench, target, download, "download-cold-xet", peaks, cpu, requests)

    library = _bare_hub(bench, cpu[LIBRARY], "xet", "cache")
    defaults = _bare_hub(bench, cpu[DEFAULTS], "xet", "defaults")
    bench.hub.enable_xet()
    try:
        a, b, c = bench.rounds(cache, library, defaults)
    finally:
        bench.hub.disable_xet()
    # The hash's own CPU over the bytes the last run left: the same bytes as the plain-HTTP path's.
    paths = [str(loaded_path(target, f.dest)) for f in workload.files]
    hashing = bench.run(["openssl", "dgst", "-sha256", *paths], label="openssl-xet")
    shutil.rmtree(target, ignore_errors=True)
    _drop_warm_up(peaks, cpu, bench.settings.warmup)
    cpu[OPENSSL] = [hashing]
    return _xet_rows(bench, (a, b, c), peaks, cpu, requests)


def _xet_rows(
    bench: Bench,
    rounds: tuple[tuple[float, ...], ...],
    peaks: list[int],
    cpu: dict[str, list[Timed]],
    requests: dict[str, int],
) -> list[Measurement]:
    """The Xet rows: against the library with the cache's settings, and with its defaults."""
    workload = bench.workload
    a, b, c = rounds
    largest = max(f.size for f in workload.files)
    bench.memory += (
        MemoryRow("model_list-shaped repos, Xet", len(workload.files), largest, tuple(peaks), PEAK_MEMORY_LIMIT),
    )
    pairs = Pairs(a, b)
    bench.cpu += (CpuRow.of_runs("Xet", workload.total_bytes, cpu[CACHE], cpu[LIBRARY], cpu[OPENSSL]),)
    ours = _seconds(cpu[CACHE])
    return [
        Measurement(
            "cold download, Xet",
            "modal_jobs download",
            "huggingface_hub alone",
            pairs,
            workload.total_bytes,
            "≥ 0.95×",
            pairs.speed.median >= 0.95,
            {f"requests: {kind}": count for kind, count in requests.items()},
            Pairs(ours, _seconds(cpu[LIBRARY])),
        ),
        Measurement(
            "cold download, Xet",
            "modal_jobs download",
            "huggingface_hub alone, library defaults",
            Pairs(a, c),
            workload.total_bytes,
            "—",
            None,
            cpu=Pairs(ours, _seconds(cpu[DEFAULTS])),
        ),
    ]


def _seconds(runs: list[Timed]) -> tuple[float, ...]:
    """CPU seconds (user + system) of each run."""
    return tuple(t.cpu for t in runs)


def _drop_warm_up(peaks: list[int], cpu: Mapping[str, list[Timed]], rounds: int) -> None:
    """The warm-up rounds fill the page cache and warm the interpreter: they are not measured."""
    del peaks[:rounds]
    for values in cpu.values():
        del values[:rounds]


def _bare_hub(bench: Bench, cpu: list[Timed], path: str, settings: str) -> Callable[[], float]:
    """One run of huggingface_hub alone over every repo, into a fresh directory, with the cache's worker count
    and either the cache's settings of the library or its defaults (`bench.bare_hub`)."""
    into = bench.work / f"bare-{path}-{settings}"
    command = [
        sys.executable,
        "-m",
        "bench.bare_hub",
        settings,
        str(into),
        str(bench.download_workers),
        *bench.workload.repo_ids,
    ]

    def library() -> float:
        fresh(into)
        timed = bench.run(command, label=f"bare-hub-{path}-{settings}")
        cpu.append(timed)
        return timed.seconds

    return library


def _server_ceiling(bench: Bench) -> float:
    """Bytes per second the hub sends to one curl that writes nothing: the reference's own ceiling."""
    urls = [arg for f in bench.workload.files for arg in (f.url, "-o", "/dev/null")]
    timed = bench.run(["curl", "--silent", "--show-error", "--fail", "--noproxy", "*", *urls], label="curl-devnull")
    return bench.workload.total_bytes / timed.seconds


def _cold_cache_run(
    bench: Bench,
    target: Path,
    download: list[str],
    label: str,
    peaks: list[int],
    cpu: dict[str, list[Timed]],
    requests: dict[str, int],
) -> float:
    """One cold download by the cache into an empty target, noting its peak memory, CPU and requests."""
    fresh(target)
    bench.hub.reset_counts()
    timed = bench.run(download, label=label)
    peaks.append(timed.max_rss)
    cpu[CACHE].append(timed)
    # The latest run's: the warm-up's run also resolved each model and wrote models.lock, as a first run does.
    requests.clear()
    requests.update(_request_counts(bench.hub))
    return float(timed.seconds)


def _request_counts(hub: LocalHub) -> dict[str, int]:
    counts: dict[str, int] = {}
    for request in list(hub.requests):
        key = f"{request.method} {request.kind}" if request.kind == "resolve" else request.kind
        counts[key] = counts.get(key, 0) + 1
    return counts


def _check_digests(openssl_output: str, expected: Mapping[str, str]) -> None:
    """The reference must have fetched the right bytes, or its time means nothing."""
    actual = {}
    for line in openssl_output.splitlines():
        name, _, digest = line.rpartition(")= ")
        actual[name.split("(", 1)[1]] = digest.strip()
    wrong = [path for path, digest in expected.items() if actual.get(path) != digest]
    if wrong:
        raise BenchError(f"curl fetched {len(wrong)} file(s) with the wrong sha256, e.g. {wrong[0]}")
