"""When the next model of a local run starts (`modal_jobs.pulse`), on a clock the test moves."""

from __future__ import annotations

import time

import pytest

from modal_jobs.pulse import QUIET_SECONDS, Pulse, may_start


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(time, "monotonic", clock)  # the pulse reads it as time.monotonic()
    return clock


def test_a_model_receiving_bytes_holds_the_next_back_until_it_goes_quiet(clock: Clock):
    running = Pulse()
    assert not may_start([running], 3), "making room and linking: about to receive"
    with running.transfer():
        for _ in range(20):
            clock.now += 0.1
            running.beat()
            assert not may_start([running], 3)
        clock.now += QUIET_SECONDS + 0.01  # stuck: no byte since
        assert may_start([running], 3)


def test_a_model_whose_transfers_are_over_holds_nothing_back(clock: Clock):
    running = Pulse()
    with running.transfer():
        running.beat()
    assert may_start([running], 3), "its last hashes run beside the next model's transfers"


def test_a_transfer_that_reports_no_byte_through_python_holds_nothing_back(clock: Clock):
    """hf_xet reports from its own threads: the engine never beats for it."""
    running = Pulse()
    with running.transfer():
        clock.now += QUIET_SECONDS + 0.01
        assert may_start([running], 3)


def test_never_more_than_the_limit(clock: Clock):
    quiet = [Pulse(), Pulse()]
    clock.now += QUIET_SECONDS + 0.01
    assert may_start(quiet, 3)
    assert not may_start(quiet, 2)
    assert may_start([], 1)
