"""One writer per Modal Volume, across machines: a lease in a `modal.Dict`, renewed while the run lives.

`download`, `verify` and `clear` hold it on the volume, as they hold a flock on a local target
(`modal_jobs.target_lock`); `list`, `plan`, `path`, dry runs and readers never touch it. Where it lives:
the Dict `qwen3-tts-model-cache-writers` in the volume's environment, created by the first writer,
keyed by the volume's name:

```
<volume>                   the lease: {"token": "<uuid>", "expires": 1790000300.0, <the Writer record>}
<volume>/renewed/<token>   its expiry as renewed by its holder, the only one who writes this key
<volume>/ended/<token>     who ended that lease: its holder ("released"), a taker, or `unlock`
```

The Dict offers no compare-and-swap: `put(key, value, skip_if_exists=True)` (stored only when the
key is absent, and says whether it was) is its one atomic decision. It decides twice:

- taking: `put(<volume>, mine, skip_if_exists=True)`; of two callers, one stores its lease;
- ending: a lease leaves `<volume>` only through `pop` by the one caller whose `put` of
  `<volume>/ended/<token>` stored it: its holder releasing it, a run taking over after it expired,
  or `unlock --yes`. So whoever pops finds that very lease there, never a newer one.

Renewal writes only the holder's own key; a put the client retried after it was applied
answers "not stored", so an answer naming our own token counts as ours. `modal_jobs.writer_lock`
has the wait and the message; docs/modal.md what is left to chance (clocks, a stalled holder).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import modal
import modal.exception

from modal_jobs.errors import TargetError, UsageError
from modal_jobs.volume import MODAL_SETUP, modal_errors, require_credentials
from modal_jobs.writer_lock import Writer, is_time, since, this_writer, unknown_writer, utc, wait_for_writer

log = logging.getLogger("modal_jobs")

LEASE_DICT = "qwen3-tts-model-cache-writers"
# A killed run's lease frees the volume this long after its last renewal.
LEASE_SECONDS = 300.0
RENEW_SECONDS = 60.0
# How often a second writer looks again: each look is two or three calls to the Dict.
POLL_SECONDS = 5.0
# Looks at once before waiting a poll: each one that does not return found an expired lease and ended it.
TAKE_TRIES = 4
UNLOCK_HINT = "python3 tools/nox_locked.py -s unlock -- --yes"


class LeaseDict(Protocol):
    """The part of `modal.Dict` the lease uses; tests pass a stand-in shared by their "machines"."""

    def get(self, key: Any, default: Any | None = None) -> Any: ...

    def put(self, key: Any, value: Any, *, skip_if_exists: bool = False) -> bool: ...

    def pop(self, key: Any, default: Any = None) -> Any: ...


@dataclass(frozen=True)
class Lease:
    """One writer's hold on the volume, as stored under the volume's name."""

    token: str
    writer: Writer
    expires: float

    def to_record(self) -> dict[str, Any]:
        return {"token": self.token, "expires": self.expires, **self.writer.to_record()}

    @classmethod
    def from_record(cls, value: object) -> Lease | None:
        """The lease a record holds, or None: anyone with access to the Dict may have written it."""
        writer = Writer.from_record(value)
        if writer is None or not isinstance(value, dict):
            return None
        token, expires = value.get("token"), value.get("expires")
        if not (isinstance(token, str) and 0 < len(token) <= 64 and is_time(expires)):
            return None
        return cls(token, writer, float(expires))


def writer_dict(create: bool) -> LeaseDict:
    """The Dict the leases live in, looked up (lazily, on its first call) where the volume's name resolves."""
    # modal.Dict's methods are wrapped for sync and async callers; called plainly, they answer as LeaseDict.
    return cast(LeaseDict, modal.Dict.from_name(LEASE_DICT, create_if_missing=create))


