"""One writer per Modal Volume, across machines: the lease in a `modal.Dict`, on its stand-in.

Two "machines" are two `ModalBackend`s (or two `VolumeLease`s) in this process, sharing one
`tests.modal_dict_stand_in.DictServer`, as two callers share the named Dict on Modal. Time is a
`Clock` the test moves: nothing here sleeps until a lease expires.
"""

from __future__ import annotations

import getpass
import logging
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from local_hub.server import LocalHub
from modal_jobs.errors import InterruptedRun, TargetError, UsageError
from modal_jobs.modal_backend import ModalBackend
from modal_jobs.model_list import VolumeSpec, parse_model_list
from modal_jobs.operations import run
from modal_jobs.request import Request
from modal_jobs.summary import Operation
from modal_jobs.volume import VolumeStore
from modal_jobs.volume_lease import LEASE_SECONDS, HeldLease, Lease, VolumeLease, break_lease, renewed_key
from modal_jobs.writer_lock import Writer, this_writer
from tests.conftest import BIG, MODEL_LIST, ROOT, SMALL, TOKENIZER, Repos, assert_complete, tree
from tests.modal_stand_ins import MOUNT, DirVolume
from tests.twin_targets import Twins, stand_in

VOLUME = VolumeSpec().name
ME = f"{getpass.getuser()}@{socket.gethostname()}, pid {os.getpid()}"


