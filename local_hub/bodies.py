"""How a file body or a xorb range goes out: by `sendfile`, or chunk by chunk when a fault shapes it.

A throttled or corrupt body is written in steps (a twentieth of the rate per step when throttled);
a stalled one stops at its byte and keeps the connection open, sending nothing more.
"""

from __future__ import annotations

import select
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from local_hub.faults import Corruption
from local_hub.state import HubState


def send_body(
    handler: BaseHTTPRequestHandler,
    hub: HubState,
    file: Path,
    start: int,
    length: int,
    corruption: Corruption | None,
    flip_at: int | None = None,
) -> None:
    """`length` bytes of `file` from `start`; with `corruption`, the byte at `flip_at` flipped, or cut in half."""
    with file.open("rb") as f:
        if corruption is None and hub.bytes_per_second is None:
            hub.count_sent(handler.connection.sendfile(f, offset=start, count=length))
            return
        f.seek(start)
        left = length if corruption is None or not corruption.truncate else length // 2
        if corruption is None or corruption.truncate:
            flip_at = -1
        elif flip_at is None:
            flip_at = length // 2
        position = 0
        while left > 0:
            rate = hub.bytes_per_second  # read at every step: a test may change it, stopping lifts it
            step = min(left, 64 << 10 if rate is None else max(1, rate // 20))
            chunk = bytearray(f.read(step))
            if not chunk:
                break
            if 0 <= flip_at - position < len(chunk):
                chunk[flip_at - position] ^= 0xFF
            try:
                handler.wfile.write(chunk)
            except (BrokenPipeError, ConnectionResetError):
                return
            hub.count_sent(len(chunk))
            position += len(chunk)
            left -= len(chunk)
            if rate is not None:
                time.sleep(len(chunk) / rate)
        if corruption is not None and corruption.truncate:
            handler.close_connection = True


def send_stalled(handler: BaseHTTPRequestHandler, hub: HubState, file: Path, start: int, count: int) -> None:
    """`count` bytes of the body, then silence with the connection open until the client or the hub lets go."""
    with file.open("rb") as f:
        f.seek(start)
        data = f.read(count)
    try:
        handler.wfile.write(data)
        handler.wfile.flush()
    except (BrokenPipeError, ConnectionResetError):
        return
    hub.count_sent(len(data))
    handler.close_connection = True
    keep_open(handler, hub)


def keep_open(handler: BaseHTTPRequestHandler, hub: HubState) -> None:
    """Send nothing more, until the client closes its end or the hub stops."""
    while not hub.stopping.is_set():
        ready, _, _ = select.select([handler.connection], [], [], 0.2)
        if ready:
            try:
                if not handler.connection.recv(4096):
                    return  # the client closed its end: it gave up
            except OSError:
                return
