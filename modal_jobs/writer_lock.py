"""One writer per target: who a writer is, and how a second one waits for it, then gives up.

Two stores hold the writer, with one shape: the local target's flock (`modal_jobs.target_lock`)
and the Modal Volume's lease (`modal_jobs.volume_lease`). Each gives `wait_for_writer` a `take`
that either takes the target (returns None) or names the `Writer` who has it. The record both
write, as JSON:

```json
{"who": "alice@laptop", "pid": 4242, "operation": "download", "started": 1790000000.0,
 "run_url": "https://github.com/owner/repo/actions/runs/123"}
```

`run_url` is there only when the run is a GitHub Actions job. This module imports nothing of Modal.
"""

from __future__ import annotations

import getpass
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, TypeGuard

from modal_jobs.errors import InterruptedRun, TargetError

log = logging.getLogger("modal_jobs")


@dataclass(frozen=True)
class Writer:
    """Who holds a target: enough for a person to find the run, and since when."""

    who: str  # user@host
    pid: int
    operation: str
    started: float  # seconds since the epoch
    run_url: str = ""

    def describe(self) -> str:
        pid = f"pid {self.pid}" if self.pid > 0 else ""
        return ", ".join(part for part in (self.who, pid, self.operation, self.run_url) if part)

    def to_record(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, value: object) -> Writer | None:
        """The writer a record names, or None when it is not one: it was read back from a shared store."""
        if not isinstance(value, Mapping):
            return None
        who, operation, run_url = (value.get(k, "") for k in ("who", "operation", "run_url"))
        pid, started = value.get("pid"), value.get("started")
        if not (is_line(who) and who and is_line(operation) and is_line(run_url)):
            return None
        if type(pid) is not int or not is_time(started):
            return None
        return cls(who[:200], pid, operation[:40], float(started), run_url[:300])


def unknown_writer() -> Writer:
    """A holder whose record cannot be read (not written yet, or damaged): who and since when are unknown."""
    return Writer("its record unreadable", 0, "", 0.0)


def is_line(value: object) -> TypeGuard[str]:
    """Text that keeps a message on one line: printable, no newline."""
    return isinstance(value, str) and value.isprintable()


def is_time(value: object) -> TypeGuard[int | float]:
    """A finite number of seconds since the epoch (a bool is not one)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def this_writer(operation: str, now: float, environ: Mapping[str, str] | None = None) -> Writer:
    """This run as a writer: user@host, pid, the operation, and its GitHub Actions run when it is one."""
    env = os.environ if environ is None else environ
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no login name, no passwd entry: a container's odd uid
        user = f"uid {os.getuid()}"
    return Writer(f"{user}@{os.uname().nodename}", os.getpid(), str(operation), now, github_run_url(env))


def github_run_url(environ: Mapping[str, str]) -> str:
    """The Actions run's page, from the variables every GitHub Actions job has; "" elsewhere."""
    parts = [environ.get(k, "") for k in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID")]
    if environ.get("GITHUB_ACTIONS") != "true" or not all(parts):
        return ""
    return f"{parts[0]}/{parts[1]}/actions/runs/{parts[2]}"


def utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds))


def since(writer: Writer) -> str:
    return f" since {utc(writer.started)}" if writer.started > 0 else ""


def wait_for_writer(
    take: Callable[[], Writer | None],
    wait_seconds: float,
    cancel: threading.Event,
    *,
    where: str,
    poll: float,
    fix: Callable[[Writer], str] = lambda _: "",
) -> None:
    """Take the target, or wait up to `wait_seconds` for the writer who has it, saying once who that is.

    Then refuse: one line naming the writer, since when, and what to do (`fix` adds how to break a
    dead writer's hold). A stop request ends the wait with InterruptedRun; nothing was changed.
    """
    deadline = time.monotonic() + wait_seconds
    announced = False
    while (holder := take()) is not None:
        held = f"another run ({holder.describe()}) is working on {where}{since(holder)}"
        if time.monotonic() >= deadline:
            raise TargetError(f"{held}; wait for it to finish, or pass a longer --lock-wait{fix(holder)}")
        if not announced:
            log.warning("%s; waiting up to %.0fs", held, wait_seconds)
            announced = True
        if cancel.wait(poll):
            raise InterruptedRun("interrupted while waiting for another run; nothing was changed")
