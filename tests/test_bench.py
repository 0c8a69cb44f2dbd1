"""The benchmark runs end to end at smoke scale and reports every measurement (its numbers are not judged here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from modal_jobs.deadlines import SOCKET_READ_BYTES

ROOT = Path(__file__).resolve().parent.parent


def test_quick_benchmark_reports_every_measurement(tmp_path: Path):
    out = tmp_path / "results.json"
    result = subprocess.run(
        [
            *(sys.executable, "-m", "bench.run", "--quick", "--pairs", "1", "--no-warm-up"),
            # Smaller still than --quick, one round each: every step runs and reports, in a third of the time.
            *("--scale", "0.005", "--small-files", "2", "--list-files", "200"),
            *("--out", str(out), "--workdir", str(tmp_path)),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "| cold download, plain HTTP | `modal_jobs download` | `huggingface_hub alone` |" in result.stdout
    assert "| cold download, plain HTTP | `modal_jobs download` | `one curl process` |" in result.stdout
    assert "| cold download, Xet | `modal_jobs download` | `huggingface_hub alone` |" in result.stdout
    assert "| cold download, plain HTTP | `modal_jobs download` | `huggingface_hub alone, library defaults` |" in (
        result.stdout
    )
    report = json.loads(out.read_text())
    assert report["machine"]["cores"] >= 1
    names = {m["name"] for m in report["measurements"]}
    assert {"cold download, plain HTTP", "cold download, Xet", "no-op re-run (3 models)", "verify"} <= names
    assert any(name.startswith("list") for name in names)
    # CPU per GB of every side of both transfer paths, measured in the same run, and the cache's overhead beyond them.
    assert "| CPU per GB of the process tree, median | the cache |" in result.stdout
    assert "| cold download, Xet, user seconds only |" in result.stdout
    cpu = {row["path"]: row for row in report["cpu"]}
    assert set(cpu) == {"plain HTTP", "Xet"}
    for row in cpu.values():
        assert min(len(row["cache"]), len(row["library"]), len(row["hashing"])) >= 1
        assert row["overhead"] == pytest.approx(row["cache"][0] - row["library"][0] - row["hashing"][0], abs=1e-3)
        # The same runs in user seconds: a part of each total, with the overhead counted the same way.
        user = row["user"]
        for side in ("cache", "library", "hashing"):
            # (a + b) - (c + d) and a - c may differ in the last bit when no system time passed.
            assert all(0 <= u <= t + 1e-9 for u, t in zip(user[side], row[side], strict=True))
        assert user["overhead"] == pytest.approx(user["cache"][0] - user["library"][0] - user["hashing"][0], abs=1e-3)
        assert user["met"] is None
    assert len(cpu["plain HTTP"]["curl"]) == 1 and cpu["Xet"]["curl"] == []
    plain = next(m for m in report["measurements"] if m["b"] == "one curl process")
    assert plain["cpu"]["b"] == cpu["plain HTTP"]["curl"]
    listed = next(m for m in report["measurements"] if m["name"].startswith("list"))
    assert listed["facts"]["Hub requests, most in one run"] == 0
    assert {row["workload"] for row in report["memory"]} >= {
        "model_list-shaped repos, plain HTTP",
        "model_list-shaped repos, Xet",
    }


def _reference_settings(settings: str) -> str:
    """What `bench.bare_hub` hands snapshot_download: the library's chunk size, socket read size and worker count."""
    probe = (
        "import sys, httpcore2, huggingface_hub, huggingface_hub.constants as c\n"
        "huggingface_hub.snapshot_download = lambda *a, **k: print(\n"
        "    c.DOWNLOAD_CHUNK_SIZE, httpcore2.HTTP11Connection.READ_NUM_BYTES, k['max_workers'])\n"
        "from bench.bare_hub import main\n"
        "main(sys.argv[1:])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, settings, "unused", "8", "org/repo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.strip()


def test_library_reference_runs_with_the_caches_transfer_settings():
    """A reference slower than the library can be flatters the cache: it gets the cache's chunk size, socket reads
    and workers (the socket read size is the one a download sees, as huggingface_hub's client reads)."""
    assert _reference_settings("cache") == f"None {SOCKET_READ_BYTES} 8"
    chunk, read, workers = _reference_settings("defaults").split()
    assert chunk.isdigit() and read == str(64 * 1024) and workers == "8"  # the library's own, untouched
