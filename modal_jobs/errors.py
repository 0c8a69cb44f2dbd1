"""The errors that end a run, each with the exit code it maps to.

Exit codes: 0 success; 1 an operation failed (a model failed, verify found damage);
2 bad input (usage, model list, a missing confirmation, missing credentials).
Messages are one line: what is wrong, then what to do about it.
"""

from __future__ import annotations

from collections.abc import Iterable


class CacheError(Exception):
    """A fatal error with its own exit code."""

    exit_code = 1


class UsageError(CacheError):
    """The input is wrong: flags, the model list, a missing confirmation. Nothing was changed."""

    exit_code = 2


class ModelListError(UsageError):
    """The model list cannot be used as written."""


class TargetError(UsageError):
    """The target cannot be used: missing, not a directory, no credentials, locked."""


class ModelFailed(Exception):
    """One model could not be brought to its verified state; the run goes on with the others."""


class Cancelled(Exception):
    """Raised where work notices that the run was asked to stop; the operation turns it into InterruptedRun.

    `done`: what the interrupted step had finished (repo ids), when it knows, for the line that says what the stop left.
    """

    def __init__(self, done: Iterable[str] = ()) -> None:
        super().__init__()
        self.done = tuple(done)


class InterruptedRun(CacheError):
    """SIGINT or SIGTERM stopped the run; what was complete stays complete."""

    exit_code = 130
