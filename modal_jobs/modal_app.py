"""The Modal app: the image, and one container per model that needs work, writing only that model's directory.

The caller plans (`modal_jobs.modal_backend`); a container is handed one model's plan, commit included,
and carries it out with the engine. Nothing here reads the model list: the volume and its mount
are attached per call from the list the run loaded, so the installed package imports anywhere.
`modal run -m modal_jobs.download_models` is the command line (`modal_jobs.download_models`).

The whole cloud footprint:

- image: Debian slim, Python 3.11 (what CI runs), the packages pinned in
  `container-requirements.txt` (exported from `uv.lock`, hashes included), and this package;
- per container: 4 CPUs, 2 GiB, sized from the benchmark (docs/modal.md; hf_xet's buffers set to
  fit), no extra disk (the weights go to the volume, hf_xet keeps no chunk cache for downloads),
  1 hour, 2 retries;
- secrets: HF_TOKEN, attached per call to `apply_one` only (it calls the Hub), and only when there is one.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import Any

import modal

APP_NAME = "qwen3-tts-model-cache"
# Optional: the Hub token when HF_TOKEN is not set on the calling side; attached at call time.
HF_SECRET_NAME = "huggingface-secret"  # noqa: S105 - the name of a Modal secret, not a secret
PYTHON_VERSION = "3.11"
# `nox -s container-requirements` writes it from uv.lock; a test fails when the two disagree.
REQUIREMENTS = Path(__file__).with_name("container-requirements.txt")
# The downloader's own state stays on the container's disk; only model directories go to the volume.
HF_HOME = "/root/.cache/huggingface"
TIMEOUT_SECONDS = 60 * 60
RETRIES = modal.Retries(max_retries=2, backoff_coefficient=2.0, initial_delay=10.0)
# Sized from the benchmark's CPU per GB so that the hash does not bound a 1 GB/s transfer (docs/modal.md).
CPU = 4.0
MEMORY_MIB = 2048
# hf_xet sizes its download buffers from the memory it detects (the host's, not this request); set
# them so that they fit the request with room for Python and the hashes. Its high-performance mode
# (up to half the detected memory) stays off.
CONTAINER_XET_BUFFERS = {
    "HF_XET_RECONSTRUCTION_DOWNLOAD_BUFFER_SIZE": str(1 << 30),
    "HF_XET_RECONSTRUCTION_DOWNLOAD_BUFFER_PERFILE_SIZE": str(256 << 20),
    "HF_XET_RECONSTRUCTION_DOWNLOAD_BUFFER_LIMIT": str(1 << 30),  # the most it may grow to: no more than the size
}

image = (
    modal.Image.debian_slim(python_version=PYTHON_VERSION)
    .pip_install_from_requirements(str(REQUIREMENTS), extra_options="--require-hashes --no-deps")
    .env({"HF_HOME": HF_HOME, "HF_HUB_DISABLE_TELEMETRY": "1", **CONTAINER_XET_BUFFERS})
    # Added last, mounted at container start: no rebuild when the code changes.
    .add_local_python_source("modal_jobs")
)
app = modal.App(APP_NAME, image=image)

CONTAINER: dict[str, Any] = {
    "timeout": TIMEOUT_SECONDS,
    "retries": RETRIES,
    "cpu": CPU,
    "memory": MEMORY_MIB,
    "single_use_containers": True,  # one container per model, never reused for another
}


@app.function(**CONTAINER)
def apply_one(
    plan: dict[str, Any], mount: str, volume: modal.Volume, events: modal.Queue | None = None
) -> dict[str, Any]:
    """Write one model's new revision on the volume at `mount` and commit it; the caller moves the pointer.

    Safe to run again (Modal retries it): a revision already complete, or already current, is left as it is.
    """
    from modal_jobs.deadlines import Deadlines, set_up_huggingface_hub
    from modal_jobs.decide.model_plan import ModelPlan
    from modal_jobs.engine import apply_models
    from modal_jobs.hub import Hub
    from modal_jobs.logs import forward_logs
    from modal_jobs.outcome import Outcome
    from modal_jobs.rows import applied_row

    model = ModelPlan.from_wire(plan)
    forward_logs(events)
    hub = Hub(deadlines=Deadlines.from_env())  # the caller's endpoint and limits, passed as environment
    set_up_huggingface_hub(hub.deadlines)
    # What other runs (or an earlier attempt of this call) committed since this container started: the engine
    # checks the model again before it writes (decide.progress), and writes nothing a reader may be loading.
    volume.reload()
    try:
        outcome = apply_models([model], Path(mount), hub, threading.Event(), publish=False)[model.name]
    except Exception as exc:  # one failed row, never a crash the caller would have to interpret
        outcome = Outcome(error=f"in the container: {type(exc).__name__}: {exc}")
    row = applied_row(model, mount, outcome)
    # The barrier's first half: the caller lists the revision through the client API once this returns, and
    # moves the pointer only if every file of the manifest is there. Every file is closed by here.
    volume.commit()
    return dataclasses.asdict(row)


@app.function(**CONTAINER)
def verify_one(
    entry: dict[str, Any], mount: str, volume: modal.Volume, events: modal.Queue | None = None
) -> dict[str, Any]:
    """Re-hash one model's current revision; damage is marked beside it, and the next download repairs it."""
    from modal_jobs.logs import forward_logs
    from modal_jobs.model_list import ModelEntry
    from modal_jobs.rows import target_path, unchecked_row
    from modal_jobs.verifying import verify_models

    model = ModelEntry.from_wire(entry)
    forward_logs(events)
    volume.reload()  # see what the last download committed, not the state this container started with
    try:
        row = verify_models([model], Path(mount))[0]
    except Exception as exc:  # one failed row (not checked), never a crash the caller would have to interpret
        row = unchecked_row(
            model.repo_id, target_path(mount, model.dirname), None, f"in the container: {type(exc).__name__}: {exc}"
        )
    volume.commit()
    return dataclasses.asdict(row)
