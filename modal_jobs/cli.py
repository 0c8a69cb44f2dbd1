"""`python -m modal_jobs <command> [options]`: the one driver behind nox, the workflows, `modal run` and people.

Only the summary goes to stdout (as JSON with `--json`); logs and progress go to stderr. Every entry
point calls `main`, which maps errors to exit codes: 0 done, 1 a model failed or is damaged,
2 bad input or an unusable target, 130 stopped by SIGINT/SIGTERM. The flags are `modal_jobs.cli_parser`.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from modal_jobs.backend import Backend, LocalBackend
from modal_jobs.cli_parser import build_parser, seed_command_line
from modal_jobs.deadlines import Deadlines, set_up_huggingface_hub
from modal_jobs.decide.states import loadable
from modal_jobs.errors import CacheError, InterruptedRun, TargetError, UsageError
from modal_jobs.hub import Hub
from modal_jobs.locking import asks_hub, check_lock_first
from modal_jobs.logs import configure_logging
from modal_jobs.messages import DOWNLOAD_COMMAND
from modal_jobs.model_dir import revision_dir
from modal_jobs.model_list import ModelList, is_valid_repo_id, load_model_list
from modal_jobs.operations import run
from modal_jobs.reader import ModelNotReady, locked_commit, model_path
from modal_jobs.reports import write_summaries
from modal_jobs.request import LockMode, Request
from modal_jobs.summary import Operation, Summary, render_json, render_text

if TYPE_CHECKING:
    from modal_jobs.volume import VolumeStore

log = logging.getLogger("modal_jobs")


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
    if args.operation == "unlock":
        return unlock_volume(args)
    try:
        summary = run_command(args, app_running=app_running)
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


def run_command(args: argparse.Namespace, *, app_running: bool) -> Summary:
    """One command, from parsed arguments to its summary; SIGINT/SIGTERM stop it cleanly."""
    cancel = threading.Event()
    operation = Operation(args.operation)
    check_output_paths(args.summary_json, args.summary_md)
    with stop_on_signals(cancel):
        model_list = load_model_list(args.model_list)
        request = request_from(args, operation)
        check_lock_first(request, model_list)  # before a target is opened, let alone created
        hub = Hub(cancel=cancel, deadlines=deadlines_from(args))
        if asks_hub(request, model_list):
            set_up_huggingface_hub(hub.deadlines)
        wants_target = operation is not Operation.LOCK and (
            operation is not Operation.PLAN or args.local_dir is not None or args.volume
        )
        writes = operation is Operation.DOWNLOAD and not request.dry_run
        backend = (
            open_backend(args.local_dir, model_list, hub, create=writes, app_running=app_running)
            if wants_target
            else None
        )
        return run(request, model_list, backend, hub, cancel)


def request_from(args: argparse.Namespace, operation: Operation) -> Request:
    """What the command asks for; a command without a flag gets its default. Reads `--base-model-list`."""
    base = load_model_list(args.base_model_list) if getattr(args, "base_model_list", None) else None
    if getattr(args, "locked", False):
        lock_mode = LockMode.LOCKED
    elif getattr(args, "frozen", False):
        lock_mode = LockMode.FROZEN
    else:
        lock_mode = LockMode.UPDATE
    return Request(
        operation=operation,
        sizes=tuple(args.model_size),
        repo_ids=tuple(args.model),
        dry_run=getattr(args, "dry_run", False),
        yes=getattr(args, "yes", False),
        prune=getattr(args, "prune", False),
        lock_wait=getattr(args, "lock_wait", 60.0),
        base_model_list=base,
        lock_mode=lock_mode,
        upgrade=getattr(args, "upgrade", False),
        check=getattr(args, "check", False),
    )


def deadlines_from(args: argparse.Namespace) -> Deadlines:
    """`--stall-timeout` and `--connect-timeout`, else the environment's, else the defaults."""
    defaults = Deadlines.from_env()
    return Deadlines(
        stall_seconds=getattr(args, "stall_timeout", None) or defaults.stall_seconds,
        connect_seconds=getattr(args, "connect_timeout", None) or defaults.connect_seconds,
    )