@dataclass
class VolumeLease:
    """The lease on one volume: taken before a run plans, renewed while it writes, released at its end."""

    volume: str
    open_dict: Callable[[], LeaseDict] = field(default=lambda: writer_dict(create=True))
    seconds: float = LEASE_SECONDS
    renew_every: float = RENEW_SECONDS
    poll: float = POLL_SECONDS
    clock: Callable[[], float] = time.time

    @property
    def where(self) -> str:
        return f"the Modal Volume {self.volume!r}"

    @contextmanager
    def held(self, wait_seconds: float, cancel: threading.Event, operation: str) -> Iterator[None]:
        """Hold the lease for the block; a renewal thread keeps it, and stops the run if it is lost."""
        held = self.acquire(wait_seconds, cancel, operation)
        renewing = threading.Thread(target=held.keep, name="lease-renewal", daemon=True)
        renewing.start()
        try:
            yield
        finally:
            held.release()  # stops the renewals first
            renewing.join(timeout=1.0)

    def acquire(self, wait_seconds: float, cancel: threading.Event, operation: str) -> HeldLease:
        """Take the lease, waiting up to `wait_seconds` for its holder; refuse (exit 2) after that."""
        with modal_errors(f"the writer lease on {self.where}"):
            writers = self.open_dict()
            now = self.clock()
            mine = Lease(uuid.uuid4().hex, this_writer(operation, now), now + self.seconds)
            wait_for_writer(
                lambda: self._take(writers, mine), wait_seconds, cancel, where=self.where, poll=self.poll, fix=self._fix
            )
        log.info("holding the writer lease on %s (lease %s)", self.where, mine.token[:8])
        return HeldLease(self, writers, mine, cancel, mine.expires)

    def _take(self, writers: LeaseDict, mine: Lease) -> Writer | None:
        """None when the lease is ours now; else who holds it."""
        holder: Writer | None = None
        for _ in range(TAKE_TRIES):
            if writers.put(self.volume, mine.to_record(), skip_if_exists=True):
                return None
            value = writers.get(self.volume)
            if value is None:
                continue  # released between the two calls
            held = Lease.from_record(value)
            if held is None:
                return unknown_writer()  # nothing to end: only `unlock --yes` removes it
            if held.token == mine.token:
                return None  # our own put, retried by the client after it was stored
            expires = self.expiry(writers, held)
            if expires > self.clock():
                return held.writer
            if end(writers, self.volume, held.token, mine.token):
                writers.pop(self.volume, None)
                log.warning(
                    "%s: took over the lease of a run that stopped renewing it (%s, since %s, expired %s)",
                    self.where, held.writer.describe(), utc(held.writer.started), utc(expires),
                )  # fmt: skip
            holder = held.writer
        return holder

    def expiry(self, writers: LeaseDict, held: Lease) -> float:
        renewed = writers.get(renewed_key(self.volume, held.token))
        return max(held.expires, float(renewed)) if is_time(renewed) else held.expires

    def _fix(self, holder: Writer) -> str:
        if holder.started <= 0:
            return f"; a lease that cannot be read never expires: break it with `{UNLOCK_HINT}`"
        return (
            f"; if that run died, its lease expires at most {self.seconds:.0f}s after its last renewal, "
            f"or break it now with `{UNLOCK_HINT}`"
        )


def renewed_key(volume: str, token: str) -> str:
    return f"{volume}/renewed/{token}"


def end(writers: LeaseDict, volume: str, token: str, by: str) -> bool:
    """Whether this caller is the one that ends lease `token` (and so may pop it): one caller ever is."""
    key = f"{volume}/ended/{token}"
    if writers.put(key, by, skip_if_exists=True):
        return True
    return bool(writers.get(key) == by)  # our own put, retried after it was stored


