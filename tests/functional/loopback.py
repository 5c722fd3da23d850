"""A small loopback HTTP server for tests that need exact bytes, headers or misbehaviour.

Each route is a function of the request; the server records every request's headers
and counts the TCP connections it accepted, so a test can assert what reached it.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    """Header names lower-cased."""


Route = Callable[["_Handler"], None]


def static(
    body: bytes, content_type: str | None = "text/html", status: int = 200, **headers: str
) -> Route:
    """A route that answers the same response every time."""

    def route(handler: _Handler) -> None:
        handler.send_response(status)
        if content_type is not None:
            handler.send_header("Content-Type", content_type)
        for name, value in headers.items():
            handler.send_header(name.replace("_", "-"), value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return route


def redirect(location: str, status: int = 302) -> Route:
    return static(b"", status=status, Location=location)


class LoopbackServer:
    """`with LoopbackServer("127.0.0.2") as server:` serves `server.routes` on a free port."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.routes: dict[str, Route] = {}
        self.received: list[Received] = []
        self.connections = 0
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._server = _Server((host, 0), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self._server.server_port}"

    @property
    def port(self) -> int:
        return self._server.server_port

    def url(self, path: str) -> str:
        return self.origin + path

    def _record(self, received: Received) -> None:
        with self._lock:
            self.received.append(received)

    def _accepted(self) -> None:
        with self._lock:
            self.connections += 1


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def do_GET(self) -> None:
        owner = self.server.owner
        path = urlsplit(self.path).path
        owner._record(Received(path, {k.lower(): v for k, v in self.headers.items()}))
        route = owner.routes.get(path)
        if route is None:
            static(b"not found", status=404)(self)
            return
        try:
            route(self)
        except (ConnectionError, TimeoutError):
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], owner: LoopbackServer) -> None:
        self.owner = owner
        super().__init__(address, _Handler)

    def verify_request(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any
    ) -> bool:
        self.owner._accepted()
        return True
