"""The local hub's server: a threaded HTTP server on 127.0.0.1, answering from the hub's state (`local_hub.state`).

`LocalHub` is what tests and the benchmark hold: they commit repos to it (`local_hub.repos`),
inject faults (`local_hub.faults`), switch Xet on (`local_hub.xet`), then point a client at `url`
(`hub_env`) and read back the requests it made (`count`, `transfers`, `requests`).
"""

from __future__ import annotations

import os
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path
from types import TracebackType

from local_hub.routes import HubRequestHandler
from local_hub.state import HubState
from local_hub.xet import CHUNKS_PER_XORB


class LocalHub(HubState):
    """A threaded HTTP server on 127.0.0.1 answering from its state; use as a context manager."""

    def __init__(self, root: Path, *, xet: bool = False, chunks_per_xorb: int = CHUNKS_PER_XORB) -> None:
        super().__init__(root, xet=xet, chunks_per_xorb=chunks_per_xorb)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> LocalHub:
        self.stopping.clear()
        handler = type("Handler", (HubRequestHandler,), {"hub": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        # shutdown() waits for serve_forever to look up; at the default 0.5 s that is most of a test's teardown.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self.throttle(None)
            self.stopping.set()  # stalled bodies let go, so that server_close can join their threads
            self._server.shutdown()
            self._server.server_close()
            self._server = None
            self.port = None

    def __enter__(self) -> LocalHub:
        return self.start()

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()


def hub_env(hub: LocalHub, hf_home: Path) -> dict[str, str]:
    """Environment for a process that should talk to this hub only, with its own HF_HOME."""
    hf_home.mkdir(parents=True, exist_ok=True)
    return {
        "HF_ENDPOINT": hub.url,
        "HF_HOME": str(hf_home),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }


os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
