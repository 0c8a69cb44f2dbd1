"""Faults a test injects into the hub: error bursts, throttling, corrupt or stalled bodies, held requests.

Each fault applies to the next `times` matching requests (None: to all of them) and is used up as
the routes take it; `clear_faults` puts the hub back to plain answers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol, TypeVar


@dataclass
class Fault:
    repo_id: str
    status: int
    times: int | None
    kind: str | None
    method: str | None
    path: str | None
    retry_after: float | None
    gated: bool
    error_code: str | None


@dataclass
class Corruption:
    repo_id: str
    path: str
    times: int | None
    truncate: bool = False


@dataclass
class Stall:
    repo_id: str
    path: str
    at: int  # the body goes silent at this byte of the file
    times: int | None


@dataclass
class Hold:
    repo_id: str
    kind: str  # an API request kind: `revision`, `tree`, `xet-read-token`
    revision: str | None
    times: int | None


class _Counted(Protocol):
    times: int | None


_F = TypeVar("_F", bound=_Counted)


class FaultInjection:
    """The hub's faults: set by a test through these methods, taken by the routes as requests arrive."""

    def __init__(self) -> None:
        self.bytes_per_second: int | None = None  # file bodies and xorbs are sent at this rate (None: sendfile)
        self.ranges_ignored = False
        self._faults: list[Fault] = []
        self._corruptions: list[Corruption] = []
        self._stalls: list[Stall] = []
        self._holds: list[Hold] = []
        self._tree_overrides: dict[tuple[str, str], dict[str, object]] = {}
        self._faults_lock = threading.Lock()

    def fail(
        self,
        repo_id: str,
        status: int,
        *,
        times: int | None = 1,
        kind: str | None = None,
        method: str | None = None,
        path: str | None = None,
        retry_after: float | None = 0,
        gated: bool = False,
        error_code: str | None = None,
    ) -> None:
        """The next `times` matching requests (None: all of them) answer `status`."""
        with self._faults_lock:
            self._faults.append(Fault(repo_id, status, times, kind, method, path, retry_after, gated, error_code))

    def override_tree(self, repo_id: str, path: str, **fields: object) -> None:
        """Make the tree listing lie about a file (its size, say) while the bytes served stay the same."""
        with self._faults_lock:
            self._tree_overrides[(repo_id, path)] = fields

    def corrupt(self, repo_id: str, path: str, *, times: int | None = 1, truncate: bool = False) -> None:
        """Serve a file's body with one byte flipped (same size), or cut short.

        On the Xet path the byte flipped is in the data of a chunk (headers stay valid, as a bad
        disk or a bad cache would leave them), in the next xorb range served for that file.
        """
        with self._faults_lock:
            self._corruptions.append(Corruption(repo_id, path, times, truncate))

    def stall(self, repo_id: str, path: str, *, at: int, times: int | None = None) -> None:
        """Send a file's headers and its body up to byte `at`, then nothing, keeping the connection open.

        A resume from `at` on gets its headers and no byte at all. The connection stays open until the
        client gives up (closes it) or the hub stops: what a stuck proxy or a dead peer looks like.
        On the Xet path the xorbs of that file go silent after `at` bytes of each range.
        """
        with self._faults_lock:
            self._stalls.append(Stall(repo_id, path, at, times))

    def hold(
        self, repo_id: str, *, kind: str = "revision", revision: str | None = None, times: int | None = None
    ) -> None:
        """Take the next `times` API requests of this kind for the repo (None: all of them) and never answer.

        `revision` narrows it to requests for that revision (a branch, a tag or a commit, as asked).

        The request is counted (status 0) when it arrives; its connection stays open until the client
        gives up or the hub stops: a Hub that accepted the request and is slow to answer it.
        """
        with self._faults_lock:
            self._holds.append(Hold(repo_id, kind, revision, times))

    def ignore_ranges(self, ignore: bool = True) -> None:
        """Answer every `Range` request with the whole file and 200, as some CDNs do."""
        self.ranges_ignored = ignore

    def throttle(self, bytes_per_second: int | None) -> None:
        """Send file bodies and xorbs at this rate (None: as fast as sendfile goes); a stall is a low rate."""
        self.bytes_per_second = bytes_per_second

    def clear_faults(self) -> None:
        with self._faults_lock:
            self._faults.clear()
            self._corruptions.clear()
            self._stalls.clear()
            self._holds.clear()
            self._tree_overrides.clear()
        self.ranges_ignored = False
        self.bytes_per_second = None

    # -- taken by the routes ----------------------------------------------------------------
    def take_fault(self, method: str, kind: str, repo_id: str, path: str) -> Fault | None:
        def matches(fault: Fault) -> bool:
            return (
                fault.repo_id == repo_id
                and (fault.kind is None or fault.kind == kind)
                and (fault.method is None or fault.method == method)
                and (fault.path is None or fault.path == path)
            )

        return self._take(self._faults, matches)

    def take_corruption(self, owners: Iterable[tuple[str, str]]) -> Corruption | None:
        """The corruption of a file held at one of `owners` (repo_id, path), if one is left."""
        wanted = set(owners)
        return self._take(self._corruptions, lambda c: (c.repo_id, c.path) in wanted)

    def take_stall(self, owners: Iterable[tuple[str, str]]) -> Stall | None:
        wanted = set(owners)
        return self._take(self._stalls, lambda s: (s.repo_id, s.path) in wanted)

    def take_hold(self, kind: str, repo_id: str, revision: str) -> Hold | None:
        return self._take(
            self._holds, lambda h: h.repo_id == repo_id and h.kind == kind and h.revision in (None, revision)
        )

    def tree_override(self, repo_id: str, path: str) -> dict[str, object]:
        with self._faults_lock:
            return self._tree_overrides.get((repo_id, path), {})

    def _take(self, injected: list[_F], matches: Callable[[_F], bool]) -> _F | None:
        """The first injected fault that matches and has uses left, one use fewer."""
        with self._faults_lock:
            for fault in injected:
                if matches(fault) and (fault.times is None or fault.times > 0):
                    if fault.times is not None:
                        fault.times -= 1
                    return fault
        return None
