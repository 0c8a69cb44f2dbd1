"""The Modal app: one container per model that needs work, writing only that model's directory.

    modal run -m modal_jobs.download_models [--model-size 1.7B|0.6B|both] [--list-only] [--clear --yes]

`python -m modal_jobs download` starts the same functions through `modal_jobs.volume`, which plans
on this machine and calls them only for models that are not complete. Nothing here touches the
network at import time: the volume, the image and the secrets are lazy handles.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import modal

from modal_jobs.catalog import ModelEntry, load_catalog

# Read at import, locally and in the container (the file is added to the image below), so both
# sides agree on the volume and its mount.
CATALOG_PATH = Path(__file__).resolve().parent.parent / "models.toml"
CATALOG = load_catalog(CATALOG_PATH)
MOUNT = CATALOG.volume.mount

APP_NAME = "qwen3-tts-model-cache"
# Optional: the Hub token when HF_TOKEN is not set on the calling side; attached at call time.
HF_SECRET_NAME = "huggingface-secret"  # noqa: S105 - the name of a Modal secret, not a secret
# Pinned like pyproject.toml: 2.x downloads into a local_dir without symlinks and speaks Xet.
IMAGE_PACKAGES = ("huggingface_hub[hf_xet]>=2.4,<3",)
# The downloader's own cache stays on the container's disk; only model directories go to the volume.
HF_HOME = "/root/.cache/huggingface"  # the container's own disk, gone with the container
TIMEOUT_SECONDS = 60 * 60
RETRIES = modal.Retries(max_retries=2, backoff_coefficient=2.0, initial_delay=10.0)
CPU = 2.0
MEMORY_MIB = 4096
# Only the Xet chunk cache lands here (the weights go to the volume). Disk is billed as memory at 20:1.
EPHEMERAL_DISK_MIB = 32 * 1024

image = (
    modal.Image.debian_slim(python_version="3.12")
    .pip_install(*IMAGE_PACKAGES)
    .env(
        {
            "HF_XET_HIGH_PERFORMANCE": "1",
            "HF_HOME": HF_HOME,
            "HF_XET_CACHE": f"{HF_HOME}/xet",
            "HF_HUB_DISABLE_TELEMETRY": "1",
        }
    )
    # Added last, mounted at container start: no automount in Modal 1.x, and no rebuild on edits.
    .add_local_python_source("modal_jobs")
    .add_local_file(CATALOG_PATH, "/root/models.toml")
)
volume = modal.Volume.from_name(CATALOG.volume.name, create_if_missing=True)
app = modal.App(APP_NAME, image=image)

CONTAINER: dict[str, Any] = {
    "volumes": {MOUNT: volume},
    "timeout": TIMEOUT_SECONDS,
    "retries": RETRIES,
    "cpu": CPU,
    "memory": MEMORY_MIB,
    "ephemeral_disk": EPHEMERAL_DISK_MIB,
    "single_use_containers": True,  # one container per model, never reused for another
}


def entry_args(entry: ModelEntry) -> tuple[str, str, list[str] | None, list[str] | None]:
    """What a container needs of an entry, as plain values that cross the wire."""
    return (
        entry.repo_id,
        entry.revision,
        list(entry.include) if entry.include is not None else None,
        list(entry.exclude) if entry.exclude is not None else None,
    )


def _entry(repo_id: str, revision: str, include: list[str] | None, exclude: list[str] | None) -> ModelEntry:
    return ModelEntry(
        repo_id=repo_id,
        revision=revision,
        include=tuple(include) if include is not None else None,
        exclude=tuple(exclude) if exclude is not None else None,
    )


@app.function(**CONTAINER)
def download_one(
    repo_id: str, revision: str, include: list[str] | None = None, exclude: list[str] | None = None
) -> dict[str, Any]:
    """Make `<mount>/<model>` complete at the revision's current commit, then commit the volume."""
    from modal_jobs.cli import configure_logging
    from modal_jobs.engine import download_model
    from modal_jobs.hub import Hub

    configure_logging()
    row = download_model(_entry(repo_id, revision, include, exclude), Path(MOUNT), Hub())
    # Explicitly, now: the caller reads the manifest right after; every file is closed by here.
    volume.commit()
    return dataclasses.asdict(row)


@app.function(**CONTAINER)
def verify_one(
    repo_id: str, revision: str, include: list[str] | None = None, exclude: list[str] | None = None
) -> dict[str, Any]:
    """Re-hash one model against its manifest; damage removes the manifest so the next download repairs it."""
    from modal_jobs.cli import configure_logging
    from modal_jobs.engine import verify_models

    configure_logging()
    volume.reload()  # see what the last download committed, not the state this container started with
    row = verify_models([_entry(repo_id, revision, include, exclude)], Path(MOUNT))[0]
    volume.commit()
    return dataclasses.asdict(row)


@app.local_entrypoint()
def main(
    model_size: str = "both",
    list_only: bool = False,
    clear: bool = False,
    yes: bool = False,
    dry_run: bool = False,
) -> None:
    """Download the selected models to the volume (or list them, or clear them with --clear --yes)."""
    from modal_jobs.cli import configure_logging, log
    from modal_jobs.errors import CacheError, UsageError
    from modal_jobs.hub import Hub
    from modal_jobs.operations import Request, run
    from modal_jobs.summary import render_text, write_summaries
    from modal_jobs.volume import open_volume_backend

    configure_logging()
    try:
        if list_only and clear:
            raise UsageError("--list-only and --clear do not go together; choose one")
        operation = "list" if list_only else "clear" if clear else "download"
        request = Request(operation, sizes=(model_size,), dry_run=dry_run, yes=yes)
        hub = Hub()
        backend = open_volume_backend(CATALOG, hub, app_running=True)  # `modal run` started the app already
        summary = run(request, CATALOG, backend, hub)
    except CacheError as exc:
        log.error("error: %s", exc)
        raise SystemExit(exc.exit_code) from None
    write_summaries(summary, None, None)
    sys.stdout.write(render_text(summary))
    if summary.exit_code:
        raise SystemExit(summary.exit_code)