class Clock:
    """Wall-clock time as the test sets it."""

    def __init__(self, now: float = 1_790_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def twins(hub: LocalHub, repos: Repos, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Twins:
    return stand_in(hub, tmp_path, monkeypatch, parse_model_list(MODEL_LIST, tmp_path / "models.toml"))


def volume_backend(twins: Twins, lease: VolumeLease, volume: DirVolume | None = None) -> ModalBackend:
    """Another machine's view of the same volume: its own client, the same Dict."""
    store = VolumeStore(volume or DirVolume(twins.volume_root), VolumeSpec(mount=MOUNT))
    return ModalBackend(store, twins.containers, lease)


def waiting_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "waiting up to" in r.getMessage()]


# -- two writers -------------------------------------------------------------------------------


def test_a_second_writer_waits_then_is_refused_and_the_first_finishes_intact(
    twins: Twins, repos: Repos, caplog: pytest.LogCaptureFixture
):
    """While the first run's containers are about to start, a second machine's download waits
    `--lock-wait`, says once who holds the volume, then exits 2 with one line; it never planned."""
    caplog.set_level(logging.INFO, logger="modal_jobs")
    second_volume = DirVolume(twins.volume_root)
    refused: list[TargetError] = []

    def second_machine() -> None:
        twins.containers.before_start = None
        second = volume_backend(twins, twins.lease("ci"), second_volume)
        with pytest.raises(TargetError) as caught:
            run(Request(Operation.DOWNLOAD, lock_wait=0.05), twins.model_list, second, twins.hub)
        refused.append(caught.value)

    twins.containers.before_start = second_machine
    _, first = twins.backends()
    summary = run(Request(Operation.DOWNLOAD), twins.model_list, first, twins.hub)

    assert {row.status for row in summary.models} == {"downloaded"}
    for repo_id in (BIG, SMALL, TOKENIZER):
        assert_complete(twins.volume_root, repo_id, repos.files[repo_id])
    (error,) = refused
    message = str(error)
    assert error.exit_code == 2
    assert "\n" not in message
    assert message.startswith(f"another run ({ME}, download) is working on the Modal Volume '{VOLUME}' since ")
    assert "pass a longer --lock-wait" in message
    assert "break it now with `python3 tools/nox_locked.py -s unlock -- --yes`" in message
    assert len(waiting_lines(caplog)) == 1, "the wait is announced once"
    assert second_volume.calls == [("hydrate", "")], "the second run never surveyed the volume"
    assert twins.writers.value(VOLUME) is None, "the first run released its lease"


def test_a_writer_run_makes_four_calls_to_the_dict(twins: Twins):
    """Uncontended and shorter than a renewal: the lookup, one put to take it, and put-and-pop to release it."""
    run(Request(Operation.DOWNLOAD), twins.model_list, twins.backends()[1], twins.hub)
    assert twins.writers.methods("twins") == ["lookup", "put", "put", "pop"]
    keys = [key for _, method, key in twins.writers.calls if method != "lookup"]
    assert keys[0] == keys[2] == VOLUME
    assert keys[1].startswith(f"{VOLUME}/ended/")


def test_list_plan_and_dry_runs_never_touch_the_lease(twins: Twins):
    run(Request(Operation.DOWNLOAD, sizes=("0.6B",)), twins.model_list, twins.backends()[1], twins.hub)
    calls = len(twins.writers.calls)
    for request in (
        Request(Operation.LIST),
        Request(Operation.PLAN),
        Request(Operation.DOWNLOAD, dry_run=True),
        Request(Operation.CLEAR, dry_run=True),
    ):
        run(request, twins.model_list, twins.backends()[1], twins.hub)
    assert len(twins.writers.calls) == calls, twins.writers.calls[calls:]
    assert twins.containers.count() == 2


def test_a_stop_during_the_wait_ends_it_with_130_and_nothing_changed(twins: Twins):
    holder = twins.lease("laptop").acquire(0, threading.Event(), "download")
    cancel = threading.Event()
    lease = VolumeLease(VOLUME, twins.writers.opener("ci", lambda method, _: cancel.set() if method == "get" else None))
    with pytest.raises(InterruptedRun) as caught:
        run(
            Request(Operation.DOWNLOAD, lock_wait=600),
            twins.model_list,
            volume_backend(twins, lease),
            twins.hub,
            cancel,
        )
    assert caught.value.exit_code == 130
    assert "interrupted while waiting for another run; nothing was changed" in str(caught.value)
    assert tree(twins.volume_root) == {}
    assert twins.containers.started == []
    assert twins.writers.value(VOLUME)["token"] == holder.mine.token, "the holder's lease is untouched"


# -- a run that died, or stalled -----------------------------------------------------------------


def test_the_lease_of_a_killed_run_is_taken_over_once_it_expires(
    twins: Twins, repos: Repos, caplog: pytest.LogCaptureFixture
):
    clock = Clock()
    twins.lease("laptop", clock=clock).acquire(0, threading.Event(), "download")  # then killed: never renewed
    clock.now += LEASE_SECONDS - 1
    with pytest.raises(TargetError, match="is working on the Modal Volume"):
        run(
            Request(Operation.DOWNLOAD, lock_wait=0),
            twins.model_list,
            volume_backend(twins, twins.lease("ci", clock=clock)),
            twins.hub,
        )
    assert twins.containers.started == []

    clock.now += 2
    summary = run(
        Request(Operation.DOWNLOAD), twins.model_list, volume_backend(twins, twins.lease("ci", clock=clock)), twins.hub
    )
    assert {row.status for row in summary.models} == {"downloaded"}
    assert_complete(twins.volume_root, SMALL, repos.files[SMALL])
    assert any("took over the lease of a run that stopped renewing it" in r.getMessage() for r in caplog.records)
    assert twins.writers.value(VOLUME) is None


def test_of_two_runs_taking_over_one_expired_lease_one_wins_and_keeps_it(twins: Twins):
    """Both read the dead run's expired lease; the first to end it takes the volume. The other, late,
    must not pop the winner's fresh lease (as a plain get-then-pop would): it waits, then is refused."""
    clock = Clock()
    twins.lease("dead", clock=clock).acquire(0, threading.Event(), "download")
    clock.now += LEASE_SECONDS + 1
    winner: list[HeldLease] = []

    def first_taker_acts(method: str, key: object) -> None:
        if not winner and method == "get" and str(key).startswith(f"{VOLUME}/renewed/"):
            winner.append(twins.lease("ci", clock=clock).acquire(0, threading.Event(), "download"))

    late = VolumeLease(VOLUME, twins.writers.opener("laptop", first_taker_acts), clock=clock, poll=0.01)
    with pytest.raises(TargetError, match=r"another run \(.*, download\) is working on"):
        late.acquire(0, threading.Event(), "verify")
    assert twins.writers.value(VOLUME)["token"] == winner[0].mine.token


def test_a_renewed_lease_is_not_taken_over(twins: Twins):
    clock = Clock()
    held = twins.lease("laptop", clock=clock).acquire(0, threading.Event(), "download")
    clock.now += 60
    assert held.renew()
    assert twins.writers.value(renewed_key(VOLUME, held.mine.token)) == clock.now + LEASE_SECONDS
    clock.now += LEASE_SECONDS - 10  # past the first expiry, not the renewed one
    with pytest.raises(TargetError, match="is working on"):
        twins.lease("ci", clock=clock).acquire(0, threading.Event(), "download")


def test_a_run_whose_lease_was_taken_over_stops_and_releases_nothing(twins: Twins, caplog: pytest.LogCaptureFixture):
    """A holder stalled past its expiry finds, at its next renewal, that another run has the volume:
    it asks its run to stop (the cancel event) and logs why; its release leaves the new lease alone."""
    clock = Clock()
    stalled_cancel = threading.Event()
    stalled = twins.lease("laptop", clock=clock).acquire(0, stalled_cancel, "download")
    clock.now += LEASE_SECONDS + 1
    taker = twins.lease("ci", clock=clock).acquire(0, threading.Event(), "verify")

    clock.now -= LEASE_SECONDS  # even a renewal in time finds the lease gone
    assert not stalled.renew()
    assert stalled_cancel.is_set()
    (error,) = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert f"is no longer this run's (it was taken over or broken; now held by {ME}, verify)" in error
    stalled.release()
    assert twins.writers.value(VOLUME)["token"] == taker.mine.token
    taker.release()
    assert twins.writers.value(VOLUME) is None


def test_a_lease_that_expired_before_its_renewal_stops_the_run(twins: Twins):
    clock = Clock()
    cancel = threading.Event()
    held = twins.lease("laptop", clock=clock).acquire(0, cancel, "download")
    clock.now += LEASE_SECONDS
    assert not held.renew()
    assert cancel.is_set()


def test_a_renewal_that_fails_is_tried_again_until_the_lease_expires(twins: Twins, caplog: pytest.LogCaptureFixture):
    clock = Clock()
    cancel = threading.Event()
    unreachable = threading.Event()

    def flaky(method: str, key: object) -> None:
        if unreachable.is_set():
            raise ConnectionError("Modal unreachable")

    held = VolumeLease(VOLUME, twins.writers.opener("laptop", flaky), clock=clock).acquire(0, cancel, "download")
    unreachable.set()
    clock.now += 60
    assert held.renew() and not cancel.is_set()
    assert any("could not renew the writer lease" in r.getMessage() for r in caplog.records)
    clock.now += LEASE_SECONDS
    assert not held.renew() and cancel.is_set()


def test_a_put_the_client_retried_after_it_was_stored_is_still_ours(twins: Twins):
    handle = twins.writers.open("laptop")
    handle.lose_next_answer = True
    held = VolumeLease(VOLUME, lambda: handle).acquire(0, threading.Event(), "download")
    assert twins.writers.value(VOLUME)["token"] == held.mine.token
    held.release()
    assert twins.writers.value(VOLUME) is None


def renewals() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "lease-renewal"]


