"""Modal's API on 127.0.0.1, as far as a workflow test needs it: a gRPC server that records credentials.

The `modal_stand_in` fixture is registered for every test module by `tests/conftest.py`.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import ConnectionTerminated, DataReceived, RequestReceived, StreamEnded


class ModalStandIn:
    """Modal's API on 127.0.0.1: records each gRPC call's headers and refuses it as unauthenticated.

    The Modal client speaks gRPC over HTTP/2 to MODAL_SERVER_URL and sends its token pair as the
    `x-modal-token-id` and `x-modal-token-secret` headers of every call. Answering with grpc-status 16
    at once makes the client stop there, with the credentials recorded.
    """

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.requests: list[dict[str, str]] = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:  # closed: the test is over
                return
            threading.Thread(target=self.answer, args=(connection,), daemon=True).start()

    def answer(self, connection: socket.socket) -> None:
        h2 = H2Connection(config=H2Configuration(client_side=False, header_encoding="utf-8"))
        h2.initiate_connection()
        with connection:
            connection.sendall(h2.data_to_send())
            while data := connection.recv(65536):
                for event in h2.receive_data(data):
                    if isinstance(event, RequestReceived) and event.stream_id is not None:
                        self.requests.append({str(k): str(v) for k, v in event.headers or []})
                    elif isinstance(event, DataReceived) and event.stream_id is not None:
                        h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    elif isinstance(event, StreamEnded) and event.stream_id is not None:
                        trailers = [
                            (":status", "200"),
                            ("content-type", "application/grpc"),
                            ("grpc-status", "16"),  # UNAUTHENTICATED
                            ("grpc-message", "the test's stand-in for Modal accepts no call"),
                        ]
                        h2.send_headers(event.stream_id, trailers, end_stream=True)
                    elif isinstance(event, ConnectionTerminated):
                        return
                connection.sendall(h2.data_to_send())

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def modal_stand_in() -> Iterator[ModalStandIn]:
    stand_in = ModalStandIn()
    yield stand_in
    stand_in.close()
