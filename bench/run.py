"""`python -m bench.run [--quick] [--pairs N] [--scale F] [--out FILE]`: the cache's speed next to curl and openssl.

A local hub on 127.0.0.1 serves generated repos shaped like the model list's (`bench.workload`);
the cache runs as it does for people, `python -m modal_jobs …` in its own process with its own
HF_HOME, and each measurement is interleaved with a reference doing the same work:

1. cold download        `download` into an empty directory, plain HTTP, vs huggingface_hub alone
                        (`snapshot_download` with the cache's transfer settings: chunk size, workers,
                        hf_xet buffers; no verification; and again with the library's defaults), vs one `curl` process
                        fetching every file in turn over one connection, and vs curl then
                        `openssl dgst -sha256`; and over Xet (hf_xet and the hub's CAS) vs
                        huggingface_hub alone
2. no-op re-run         `download` with everything complete   vs the CLI's start-up alone
                        (`python -c "import modal_jobs.cli"`), plus Hub requests per model
3. verify               `verify` over the downloaded bytes    vs `openssl dgst -sha256` of the same files
4. list                 `list` over tens of thousands of files vs `find` stat-ing the same tree
5. peak memory          of cold downloads at two file sizes (it must not grow with them)

The page cache is not dropped (that needs root): downloads are deleted between runs, and the
hub's blobs are in the page cache for the cache and the reference alike. Results go to stdout as
Markdown and to `--out` as JSON. Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.measure import BenchError, Deadline, Pairs, Runner, run_rounds
from bench.report import Fact, Measurement, MemoryRow, Report, render_markdown, write_json
from bench.workload import (
    Workload,
    curl_config,
    expected_sha256,
    memory_repo,
    model_list_repos,
    publish,
    publish_complete_target,
)
from local_hub.server import LocalHub, hub_env
from modal_jobs.reader import POINTER_NAME, REVISIONS_DIR

ROOT = Path(__file__).resolve().parent.parent
PEAK_MEMORY_LIMIT = 300_000_000


@dataclass(frozen=True)
class Settings:
    scale: float
    pairs: int
    small_files: int  # extra small files per repo
    list_files: int
    memory_files: int
    memory_sizes: tuple[int, int]
    budget: float  # seconds for all the measured rounds
    timeout: float  # seconds for one process
    out: Path
    workdir: Path | None
    steps: tuple[str, ...]


def parse_settings(argv: Sequence[str] | None) -> Settings:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small-scale smoke run (about a minute)")
    parser.add_argument("--pairs", type=int, help="rounds of each measurement (default 5, 3 with --quick)")
    parser.add_argument("--scale", type=float, help="size of the large files; 1 = about 1.5 GB in all")
    parser.add_argument("--small-files", type=int, help="extra small files per repo (default 64, 16 with --quick)")
    parser.add_argument("--list-files", type=int, help="files in the target `list` walks (default 20000)")
    parser.add_argument("--budget", type=float, help="seconds for the measured rounds; later rounds are skipped")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json", help="the JSON results file")
    parser.add_argument("--workdir", type=Path, help="where to put the hub's blobs and the downloads (default: TMPDIR)")
    parser.add_argument(
        "--only",
        action="append",
        choices=[step.__name__ for step in STEPS],
        help="run only this measurement (repeatable; no-op re-run and verify need cold_download)",
    )
    args = parser.parse_args(argv)
    quick = args.quick
    pairs = args.pairs or (3 if quick else 5)
    if not 1 <= pairs <= 50:
        parser.error("--pairs must be between 1 and 50")
    return Settings(
        scale=args.scale if args.scale is not None else (0.03 if quick else 1.0),
        pairs=pairs,
        small_files=args.small_files if args.small_files is not None else (16 if quick else 64),
        list_files=args.list_files or (2_000 if quick else 20_000),
        memory_files=4 if quick else 8,
        memory_sizes=(12_000_000, 48_000_000) if quick else (16_000_000, 128_000_000),
        budget=args.budget or (120.0 if quick else 600.0),
        timeout=120.0 if quick else 600.0,
        out=args.out,
        workdir=args.workdir,
        steps=tuple(args.only or [step.__name__ for step in STEPS]),
    )


@dataclass
class Bench:
    """What every step works with: the hub, the runner, the clock, and the model_list-shaped repos."""

    settings: Settings
    work: Path
    hub: LocalHub
    run: Runner
    deadline: Deadline
    workload: Workload
    downloaded: Path | None = None  # a complete target, once the cold download has left one
    download_workers: int = 8  # the cache's file workers, which huggingface_hub alone gets too
    memory: tuple[MemoryRow, ...] = ()

    def cache(self, operation: str, target: Path, model_list: Path) -> list[str]:
        return [
            sys.executable,
            "-m",
            "modal_jobs",
            operation,
            "--local-dir",
            str(target),
            "--model-list",
            str(model_list),
        ]


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_settings(argv)
    measurements: list[Measurement] = []
    errors: list[str] = []
    with (
        tempfile.TemporaryDirectory(prefix="modal-jobs-bench-", dir=settings.workdir) as tmp,
        LocalHub(Path(tmp) / "hub") as hub,
    ):
        bench = prepare(settings, Path(tmp), hub)
        machine = machine_facts(bench.run)
        workers = machine.get("download workers")
        bench.download_workers = workers if isinstance(workers, int) else bench.download_workers
        for step in (step for step in STEPS if step.__name__ in settings.steps):
            try:
                measurements += step(bench)
            except BenchError as exc:
                errors.append(f"{step.__name__}: {exc}")
            print(f"bench: {step.__name__} done", file=sys.stderr, flush=True)
    report = Report(
        machine, _settings_facts(settings), tuple(measurements), bench.memory, tuple(errors), notes(settings)
    )
    sys.stdout.write(render_markdown(report))
    write_json(report, settings.out)
    return 1 if errors else 0


def notes(settings: Settings) -> tuple[str, ...]:
    """What a reader of the numbers must know to compare them."""
    said: tuple[str, ...] = (
        "Speed A/B is B's time over A's, pair by pair: 1 means the cache keeps pace with the reference.",
        "The page cache is not dropped: downloads are deleted between runs, and the hub's blobs are in memory for "
        "A and B alike.",
        "Both transfer paths are measured: plain HTTP, and Xet (the hub's CAS serves the LFS files to hf_xet, "
        "uncompressed chunks, as the real Hub sends Qwen3-TTS's weights). curl cannot speak Xet: there the "
        "reference is huggingface_hub alone.",
        "huggingface_hub alone is `snapshot_download` of each repo in turn into a local_dir, nothing verified, "
        "with the cache's worker count and the library set up as the cache sets it up (chunk size, read timeout, "
        "hf_xet's buffers and timeouts); the row marked 'library defaults' changes nothing but the worker count.",
        "The hub is not the bottleneck: 'the hub alone' is one curl writing to /dev/null from the same hub.",
        f"One warm-up round before each measurement is dropped; rounds stop early after {settings.budget:.0f} s.",
    )
    if settings.scale < 0.5:
        said += ("Smoke-run scale: start-up dominates every ratio; run without --quick for numbers to compare.",)
    return said


def prepare(settings: Settings, work: Path, hub: LocalHub) -> Bench:
    """Publish the model_list-shaped repos and set up a runner whose processes talk to this hub only."""
    print(f"bench: writing repos (scale {settings.scale}) under {work}", file=sys.stderr, flush=True)
    workload = publish(
        hub, model_list_repos(settings.scale, settings.small_files), work / "sources", work / "models.toml", seed=1
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MODAL_", "GITHUB_"))}
    env.update(hub_env(hub, work / "hf-home"))
    # A PYTHONPATH set by the caller comes first, so a scratch copy of the package can be measured.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), str(ROOT)) if p)
    scratch = work / "cwd"  # not the repo: `python -m` puts the working directory first on sys.path
    scratch.mkdir()
    runner = Runner(env, scratch, work / "logs", settings.timeout)
    return Bench(settings, work, hub, runner, Deadline(settings.budget), workload)


def fresh(path: Path) -> Path:
    """An empty place for a run's files; flushing writeback here keeps one run's writes out of the next's time."""
    if path.exists():
        shutil.rmtree(path)
    os.sync()
    return path


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
    cpu: dict[str, list[float]] = {
        "modal_jobs download": [],
        "curl": [],
        "huggingface_hub alone": [],
        "huggingface_hub alone, library defaults": [],
    }
    requests: dict[str, int] = {}

    def cache() -> float:
        return _cold_cache_run(bench, target, download, "download-cold", peaks, cpu, requests)

    def transfer() -> float:
        fresh(fetched)
        timed = run(curl, label="curl")
        cpu["curl"].append(timed.cpu)
        return timed.seconds

    def hash_fetched() -> float:
        seconds = run(openssl, label="openssl-fetched").seconds
        _check_digests(run.output("openssl-fetched"), expected_sha256(workload.files, fetched))
        return seconds

    library = _bare_hub(bench, cpu["huggingface_hub alone"], "http", "cache")
    defaults = _bare_hub(bench, cpu["huggingface_hub alone, library defaults"], "http", "defaults")
    a, b, hashing, c, d = run_rounds(
        bench.deadline, bench.settings.pairs, cache, transfer, hash_fetched, library, defaults
    )
    shutil.rmtree(fetched, ignore_errors=True)
    del peaks[0]  # the warm-up round
    for values in cpu.values():
        del values[0]
    bench.downloaded = target
    largest = max(f.size for f in workload.files)
    bench.memory += (
        MemoryRow("model_list-shaped repos, plain HTTP", len(workload.files), largest, tuple(peaks), PEAK_MEMORY_LIMIT),
    )
    size = workload.total_bytes
    models = len(workload.repo_ids)
    transfer_only = Pairs(a, b)
    with_hashing = Pairs(a, tuple(t + h for t, h in zip(b, hashing, strict=True)))
    against_library = Pairs(a, c)
    against_defaults = Pairs(a, d)
    return [
        Measurement(
            "cold download, plain HTTP",
            "modal_jobs download",
            "huggingface_hub alone",
            against_library,
            size,
            "≥ 0.95×",
            against_library.speed.median >= 0.95,
            {
                "files": len(workload.files),
                "bytes": size,
                **{f"requests: {kind}": count for kind, count in requests.items()},
                "requests per file": round(sum(requests.values()) / len(workload.files), 2),
                "requests per model (excluding files)": round(
                    (requests.get("revision", 0) + requests.get("tree", 0)) / models, 2
                ),
                **{f"{name}: CPU (user+sys), median s": round(statistics.median(v), 2) for name, v in cpu.items()},
                "the hub alone (curl to /dev/null), MB/s": round(_server_ceiling(bench) / 1e6),
            },
        ),
        Measurement(
            "cold download, plain HTTP",
            "modal_jobs download",
            "huggingface_hub alone, library defaults",
            against_defaults,
            size,
            "—",
            None,
        ),
        Measurement(
            "cold download, plain HTTP",
            "modal_jobs download",
            "one curl process",
            transfer_only,
            size,
            "≥ 0.6×",
            transfer_only.speed.median >= 0.6,
        ),
        Measurement(
            "cold download, plain HTTP, verified",
            "modal_jobs download",
            "one curl; openssl dgst -sha256",
            with_hashing,
            size,
            "—",
            None,
            {"openssl over the fetched files, median s": round(statistics.median(hashing), 3)},
        ),
    ]


