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
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from bench.context import ROOT, Bench, Settings, prepare
from bench.downloads import cold_download, cold_download_xet
from bench.machine import machine_facts, settings_facts
from bench.measure import BenchError
from bench.report import Measurement, Report, render_markdown, write_json
from bench.target_steps import list_many_files, no_op_rerun, peak_memory, verify
from local_hub.server import LocalHub

STEPS: tuple[Callable[[Bench], list[Measurement]], ...] = (
    cold_download,
    cold_download_xet,
    no_op_rerun,
    verify,
    list_many_files,
    peak_memory,
)


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
    parser.add_argument("--no-warm-up", action="store_true", help="measure the first round too (a smoke run)")
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
        warmup=0 if args.no_warm_up else 1,
    )


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
        machine,
        settings_facts(settings),
        tuple(measurements),
        memory=bench.memory,
        cpu=bench.cpu,
        errors=tuple(errors),
        notes=notes(settings),
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
        "as the real Hub sends Qwen3-TTS's weights; its chunks are not compressed). curl cannot speak Xet: "
        "there the reference is huggingface_hub alone.",
        "huggingface_hub alone is `snapshot_download` of each repo in turn into a local_dir, nothing verified, "
        "with the cache's worker count and the library set up as the cache sets it up (chunk size, socket read "
        "size, read timeout, hf_xet's buffers and timeouts); the row marked 'library defaults' changes nothing but "
        "the worker count.",
        "The hub is not the bottleneck: 'the hub alone' is one curl writing to /dev/null from the same hub.",
        f"{settings.warmup} warm-up round(s) before each measurement dropped; rounds stop early after "
        f"{settings.budget:.0f} s.",
    )
    if settings.scale < 0.5:
        said += ("Smoke-run scale: start-up dominates every ratio; run without --quick for numbers to compare.",)
    return said


if __name__ == "__main__":
    raise SystemExit(main())
