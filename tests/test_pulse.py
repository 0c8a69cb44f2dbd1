"""When the next model of a local run starts (`modal_jobs.pulse`), asked at moments the test chooses."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from modal_jobs.pulse import FETCH_THREADS, QUIET_SECONDS, Pulse, may_start, next_look, on_file_worker

JUST = 0.01


def test_a_model_receiving_bytes_holds_the_next_back_until_it_goes_quiet():
    running = Pulse()
    assert not may_start([running], 3, running.heard), "making room and linking: about to receive"
    with running.transfer():
        running.beat()
        assert not may_start([running], 3, running.heard + QUIET_SECONDS - JUST)
        assert may_start([running], 3, running.heard + QUIET_SECONDS + JUST), "stuck: no byte since"


def test_the_wait_for_a_transfers_first_byte_counts_as_receiving():
    running = Pulse()
    quiet_since_created = running.heard + QUIET_SECONDS + JUST
    time.sleep(2 * JUST)
    with running.transfer():
        assert not may_start([running], 3, quiet_since_created), "the request is on its way"


def test_a_model_whose_transfers_are_over_holds_nothing_back():
    running = Pulse()
    with running.transfer():
        running.beat()
    assert may_start([running], 3, running.heard), "its last hashes run beside the next model's transfers"


def test_a_transfer_that_reports_no_byte_through_python_holds_nothing_back_once_quiet():
    """hf_xet reports from its own threads: the engine never beats for it."""
    running = Pulse()
    with running.transfer():
        assert may_start([running], 3, running.heard + QUIET_SECONDS + JUST)


def test_never_more_than_the_limit():
    quiet = [Pulse(), Pulse()]
    later = max(pulse.heard for pulse in quiet) + QUIET_SECONDS + JUST
    assert may_start(quiet, 3, later)
    assert not may_start(quiet, 2, later)
    assert may_start([], 1, later)


def test_a_report_counts_only_on_a_thread_of_the_engines_file_workers():
    """By thread name: a pool named like the engine's file workers, and a thread named as hf_xet's appear in
    Python. That the reports come from those threads is test_download's Xet test."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix=FETCH_THREADS) as workers:
        assert workers.submit(on_file_worker).result()
    seen: list[bool] = []
    xet_like = threading.Thread(target=lambda: seen.append(on_file_worker()), name="Dummy-1")
    xet_like.start()
    xet_like.join()
    assert seen == [False]
    assert not on_file_worker(), "the main thread"


def test_a_models_last_transfer_ending_wakes_the_run_at_once():
    """The engine looks again when it is woken, not at its next poll: the next model starts as the last
    transfer of the one running ends (0.1 s a model sooner, on average, than a 0.2 s poll)."""
    over = threading.Event()
    running = Pulse(over)
    with running.transfer():
        with running.transfer():
            pass
        assert not over.is_set(), "another transfer of the model is still in flight"
    assert over.is_set()


def test_the_run_looks_again_when_the_first_model_holding_the_next_back_would_go_quiet():
    """At any clock reading (monotonic time is uptime: rounding differs from one magnitude to the next), a model
    stops holding the next back exactly when `next_look` said it would."""
    early, late = Pulse(), Pulse()
    with early.transfer(), late.transfer():
        for heard in (early.heard, 1000.0, 10000.5, 200000.0, 38929.25):
            early.heard, late.heard = heard, heard + 0.1
            assert next_look([early, late], heard) == pytest.approx(QUIET_SECONDS)
            assert next_look([early, late], heard + 0.05) == pytest.approx(QUIET_SECONDS - 0.05)
            quiet = heard + next_look([early, late], heard)
            assert not early.receiving(quiet) and late.receiving(quiet), heard
            assert next_look([early, late], quiet) == pytest.approx(0.1), "early is quiet now"
    assert next_look([], early.heard) == QUIET_SECONDS
