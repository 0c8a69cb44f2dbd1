"""`modal run -m modal_jobs.download_models …`: the command line of `python -m modal_jobs`, inside the Modal app.

    modal run -m modal_jobs.download_models download --model-size 0.6B [--dry-run] [--prune] [--json]
    modal run -m modal_jobs.download_models list
    modal run -m modal_jobs.download_models --model-size 0.6B   # or --list-only, --clear: the original flags

The arguments go through the same driver (`cli.main`), which also takes the original script's
flags as aliases of the commands. The app itself (image, functions) is `modal_jobs.modal_app`.
"""

from __future__ import annotations

from modal_jobs.modal_app import app

__all__ = ["app", "main"]


@app.local_entrypoint()
def main(*arglist: str) -> None:
    """`python -m modal_jobs`, inside the app `modal run` started."""
    from modal_jobs.cli import main as run_cli

    code = run_cli(list(arglist), app_running=True)
    if code:
        raise SystemExit(code)
