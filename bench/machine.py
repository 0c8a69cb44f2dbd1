"""What the numbers depend on: the machine, the tools' versions, and the settings the measured processes run with."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from bench.context import ROOT, Settings
from bench.measure import Runner
from bench.report import Fact


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
import huggingface_hub.constants as c, httpcore2
d.set_up_huggingface_hub(d.Deadlines.from_env())  # as the CLI does before a download
print(json.dumps({
    "modal_jobs": str(pathlib.Path(e.__file__).parent),
    "download workers": getattr(e, "DOWNLOAD_WORKERS", "?"),
    "hash workers": getattr(v, "HASH_WORKERS", "?"),
    "hf download chunk": str(c.DOWNLOAD_CHUNK_SIZE),
    "socket read": httpcore2.HTTP11Connection.READ_NUM_BYTES,
}))
"""


def settings_facts(settings: Settings) -> dict[str, Fact]:
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