def cold_download_xet(bench: Bench) -> list[Measurement]:
    """Xet: the hub sends the LFS files through its CAS, as the real Hub does; the cache (verifying every
    byte) against huggingface_hub alone (hf_xet, nothing verified). curl cannot speak Xet."""
    workload = bench.workload
    target = bench.work / "target-xet"
    download = bench.cache("download", target, workload.model_list)
    peaks: list[int] = []
    cpu: dict[str, list[float]] = {
        "modal_jobs download": [],
        "huggingface_hub alone": [],
        "huggingface_hub alone, library defaults": [],
    }
    requests: dict[str, int] = {}

    def cache() -> float:
        return _cold_cache_run(bench, target, download, "download-cold-xet", peaks, cpu, requests)

    library = _bare_hub(bench, cpu["huggingface_hub alone"], "xet", "cache")
    defaults = _bare_hub(bench, cpu["huggingface_hub alone, library defaults"], "xet", "defaults")
    bench.hub.enable_xet()
    try:
        a, b, c = run_rounds(bench.deadline, bench.settings.pairs, cache, library, defaults)
    finally:
        bench.hub.disable_xet()
    shutil.rmtree(target, ignore_errors=True)
    del peaks[0]
    for values in cpu.values():
        del values[0]
    largest = max(f.size for f in workload.files)
    bench.memory += (
        MemoryRow("model_list-shaped repos, Xet", len(workload.files), largest, tuple(peaks), PEAK_MEMORY_LIMIT),
    )
    pairs = Pairs(a, b)
    return [
        Measurement(
            "cold download, Xet",
            "modal_jobs download",
            "huggingface_hub alone",
            pairs,
            workload.total_bytes,
            "≥ 0.95×",
            pairs.speed.median >= 0.95,
            {
                **{f"requests: {kind}": count for kind, count in requests.items()},
                **{f"{name}: CPU (user+sys), median s": round(statistics.median(v), 2) for name, v in cpu.items()},
            },
        ),
        Measurement(
            "cold download, Xet",
            "modal_jobs download",
            "huggingface_hub alone, library defaults",
            Pairs(a, c),
            workload.total_bytes,
            "—",
            None,
        ),
    ]