def test_the_renewal_thread_ends_with_the_run(twins: Twins):
    with twins.lease("laptop").held(0, threading.Event(), "clear"):
        (thread,) = renewals()
        assert thread.daemon, "a renewal never keeps a finished process alive"
    assert renewals() == []
    assert twins.writers.value(VOLUME) is None


# -- breaking a lease ------------------------------------------------------------------------------


def test_unlock_says_who_holds_it_and_breaks_it_only_with_yes(twins: Twins):
    clock = Clock()
    cancel = threading.Event()
    holder = twins.lease("laptop", clock=clock).acquire(0, cancel, "download")
    writers = twins.writers.open("admin")
    with pytest.raises(UsageError) as caught:
        break_lease(writers, VOLUME, yes=False)
    assert str(caught.value) == (
        f"the Modal Volume '{VOLUME}' is held by {ME}, download since 2026-09-21 14:13:20 UTC; "
        "add --yes to break the lease (that run, if alive, stops at its next renewal)"
    )
    assert twins.writers.value(VOLUME) is not None

    said = break_lease(writers, VOLUME, yes=True)
    assert said.startswith(f"broke the writer lease on the Modal Volume '{VOLUME}', held by {ME}, download")
    assert twins.writers.value(VOLUME) is None
    assert not holder.renew() and cancel.is_set(), "a live holder stops at its next renewal"
    assert break_lease(writers, VOLUME, yes=True).startswith("no run holds the writer lease")


def test_an_unreadable_lease_is_refused_by_name_and_unlock_removes_it(twins: Twins):
    twins.writers.open("someone").put(VOLUME, {"token": 7})
    with pytest.raises(TargetError) as caught:
        twins.lease("ci").acquire(0, threading.Event(), "download")
    assert str(caught.value).startswith(
        f"another run (its record unreadable) is working on the Modal Volume '{VOLUME}';"
    )
    assert str(caught.value).endswith("never expires: break it with `python3 tools/nox_locked.py -s unlock -- --yes`")
    break_lease(twins.writers.open("admin"), VOLUME, yes=True)
    twins.lease("ci").acquire(0, threading.Event(), "download").release()


def test_a_lease_record_is_read_as_hostile_input():
    good = Lease("t" * 32, Writer("a@b", 1, "download", 1.0), 2.0).to_record()
    assert Lease.from_record(good) == Lease("t" * 32, Writer("a@b", 1, "download", 1.0), 2.0)
    bad: object
    for bad in (
        None,
        [],
        {**good, "expires": float("nan")},
        {**good, "pid": True},
        {**good, "token": ""},
        {**good, "who": "a@b\nerror: forged"},
    ):
        assert Lease.from_record(bad) is None


def test_unlock_without_credentials_is_one_line(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODAL_", "GITHUB_"))}
    env.update(HOME=str(tmp_path), PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [sys.executable, "-m", "modal_jobs", "unlock", "--yes"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: no Modal credentials found; run `modal setup` (or set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET)"
    )


def test_a_writer_in_github_actions_names_its_run():
    github = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_SERVER_URL": "https://github.com",
        "GITHUB_REPOSITORY": "owner/repo",
        "GITHUB_RUN_ID": "123",
    }
    writer = this_writer("download", 1.0, github)
    assert writer.describe() == f"{ME}, download, https://github.com/owner/repo/actions/runs/123"
    assert this_writer("download", 1.0, {}).describe() == f"{ME}, download"
