"""`python -m modal_jobs <command> [options]`: the one driver behind nox, the workflows, `modal run` and people.

Only the summary goes to stdout (as JSON with `--json`); logs and progress go to stderr. Every entry
point calls `main`, which maps errors to exit codes: 0 done, 1 a model failed or is damaged,
2 bad input or an unusable target, 130 stopped by SIGINT/SIGTERM.
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
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import NoReturn

from modal_jobs.backend import Backend, LocalBackend
from modal_jobs.catalog import DEFAULT_CATALOG, Catalog, load_catalog
from modal_jobs.errors import CacheError, InterruptedRun, TargetError, UsageError
from modal_jobs.hub import CONNECT_SECONDS_ENV, STALL_SECONDS_ENV, Deadlines, Hub, set_up_huggingface_hub
from modal_jobs.logs import configure_logging
from modal_jobs.operations import run
from modal_jobs.reader import ModelNotReady, model_path
from modal_jobs.request import LockMode, Request
from modal_jobs.summary import Operation, render_json, render_text, write_summaries

log = logging.getLogger("modal_jobs")

OPERATIONS = {
    "download": "fetch the selected models, skipping what is complete and repairing what is not",
    "lock": "resolve what models.toml changed and write models.lock (--upgrade moves branches; --check compares)",
    "plan": "check the model list against the Hub and say what merging it would change (no target needed)",
    "list": "show every model of the list with its state on the target, and directories no entry owns",
    "verify": "re-hash what is on the target against each manifest",
    "clear": "remove the selected models (everything, with no selection); needs --yes",
    "path": "print the directory to load a model from (what the inference service's reader returns)",
}

# The flags of the script this cache grew from (`modal run download_models.py --model-size 0.6B`,
# `--list-only`, `--clear`): people arrive with them in their shell history. Each stands for a command.
SEED_FLAGS = {"--list-only": "list", "--clear": "clear"}
SEED_HELP = """aliases of the commands, as the original download_models.py took them:
  --model-size LABEL [options]   download --model-size LABEL [options]
  --list-only [options]          list [options]
  --clear [options]              clear [options] (removes only with --yes)"""


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineErrors(
        prog="python -m modal_jobs",
        description="Keep Qwen3-TTS model weights cached, verified, on a Modal Volume or a local directory.",
        epilog=SEED_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="operation", required=True, metavar="COMMAND")
    for name, help_text in OPERATIONS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        if name == "path":
            add_path_arguments(sub)
            continue
        target = sub.add_argument_group("target")
        target.add_argument(
            "--local-dir", type=Path, metavar="DIR", help="work on this directory instead of the Modal Volume"
        )
        if name == "plan":
            target.add_argument(
                "--volume", action="store_true", help="also plan against the Modal Volume (needs Modal credentials)"
            )
            target.add_argument(
                "--base-catalog",
                type=Path,
                metavar="FILE",
                help="the model list before the change (a pull request's base branch); rows say what changed",
            )
        target.add_argument(
            "--catalog",
            type=Path,
            default=DEFAULT_CATALOG,
            metavar="FILE",
            help="the model list (default: ./models.toml)",
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
            sub.add_argument("--dry-run", action="store_true", help="say what would happen (the plan); change nothing")
        if name == "download":
            sub.add_argument(
                "--prune",
                action="store_true",
                help="also remove model directories the cache wrote for repos the list no longer names",
            )
        if name == "clear":
            sub.add_argument("--yes", action="store_true", help="really remove (without it, clear only refuses)")
        if name == "lock":
            sub.add_argument(
                "--upgrade",
                action="store_true",
                help="move branches and tags to their current commits (of --model, or all)",
            )
            sub.add_argument(
                "--check",
                action="store_true",
                help="exit 1 when models.lock does not match models.toml; asks the Hub nothing",
            )
        if name in ("download", "plan", "verify", "list"):
            pinned = sub.add_argument_group("models.lock").add_mutually_exclusive_group()
            pinned.add_argument(
                "--locked", action="store_true", help="refuse (exit 2) when models.lock does not match models.toml"
            )
            pinned.add_argument("--frozen", action="store_true", help="use models.lock as it is, without checking it")
        if name in ("download", "plan", "list", "lock"):
            hub = sub.add_argument_group("hub")
            hub.add_argument(
                "--stall-timeout",
                type=_positive_seconds,
                metavar="SECONDS",
                help=f"fail a model whose transfer makes no progress this long (default 120, or ${STALL_SECONDS_ENV})",
            )
            hub.add_argument(
                "--connect-timeout",
                type=_positive_seconds,
                metavar="SECONDS",
                help=f"give up when the Hub cannot be reached this long (default 10, or ${CONNECT_SECONDS_ENV})",
            )
        if name in ("download", "verify", "clear"):
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


def seed_command_line(argv: Sequence[str]) -> list[str]:
    """The command line with a seed flag turned into its command (see SEED_FLAGS); any other, unchanged.

    Only a command line that starts with an option is translated: `--model-size L …` alone is
    `download --model-size L …`, `--list-only …` is `list …`, `--clear …` is `clear …`.
    """
    args = list(argv)
    if not args or not args[0].startswith("-") or args[0] in ("-h", "--help"):
        return args
    named = sorted({SEED_FLAGS[a] for a in args if a in SEED_FLAGS})
    if len(named) > 1:
        raise UsageError("--list-only and --clear name two commands; pass one of them")
    if named:
        return [named[0], *(a for a in args if a not in SEED_FLAGS)]
    if any(a == "--model-size" or a.startswith("--model-size=") for a in args):
        return ["download", *args]
    return args


class _OneLineErrors(argparse.ArgumentParser):
    """Usage errors as one line that says where the help is, not the whole usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message}; see `{self.prog} --help`\n")


