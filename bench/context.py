"""What every step of the benchmark works with: its settings, the hub, the runner, the clock, the repos."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.measure import Deadline, Runner, run_rounds
from bench.report import CpuRow, MemoryRow
from bench.workload import Workload, model_list_repos, publish
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
    warmup: int = 1  # rounds run first and dropped


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
    cpu: tuple[CpuRow, ...] = ()

    def rounds(self, *runs: Callable[[], float]) -> tuple[tuple[float, ...], ...]:
        """Each run, round after round, after the warm-up rounds (see `run_rounds`)."""
        return run_rounds(self.deadline, self.settings.pairs, *runs, warmup=self.settings.warmup)

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


def loaded_path(target: Path, dest: str) -> Path:
    """Where a reader finds `<model dir>/<path>`: inside the revision the model's pointer names."""
    name, path = dest.split("/", 1)
    pointer = json.loads((target / name / POINTER_NAME).read_text())
    return target / name / REVISIONS_DIR / str(pointer["revision"]) / path