@dataclass
class HeldLease:
    """A lease this run holds: renewed by `keep` on its thread, ended by `release`."""

    lease: VolumeLease
    writers: LeaseDict
    mine: Lease
    cancel: threading.Event
    expires: float
    stop: threading.Event = field(default_factory=threading.Event)
    guard: threading.Lock = field(default_factory=threading.Lock)  # a renewal and the release never interleave
    renewed: bool = False

    def keep(self) -> None:
        """The renewal thread: renew every `renew_every` seconds until released or lost."""
        while not self.stop.wait(self.lease.renew_every):
            if not self.renew():
                return

    def renew(self) -> bool:
        """Extend the lease; False when it is no longer this run's, which then stops (the cancel event)."""
        with self.guard:
            if self.stop.is_set():
                return False
            now = self.lease.clock()
            if now >= self.expires:
                return self._lost(f"it expired at {utc(self.expires)} before it could be renewed")
            try:
                with modal_errors("renewing the lease"):
                    current = Lease.from_record(self.writers.get(self.lease.volume))
                    if current is None or current.token != self.mine.token:
                        holder = current.writer.describe() if current else "no one"
                        return self._lost(f"it was taken over or broken; now held by {holder}")
                    self.writers.put(renewed_key(self.lease.volume, self.mine.token), now + self.lease.seconds)
            except Exception as exc:  # the thread's edge: a renewal that failed is tried again until the lease expires
                log.warning("could not renew the writer lease on %s (%s); trying again", self.lease.where, exc)
                return True
            self.expires, self.renewed = now + self.lease.seconds, True
            return True

    def _lost(self, why: str) -> bool:
        log.error(
            "the writer lease on %s is no longer this run's (%s); stopping, since another run may write there",
            self.lease.where, why,
        )  # fmt: skip
        self.cancel.set()
        return False

    def release(self) -> None:
        """End the lease if it is still ours; a lease taken over or broken is left to its new holder."""
        self.stop.set()
        volume = self.lease.volume
        with self.guard:
            try:
                with modal_errors("releasing the lease"):
                    if end(self.writers, volume, self.mine.token, "released"):
                        self.writers.pop(volume, None)
                    if self.renewed:
                        self.writers.pop(renewed_key(volume, self.mine.token), None)
            except Exception as exc:  # never hides what ended the run; the lease expires by itself
                log.warning(
                    "could not release the writer lease on %s (%s); it expires at %s",
                    self.lease.where, exc, utc(self.expires),
                )  # fmt: skip


def break_lease(writers: LeaseDict, volume: str, *, yes: bool, clock: Callable[[], float] = time.time) -> str:
    """`unlock`: end whatever lease the volume has, whoever holds it (with `yes`); what happened, as a line.

    Its holder, if still alive, finds it lost at its next renewal and stops.
    """
    where = f"the Modal Volume {volume!r}"
    value = writers.get(volume)
    if value is None:
        return f"no run holds the writer lease on {where}; nothing to unlock"
    held = Lease.from_record(value)
    holder = held.writer if held else unknown_writer()
    said = f"{where} is held by {holder.describe()}{since(holder)}"
    if not yes:
        raise UsageError(f"{said}; add --yes to break the lease (that run, if alive, stops at its next renewal)")
    by = f"unlock by {this_writer('unlock', clock()).describe()} ({uuid.uuid4().hex})"
    if held is not None and not end(writers, volume, held.token, by):
        raise TargetError(f"{where}: its lease ended while breaking it; run unlock again to see who holds it now")
    writers.pop(volume, None)
    return f"broke the writer lease on {where}, held by {holder.describe()}{since(holder)}"


def unlock(volume: str, *, yes: bool) -> str:
    """`python -m modal_jobs unlock`: needs credentials; a volume no writer ever leased has nothing to break."""
    require_credentials(hint=MODAL_SETUP)
    with modal_errors(f"the writer lease on the Modal Volume {volume!r}"):
        try:
            return break_lease(writer_dict(create=False), volume, yes=yes)
        except modal.exception.NotFoundError:
            return f"no run holds the writer lease on the Modal Volume {volume!r}; nothing to unlock"