def main(argv: Sequence[str] | None = None, *, app_running: bool = False) -> int:
    """The driver: parse, run, print the summary, write the files; the exit code says how it went.

    `app_running`: called by `modal run`, which has started the Modal app already.
    """
    parser = build_parser()
    try:
        command_line = seed_command_line(sys.argv[1:] if argv is None else argv)
    except UsageError as exc:
        parser.error(str(exc))
    args = parser.parse_args(command_line)
    configure_logging()
    if args.operation == "path":
        return print_path(args)
    cancel = threading.Event()
    operation = Operation(args.operation)
    try:
        check_output_paths(args.summary_json, args.summary_md)
        with stop_on_signals(cancel):
            catalog = load_catalog(args.catalog)
            base = load_catalog(args.base_catalog) if getattr(args, "base_catalog", None) else None
            defaults = Deadlines.from_env()
            hub = Hub(
                cancel=cancel,
                deadlines=Deadlines(
                    stall_seconds=getattr(args, "stall_timeout", None) or defaults.stall_seconds,
                    connect_seconds=getattr(args, "connect_timeout", None) or defaults.connect_seconds,
                ),
            )
            set_up_huggingface_hub(hub.deadlines)
            wants_target = operation is not Operation.LOCK and (
                operation is not Operation.PLAN or args.local_dir is not None or args.volume
            )
            writes = operation is Operation.DOWNLOAD and not getattr(args, "dry_run", False)
            backend = (
                open_backend(args.local_dir, catalog, hub, create=writes, app_running=app_running)
                if wants_target
                else None
            )
            request = Request(
                operation=operation,
                sizes=tuple(args.model_size),
                repo_ids=tuple(args.model),
                dry_run=getattr(args, "dry_run", False),
                yes=getattr(args, "yes", False),
                prune=getattr(args, "prune", False),
                lock_wait=getattr(args, "lock_wait", 60.0),
                base_catalog=base,
                lock_mode=(
                    LockMode.LOCKED
                    if getattr(args, "locked", False)
                    else LockMode.FROZEN
                    if getattr(args, "frozen", False)
                    else LockMode.UPDATE
                ),
                upgrade=getattr(args, "upgrade", False),
                check=getattr(args, "check", False),
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


def add_path_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("model", metavar="REPO_ID", help="a repo id, such as Qwen/Qwen3-TTS-12Hz-0.6B-Base")
    sub.add_argument("--local-dir", type=Path, metavar="DIR", help="the target (default: the volume's mount)")
    sub.add_argument(
        "--catalog", type=Path, default=DEFAULT_CATALOG, metavar="FILE", help="the model list, for the mount"
    )
    expected = sub.add_mutually_exclusive_group()
    expected.add_argument("--commit", metavar="SHA", help="refuse any other commit than this one")
    expected.add_argument("--lock", type=Path, metavar="FILE", help="refuse any other commit than this lock names")


def print_path(args: argparse.Namespace) -> int:
    """`path`: the reader's answer on stdout, or its one-line error (exit 1). Reads a few small files, nothing else."""
    try:
        mount = args.local_dir if args.local_dir is not None else Path(load_catalog(args.catalog).volume.mount)
        found = model_path(mount, args.model, args.commit, lock=args.lock)
    except ModelNotReady as exc:
        log.error("error: %s", exc)
        return 1
    except CacheError as exc:
        log.error("error: %s", exc)
        return exc.exit_code
    sys.stdout.write(f"{found}\n")
    return 0


def open_backend(
    local_dir: Path | None, catalog: Catalog, hub: Hub, *, create: bool = False, app_running: bool = False
) -> Backend:
    """The target: `--local-dir`, else the Modal Volume the list names (created only by a download that writes)."""
    if local_dir is None:
        from modal_jobs.volume import open_volume_backend

        return open_volume_backend(catalog, create=create, app_running=app_running, env=hub.container_env())
    root = local_dir.expanduser().absolute()
    if root.exists() and not root.is_dir():
        raise TargetError(f"--local-dir {local_dir} is not a directory; pass a directory (download creates it)")
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


def _positive_seconds(value: str) -> float:
    seconds = _seconds(value)
    if seconds == 0:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds above 0")
    return seconds


@contextmanager
def stop_on_signals(cancel: threading.Event) -> Iterator[None]:
    """SIGINT/SIGTERM ask the run to stop: the main loop notices within 0.2 s and the run ends with 130.

    The handler itself does nothing: Python's C-level handler writes the signal number to a pipe
    (`signal.set_wakeup_fd`), and a watcher thread reads it, logs and sets `cancel`. Logging, locks
    and `Event.set` are not safe inside a signal handler: a stop request could be lost, or deadlock.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)

    def watch() -> None:
        while True:
            try:
                data = os.read(read_end, 1)
            except OSError:
                return
            if not data or data == b"\xff":  # closed, or our own "stop watching"
                return
            signum = data[0]
            if cancel.is_set():
                os._exit(128 + signum)  # a second signal: stop now, the next run cleans up
            log.warning("received %s; stopping and cleaning up", signal.Signals(signum).name)
            cancel.set()

    def note(signum: int, frame: FrameType | None) -> None:
        """Nothing to do: the wakeup fd carries the signal to the watcher."""

    watcher = threading.Thread(target=watch, name="signals", daemon=True)
    watcher.start()
    previous_fd = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    previous = {sig: signal.signal(sig, note) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        signal.set_wakeup_fd(previous_fd)
        os.write(write_end, b"\xff")
        watcher.join(timeout=1)
        os.close(write_end)
        os.close(read_end)