def _bare_hub(bench: Bench, cpu: list[float], path: str, settings: str) -> Callable[[], float]:
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
        cpu.append(timed.cpu)
        return timed.seconds

    return library


def _server_ceiling(bench: Bench) -> float:
    """Bytes per second the hub sends to one curl that writes nothing: the reference's own ceiling."""
    urls = [arg for f in bench.workload.files for arg in (f.url, "-o", "/dev/null")]
    timed = bench.run(["curl", "--silent", "--show-error", "--fail", "--noproxy", "*", *urls], label="curl-devnull")
    return bench.workload.total_bytes / timed.seconds


def no_op_rerun(bench: Bench) -> list[Measurement]:
    """Everything complete: the re-run should ask the Hub once per model and finish within a second."""
    target = _downloaded(bench)
    download = bench.cache("download", target, bench.workload.model_list)
    startup = [sys.executable, "-c", "import modal_jobs.cli"]
    requests: list[int] = []

    def cache() -> float:
        bench.hub.reset_counts()
        seconds = bench.run(download, label="download-noop").seconds
        requests.append(bench.hub.count())
        return seconds

    a, b = run_rounds(bench.deadline, bench.settings.pairs, cache, lambda: bench.run(startup, label="startup").seconds)
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
    paths = [str(_loaded_path(target, f.dest)) for f in bench.workload.files]
    command = bench.cache("verify", target, bench.workload.model_list)
    openssl = ["openssl", "dgst", "-sha256", *paths]
    a, b = run_rounds(
        bench.deadline,
        bench.settings.pairs,
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
    """`list` over a target with many small files, against `find` stat-ing the same tree."""
    target, model_list = bench.work / "list-target", bench.work / "list.toml"
    repo_ids = [f"bench/many-files-{i}" for i in range(1, 4)]
    files = publish_complete_target(
        bench.hub, repo_ids, bench.settings.list_files // len(repo_ids), target, model_list, seed=7
    )
    command = bench.cache("list", target, model_list)
    find = ["find", str(target), "-type", "f", "-printf", "%s\n"]
    a, b = run_rounds(
        bench.deadline,
        bench.settings.pairs,
        lambda: bench.run(command, label="list").seconds,
        lambda: bench.run(find, label="find").seconds,
    )
    shutil.rmtree(target, ignore_errors=True)
    return [
        Measurement(
            f"list ({files} files)",
            "modal_jobs list",
            "find -type f -printf '%s'",
            Pairs(a, b),
            None,
            "—",
            None,
            {"files": files, "ms per 1000 files": round(1000 * statistics.median(a) / files * 1000, 1)},
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


STEPS: tuple[Callable[[Bench], list[Measurement]], ...] = (
    cold_download,
    cold_download_xet,
    no_op_rerun,
    verify,
    list_many_files,
    peak_memory,
)


def _downloaded(bench: Bench) -> Path:
    if bench.downloaded is None:
        raise BenchError("needs the target the cold download leaves, and the cold download did not run")
    return bench.downloaded


def _request_counts(hub: LocalHub) -> dict[str, int]:
    counts: dict[str, int] = {}
    for request in list(hub.requests):
        key = f"{request.method} {request.kind}" if request.kind == "resolve" else request.kind
        counts[key] = counts.get(key, 0) + 1
    return counts


def _loaded_path(target: Path, dest: str) -> Path:
    """Where a reader finds `<model dir>/<path>`: inside the revision the model's pointer names."""
    name, path = dest.split("/", 1)
    pointer = json.loads((target / name / POINTER_NAME).read_text())
    return target / name / REVISIONS_DIR / str(pointer["revision"]) / path


def _check_digests(openssl_output: str, expected: Mapping[str, str]) -> None:
    """The reference must have fetched the right bytes, or its time means nothing."""
    actual = {}
    for line in openssl_output.splitlines():
        name, _, digest = line.rpartition(")= ")
        actual[name.split("(", 1)[1]] = digest.strip()
    wrong = [path for path, digest in expected.items() if actual.get(path) != digest]
    if wrong:
        raise BenchError(f"curl fetched {len(wrong)} file(s) with the wrong sha256, e.g. {wrong[0]}")


def machine_facts(run: Runner) -> dict[str, Fact]:
    """What the numbers depend on: cores, CPU, versions of Python, the client and the reference tools."""
    run([sys.executable, "-c", _EFFECTIVE_SETTINGS], label="facts")
    effective: dict[str, Fact] = json.loads(run.output("facts"))
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count() or 0,
        "cores usable": len(os.sched_getaffinity(0)),
        "memory": f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 1e9:.1f} GB",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "huggingface_hub": importlib.metadata.version("huggingface_hub"),
        "httpx2": _version("httpx2"),
        "openssl": _first_line(["openssl", "version"]),
        "curl": _first_line(["curl", "--version"]).split(" (")[0],
        **effective,
        "commit": _first_line(["git", "-C", str(ROOT), "describe", "--always", "--dirty"]),
    }


# What the measured processes run with, as they see it (a PYTHONPATH copy of the package included).
_EFFECTIVE_SETTINGS = """
import json, pathlib, modal_jobs.engine as e, modal_jobs.deadlines as d, modal_jobs.verifying as v
import huggingface_hub.constants as c
d.set_up_huggingface_hub(d.Deadlines.from_env())  # as the CLI does before a download
print(json.dumps({
    "modal_jobs": str(pathlib.Path(e.__file__).parent),
    "download workers": getattr(e, "DOWNLOAD_WORKERS", "?"),
    "hash workers": getattr(v, "HASH_WORKERS", "?"),
    "hf download chunk": str(c.DOWNLOAD_CHUNK_SIZE),
}))
"""


def _settings_facts(settings: Settings) -> dict[str, Fact]:
    facts: dict[str, Fact] = {}
    for key, value in asdict(settings).items():
        facts[key] = str(value) if isinstance(value, Path | tuple) or value is None else value
    return facts


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def _first_line(argv: list[str]) -> str:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable ({exc})"
    return (result.stdout or result.stderr).strip().splitlines()[0] if (result.stdout or result.stderr) else "?"


def _cold_cache_run(
    bench: Bench,
    target: Path,
    download: list[str],
    label: str,
    peaks: list[int],
    cpu: dict[str, list[float]],
    requests: dict[str, int],
) -> float:
    """One cold download by the cache into an empty target, noting its peak memory, CPU and requests."""
    fresh(target)
    bench.hub.reset_counts()
    timed = bench.run(download, label=label)
    peaks.append(timed.max_rss)
    cpu["modal_jobs download"].append(timed.cpu)
    requests.update(_request_counts(bench.hub))
    return float(timed.seconds)


if __name__ == "__main__":
    raise SystemExit(main())
