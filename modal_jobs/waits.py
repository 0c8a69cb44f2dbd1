"""Waiting for the Hub or the target while the run can still be stopped.

Every request that gathers facts goes through `gather` or `waiting`, and the writer's file jobs
through `run_parallel`: the calling thread only waits, looking at `cancel` every `POLL_SECONDS`, so
a stop never waits on a request the Hub holds open.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_EXCEPTION, Executor, Future, ThreadPoolExecutor, wait
from typing import TypeVar

from modal_jobs.errors import Cancelled, ModelFailed
from modal_jobs.messages import shorten

# Models resolved against the Hub at once while planning.
RESOLVE_WORKERS = 4
# How often a thread waiting on the Hub looks whether the run was asked to stop.
POLL_SECONDS = 0.2

T = TypeVar("T")


def gather(calls: Mapping[str, Callable[[], T]], cancel: threading.Event) -> dict[str, T | ModelFailed]:
    """Each call's result, or the ModelFailed it raised: a few at a time on a pool, while this thread waits."""
    if not calls:
        return {}
    pool = ThreadPoolExecutor(max_workers=min(RESOLVE_WORKERS, len(calls)), thread_name_prefix="resolve")
    futures = {key: pool.submit(_settled, call) for key, call in calls.items()}
    try:
        return {key: _result(future, cancel) for key, future in futures.items()}
    finally:
        # On a stop, what is queued never starts, and nothing waits for what is in flight.
        pool.shutdown(wait=not cancel.is_set(), cancel_futures=True)


def waiting(call: Callable[[], T], cancel: threading.Event) -> T:
    """`call()` on a thread of its own, this one waiting as in `gather`: for the Hub or the volume to answer."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wait")
    try:
        return _result(pool.submit(call), cancel)
    finally:
        pool.shutdown(wait=False)


def run_parallel(
    jobs: Iterable[tuple[str, T]], work: Callable[[T], None], pool: Executor, cancel: threading.Event
) -> None:
    """`work` on each job on a shared pool, noticing `cancel` as `gather` does; ModelFailed names what failed."""
    failures: list[str] = []
    futures = {pool.submit(work, item): label for label, item in jobs}
    pending = set(futures)
    try:
        while pending:
            done, pending = wait(pending, timeout=POLL_SECONDS, return_when=FIRST_EXCEPTION)
            for future in done:
                exc = future.exception()
                if isinstance(exc, Cancelled):
                    cancel.set()
                elif isinstance(exc, ModelFailed):
                    failures.append(f"{futures[future]}: {exc}")
                elif exc is not None:
                    failures.append(f"{futures[future]}: {type(exc).__name__}: {exc}")
            stop_if(cancel)
    finally:
        for future in pending:
            future.cancel()  # not started yet: never starts; in flight: notices `cancel` at its next step
    if failures:
        raise ModelFailed(f"{len(failures)} file(s) failed: {shorten(failures)}")


def stop_if(cancel: threading.Event) -> None:
    """Raise Cancelled when the run was asked to stop: called between steps that change the target."""
    if cancel.is_set():
        raise Cancelled


def _settled(call: Callable[[], T]) -> T | ModelFailed:
    try:
        return call()
    except ModelFailed as exc:
        return exc


def _result(future: Future[T], cancel: threading.Event) -> T:
    while True:
        stop_if(cancel)
        try:
            return future.result(timeout=POLL_SECONDS)
        except TimeoutError:
            continue
