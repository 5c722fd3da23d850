"""A loopback webhook receiver: takes completion notices and checks their signature.

What a user's endpoint would do with baton's notice: verify `X-Baton-Signature`
(HMAC-SHA256 of the exact body with the shared secret) before trusting it, and
treat `X-Baton-Run-Id` as the idempotency key (a notice can come more than once).
"""

from __future__ import annotations

import hmac
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from devstack.service import Service
from worker.notice import SIGNATURE_HEADER, signature


@dataclass(frozen=True)
class Received:
    run_id: str
    detail: dict[str, Any]
    signed: bool
    """Whether the signature matched the receiver's secret."""


class WebhookReceiver(Service):
    """`with WebhookReceiver(secret) as hook:` serves at `hook.url`; `hook.received` fills."""

    def __init__(self, secret: str, host: str = "127.0.0.1", status: int = 204) -> None:
        self.secret = secret
        self.host = host
        self.status = status
        """What to answer (say 503, to see the sweep send again)."""
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        return f"http://{self.host}:{self._server.server_port}/notices"

    def start(self) -> str:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                expected = signature(receiver.secret, body)
                signed = hmac.compare_digest(expected, self.headers.get(SIGNATURE_HEADER, ""))
                with receiver._lock:
                    receiver.received.append(
                        Received(self.headers.get("X-Baton-Run-Id", ""), json.loads(body), signed)
                    )
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((self.host, 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
