"""A stand-in for a named `modal.Dict`, shared by several "machines" in one test process.

It models what `modal_jobs.volume_lease` relies on, as modal-client 1.6.4 (`modal/dict.py`) and
Modal's guide on Dicts describe it: one server-side store per name; `put(key, value,
skip_if_exists=True)` is one `DictUpdate` request with `if_not_exists`, decided atomically on the
server, answering whether it stored the value; `get(key, default)` answers `default` for an absent
key; `pop(key, default)` removes and answers the value in one `DictPop`. Values travel serialized
(here: pickled), so a caller never shares an object with the store. Every call is counted per
machine, as the suite counts Modal's client calls; `from_name`'s lookup counts as one.

`lose_next_answer` stands for the client's own retry of a request the server had applied: the
put is stored, and the answer the caller sees is the retry's "not stored".
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_MISSING = object()


@dataclass
class DictServer:
    """The one store behind every handle: what Modal keeps for a named Dict."""

    items: dict[Any, Any] = field(default_factory=dict)
    calls: list[tuple[str, str, Any]] = field(default_factory=list)  # (machine, method, key)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def open(self, machine: str = "here", before_call: Callable[[str, Any], None] | None = None) -> DictHandle:
        """`modal.Dict.from_name(...)` on one machine: a handle, and one lookup counted."""
        self.calls.append((machine, "lookup", None))
        return DictHandle(self, machine, before_call)

    def opener(self, machine: str, before_call: Callable[[str, Any], None] | None = None) -> Callable[[], DictHandle]:
        return lambda: self.open(machine, before_call)

    def value(self, key: Any) -> Any:
        """What the store holds under `key`, for assertions; no call counted."""
        data = self.items.get(key)
        return None if data is None else copy.deepcopy(data)

    def methods(self, machine: str) -> list[str]:
        return [method for who, method, _ in self.calls if who == machine]


@dataclass
class DictHandle:
    """One machine's `modal.Dict` handle: `get`, `put` and `pop` as the lease calls them."""

    server: DictServer
    machine: str
    before_call: Callable[[str, Any], None] | None = None
    lose_next_answer: bool = False

    def _call(self, method: str, key: Any) -> None:
        self.server.calls.append((self.machine, method, key))
        if self.before_call is not None:
            self.before_call(method, key)

    def get(self, key: Any, default: Any | None = None) -> Any:
        self._call("get", key)
        with self.server.lock:
            data = self.server.items.get(key)
        return default if data is None else copy.deepcopy(data)

    def put(self, key: Any, value: Any, *, skip_if_exists: bool = False) -> bool:
        self._call("put", key)
        with self.server.lock:
            stored = not (skip_if_exists and key in self.server.items)
            if stored:
                self.server.items[key] = copy.deepcopy(value)
        if self.lose_next_answer:
            self.lose_next_answer = False
            return False
        return stored

    def pop(self, key: Any, default: Any = _MISSING) -> Any:
        self._call("pop", key)
        with self.server.lock:
            data = self.server.items.pop(key, None)
        if data is None:
            if default is _MISSING:
                raise KeyError(key)
            return default
        return copy.deepcopy(data)
