"""`python -m modal_jobs <command> [options]`: the one command line behind nox, the workflows and people.

Only the summary goes to stdout (as JSON with `--json`); logs and progress go to stderr.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from types import FrameType
from typing import NoReturn

from modal_jobs.catalog import DEFAULT_CATALOG, Catalog, load_catalog
from modal_jobs.errors import CacheError, InterruptedRun, TargetError, UsageError
from modal_jobs.hub import Hub
from modal_jobs.operations import Backend, LocalBackend, Request, run
from modal_jobs.summary import render_json, render_text, write_summaries

log = logging.getLogger("modal_jobs")

OPERATIONS = {
    "download": "fetch the selected models, skipping what is complete and repairing what is not",
    "list": "show every model of the list with its state on the target, and directories no entry owns",
    "verify": "re-hash what is on the target against each manifest",
    "clear": "remove the selected models (everything, with no selection); needs --yes",
}


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineErrors(
        prog="python -m modal_jobs",
        description="Keep Qwen3-TTS model weights cached, verified, on a Modal Volume or a local directory.",
    )
    commands = parser.add_subparsers(dest="operation", required=True, metavar="COMMAND")
    for name, help_text in OPERATIONS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        target = sub.add_argument_group("target")
        target.add_argument(
            "--local-dir", type=Path, metavar="DIR", help="work on this directory instead of the Modal Volume"
        )
        target.add_argument(
            "--catalog",
            type=Path,
            default=DEFAULT_CATALOG,
            metavar="FILE",
            help="the model list (default: models.toml)",
        )
        selection = sub.add_argument_group("selection")
        selection.add_argument(
            "--model-size",
            action="append",
            default=[],
            metavar="LABEL",
            help="a size label from the model list, or both/all; shared models always come along",
        )
        selection.add_argument(
            "--model",
            action="append",
            default=[],
            metavar="REPO_ID",
            help="a repo id from the model list (repeatable)",
        )
        if name in ("download", "clear"):
            sub.add_argument("--dry-run", action="store_true", help="say what would happen; change nothing")
        if name == "clear":
            sub.add_argument("--yes", action="store_true", help="really remove (without it, clear only refuses)")
        if name != "list":
            target.add_argument(
                "--lock-wait",
                type=_seconds,
                default=60.0,
                metavar="SECONDS",
                help="how long to wait for another run on the same local directory (default 60)",
            )
        output = sub.add_argument_group("output")
        output.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
        output.add_argument("--summary-json", type=Path, metavar="FILE", help="also write the summary as JSON")
        output.add_argument("--summary-md", type=Path, metavar="FILE", help="also write the summary as Markdown")
    return parser


class _OneLineErrors(argparse.ArgumentParser):
    """Usage errors as one line that says where the help is, not the whole usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message}; see `{self.prog} --help`\n")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging()
    cancel = threading.Event()
    try:
        check_output_paths(args.summary_json, args.summary_md)
        with stop_on_signals(cancel) if args.operation == "download" else nullcontext():
            catalog = load_catalog(args.catalog)
            hub = Hub(cancel=cancel)
            backend = open_backend(args.local_dir, catalog, hub)
            request = Request(
                operation=args.operation,
                sizes=tuple(args.model_size),
                repo_ids=tuple(args.model),
                dry_run=getattr(args, "dry_run", False),
                yes=getattr(args, "yes", False),
                lock_wait=getattr(args, "lock_wait", 60.0),
            )
            summary = run(request, catalog, backend, hub, cancel)
    except InterruptedRun as exc:
        log.error("interrupted: %s", exc)
        # Transfers still in flight hold no state worth waiting for: leave without joining their threads.
        logging.shutdown()
        sys.stderr.flush()
        os._exit(exc.exit_code)
    except CacheError as exc:
        log.error("error: %s", exc)
        return exc.exit_code
    sys.stdout.write(render_json(summary) if args.json else render_text(summary))
    sys.stdout.flush()
    try:
        write_summaries(summary, args.summary_json, args.summary_md)
    except OSError as exc:
        log.error("error: cannot write the summary (%s); the operation itself finished as shown", exc)
        return 1
    return summary.exit_code


def open_backend(local_dir: Path | None, catalog: Catalog, hub: Hub) -> Backend:
    if local_dir is None:
        from modal_jobs.volume import open_volume_backend

        return open_volume_backend(catalog, hub)
    root = local_dir.expanduser().absolute()
    if root.exists() and not root.is_dir():
        raise TargetError(f"--local-dir {local_dir} is not a directory; pass a directory (it is created if missing)")
    hf_home = Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface").absolute()
    if hf_home == root or root in hf_home.parents:
        raise TargetError(
            f"HF_HOME ({hf_home}) is inside --local-dir {local_dir}; keep the downloader's cache out of the target "
            "by setting HF_HOME elsewhere"
        )
    return LocalBackend(root, hub)


def check_output_paths(*paths: Path | None) -> None:
    """Refuse summary paths that cannot be files before the operation runs, not after."""
    for flag, path in zip(("--summary-json", "--summary-md"), paths, strict=True):
        if path is not None and path.is_dir():
            raise UsageError(f"{flag} {path} is a directory; name a file, such as {path / 'summary'}")


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds (0 or more)")
    return seconds


def configure_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    log.setLevel(logging.INFO)


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.levelno >= logging.ERROR or message.startswith(("error:", "interrupted:")):
            return message
        if record.levelno >= logging.WARNING:
            return f"warning: {message}"
        return message


@contextmanager
def stop_on_signals(cancel: threading.Event) -> Iterator[None]:
    """SIGINT/SIGTERM ask the run to stop: workers notice within a chunk, the engine cleans up."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if cancel.is_set():
            os._exit(128 + signum)  # a second signal: stop now, the next run cleans up
        log.warning("received %s; stopping and cleaning up", signal.Signals(signum).name)
        cancel.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