def print_path(args: argparse.Namespace) -> int:
    """`path`: the directory a reader loads, or its one-line refusal (exit 1). Reads a few small files, nothing else.

    With `--local-dir`, the reader itself answers; without, the volume is read through Modal's API, as
    `list` reads it, and the answer is the path a container would load.
    """
    try:
        if args.local_dir is not None:
            found = str(model_path(args.local_dir, args.model, args.commit, lock=args.lock))
        else:
            from modal_jobs.volume import open_volume_store

            commit = locked_commit(args.lock, args.model) if args.lock is not None else args.commit
            found = volume_path(open_volume_store(load_model_list(args.model_list).volume), args.model, commit)
    except ModelNotReady as exc:
        log.error("error: %s", exc)
        return 1
    except CacheError as exc:
        log.error("error: %s", exc)
        return exc.exit_code
    sys.stdout.write(f"{found}\n")
    return 0


def unlock_volume(args: argparse.Namespace) -> int:
    """`unlock`: break the volume's writer lease (`modal_jobs.volume_lease`); without --yes, say who holds it."""
    from modal_jobs.volume_lease import unlock

    try:
        log.info("%s", unlock(load_model_list(args.model_list).volume.name, yes=args.yes))
    except CacheError as exc:
        log.error("error: %s", exc)
        return exc.exit_code
    return 0


def volume_path(store: VolumeStore, repo_id: str, commit: str | None) -> str:
    """What `reader.model_path` would return in a container: the volume's pointer and manifest, read from here."""
    if not is_valid_repo_id(repo_id):
        raise UsageError(f"{repo_id!r} is not a repo id; pass owner/name, such as Qwen/Qwen3-TTS-12Hz-0.6B-Base")
    name = repo_id.split("/")[1]
    where = f"{store.target}/{name}"
    absent = store.absent()
    if absent is not None:
        raise ModelNotReady(f"{repo_id}: absent: {absent}; run `{DOWNLOAD_COMMAND}` to cache it")
    kind = store.top().get(name)
    found = loadable(store.held(name, kind) if kind is not None else None, repo_id, commit, where)
    if isinstance(found, str):
        raise ModelNotReady(found)
    return str(revision_dir(Path(where), found.name))


def open_backend(
    local_dir: Path | None, model_list: ModelList, hub: Hub, *, create: bool = False, app_running: bool = False
) -> Backend:
    """The target: `--local-dir`, else the Modal Volume the list names (created only by a download that writes)."""
    if local_dir is None:
        from modal_jobs.modal_backend import open_volume_backend

        return open_volume_backend(model_list, create=create, app_running=app_running, env=hub.container_env())
    target = local_dir.expanduser().absolute()
    if target.exists() and not target.is_dir():
        raise TargetError(f"--local-dir {local_dir} is not a directory; pass a directory (download creates it)")
    hf_home = Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface").absolute()
    if hf_home == target or target in hf_home.parents:
        raise TargetError(
            f"HF_HOME ({hf_home}) is inside --local-dir {local_dir}; keep the downloader's cache out of the target "
            "by setting HF_HOME elsewhere"
        )
    return LocalBackend(target, hub)


def check_output_paths(*paths: Path | None) -> None:
    """Refuse summary paths that cannot be files before the operation runs, not after."""
    for flag, path in zip(("--summary-json", "--summary-md"), paths, strict=True):
        if path is not None and path.is_dir():
            raise UsageError(f"{flag} {path} is a directory; name a file, such as {path / 'summary'}")


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

    def note(signum: int, frame: FrameType | None) -> None:
        """Nothing to do: the wakeup fd carries the signal to the watcher."""

    watcher = threading.Thread(target=_watch_signals, args=(read_end, cancel), name="signals", daemon=True)
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


def _watch_signals(read_end: int, cancel: threading.Event) -> None:
    """The watcher thread: a first signal asks the run to stop; a second ends the process at once."""
    while True:
        try:
            data = os.read(read_end, 1)
        except OSError:
            return
        if not data or data == b"\xff":  # closed, or our own "stop watching"
            return
        signum = data[0]
        if cancel.is_set():  # a second signal (or nox's SIGTERM after its SIGINT): stop now, the next run cleans up
            log.error(
                "interrupted: a second %s ended the run at once; what was complete stays complete, and the next "
                "run cleans up the rest",
                signal.Signals(signum).name,
            )
            os._exit(128 + signum)
        log.warning("received %s; stopping and cleaning up", signal.Signals(signum).name)
        cancel.set()
