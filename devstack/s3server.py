"""An S3 emulator over real HTTP on loopback: moto's S3, made safe under threads.

moto's server does the S3 work (conditional GET/PUT, ranges, multipart, copies).
`EmbeddedS3` serves its WSGI app on a threaded werkzeug server behind a small
middleware that adds what baton relies on and moto lacks:

- Atomic writes per key. moto checks `If-Match`/`If-None-Match` and then writes,
  with nothing held in between, so two compare-and-swaps on one ETag can both win;
  and two writes to one key can race on the replaced object's buffer and answer
  500 ("I/O operation on closed file"). Every write to a key (PUT, POST, DELETE)
  therefore holds that key's lock (striped), as real S3 serialises them. Reads and
  bucket-level calls take no lock.
- ObjectCreated notifications: after a successful PutObject, CopyObject or
  CompleteMultipartUpload, `on_object_created(bucket, key, etag, size)` is called
  (ETag quoted, as S3 returns it), outside the lock.
- Fault injection: `fault_hook(call)` may answer a request with an S3 XML error
  (500 InternalError, 503 SlowDown, ...) instead of forwarding it, or after
  forwarding it (the write happened, the client sees an error).

State: moto keeps its backends in process-global dictionaries and bucket names
are global across moto accounts, so every `EmbeddedS3` in one process serves the
same buckets, and a `moto.mock_aws()` that stops in the same process resets them.
Isolate tests with unique bucket names.
"""

from __future__ import annotations

import io
import logging
import random
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote
from xml.sax.saxutils import escape

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import BaseWSGIServer, make_server

from devstack.service import Service

__all__ = [
    "INTERNAL_ERROR",
    "SLOW_DOWN",
    "EmbeddedS3",
    "FaultHook",
    "ObjectCreatedCallback",
    "RandomFaults",
    "S3Call",
    "S3Fault",
]

log = logging.getLogger(__name__)

WSGIEnviron = dict[str, Any]
StartResponse = Callable[..., Any]


@dataclass(frozen=True)
class S3Fault:
    """An S3 error to answer with; `after` lets the request reach the backend first."""

    status: int
    code: str
    message: str
    after: bool = False


INTERNAL_ERROR = S3Fault(
    500, "InternalError", "We encountered an internal error. Please try again."
)
SLOW_DOWN = S3Fault(503, "SlowDown", "Please reduce your request rate.")


@dataclass(frozen=True)
class S3Call:
    """What a fault hook sees of a request."""

    method: str
    bucket: str
    """Empty for service-level calls (ListBuckets)."""
    key: str
    """Empty for bucket-level calls."""
    query: frozenset[str]
    """Names of the query parameters: `uploadId`, `tagging`, `list-type`, ..."""
    conditional: bool
    """The request carries If-Match or If-None-Match."""


FaultHook = Callable[[S3Call], S3Fault | None]
ObjectCreatedCallback = Callable[[str, str, str, int], object]
"""`(bucket, key, etag, size)`; what it returns is ignored."""


class RandomFaults:
    """A seeded fault hook: each request that `match`es fails with probability `rate`."""

    def __init__(
        self,
        rate: float,
        seed: int = 0,
        faults: Sequence[S3Fault] = (INTERNAL_ERROR, SLOW_DOWN),
        match: Callable[[S3Call], bool] | None = None,
    ) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be within [0, 1], got {rate}")
        if not faults:
            raise ValueError("faults must not be empty")
        self.rate = rate
        self.faults = tuple(faults)
        self.match = match
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    def __call__(self, call: S3Call) -> S3Fault | None:
        if self.match is not None and not self.match(call):
            return None
        with self._lock:
            if self._random.random() >= self.rate:
                return None
            return self._random.choice(self.faults)


class EmbeddedS3(Service):
    """moto's S3 on a loopback port; `with EmbeddedS3() as s3:` serves at `s3.endpoint_url`.

    The endpoint is an IP address, so botocore addresses buckets path-style
    (`/bucket/key`), the only style the middleware parses.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        on_object_created: ObjectCreatedCallback | None = None,
        fault_hook: FaultHook | None = None,
        lock_stripes: int = 64,
    ) -> None:
        self.host = host
        self.port = port
        self.on_object_created = on_object_created
        self.fault_hook = fault_hook
        self._app = _S3Middleware(
            self, DomainDispatcherApplication(create_backend_app), lock_stripes
        )
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> str:
        if self._server is not None:
            raise RuntimeError("EmbeddedS3 already started")
        self._server = make_server(
            self.host, self.port, self._app, threaded=True, request_handler=_QuietMotoHandler
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="baton-s3",
            daemon=True,
        )
        self._thread.start()
        log.debug("embedded S3 serving at %s", self.endpoint_url)
        return self.endpoint_url

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.shutdown()
        thread.join()
        server.server_close()
        self._server = self._thread = None

    @property
    def endpoint_url(self) -> str:
        if self._server is None:
            raise RuntimeError("EmbeddedS3 not started")
        return f"http://{self.host}:{self._server.server_port}"

    @property
    def faults_injected(self) -> dict[str, int]:
        """Faults answered so far, by S3 error code."""
        with self._app.faults_lock:
            return dict(self._app.faults)


class _QuietMotoHandler(MotoRequestHandler):
    """moto's handler (keeps underscores in metadata headers), logging requests at debug."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        log.debug('"%s" %s %s', self.requestline, code, size)


@dataclass(frozen=True)
class _Request:
    call: S3Call
    raw_path: str
    copy: bool

    @property
    def is_key_write(self) -> bool:
        return bool(self.call.key) and self.call.method in {"PUT", "POST", "DELETE"}

    @property
    def creates_object(self) -> bool:
        """PutObject, CopyObject or CompleteMultipartUpload: what S3 notifies about."""
        call = self.call
        if not call.key:
            return False
        if call.method == "PUT":
            return call.query <= {"x-id"}
        return call.method == "POST" and "uploadId" in call.query

    @property
    def event_name(self) -> str:
        if self.call.method == "POST":
            return "CompleteMultipartUpload"
        return "CopyObject" if self.copy else "PutObject"


@dataclass(frozen=True)
class _Response:
    status: str
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def code(self) -> int:
        return int(self.status.split(" ", 1)[0])


class _S3Middleware:
    """The WSGI app: faults, per-key write locks and notifications around moto."""

    def __init__(self, s3: EmbeddedS3, moto_app: DomainDispatcherApplication, stripes: int):
        if stripes < 1:
            raise ValueError(f"lock_stripes must be >= 1, got {stripes}")
        self._s3 = s3
        self._moto = moto_app
        self._locks = [threading.Lock() for _ in range(stripes)]
        self.faults: Counter[str] = Counter()
        self.faults_lock = threading.Lock()

    def __call__(self, environ: WSGIEnviron, start_response: StartResponse) -> Iterable[bytes]:
        request = _parse(environ)
        hook = self._s3.fault_hook
        fault = hook(request.call) if hook is not None else None
        if fault is not None and not fault.after:
            return self._fail(fault, request, environ, start_response)

        created: tuple[str, int] | None = None
        with self._key_lock(request):
            response = _call(self._moto, environ)
            if request.creates_object and response.code == 200 and b"<Error>" not in response.body:
                created = self._head(environ, request.raw_path)
        callback = self._s3.on_object_created
        if created is not None and callback is not None:
            self._notify(callback, request, *created)

        if fault is not None:
            return self._fail(fault, request, environ, start_response)
        start_response(response.status, response.headers)
        return [response.body]

    @contextmanager
    def _key_lock(self, request: _Request) -> Iterator[None]:
        if not request.is_key_write:
            yield
            return
        lock = self._locks[hash((request.call.bucket, request.call.key)) % len(self._locks)]
        with lock:
            yield

    def _head(self, environ: WSGIEnviron, raw_path: str) -> tuple[str, int] | None:
        """ETag and size of the object just written; the caller holds the key's lock."""
        head = {
            name: value
            for name, value in environ.items()
            if not name.startswith(("HTTP_", "CONTENT_"))
            or name in {"HTTP_HOST", "HTTP_AUTHORIZATION", "HTTP_X_AMZ_DATE"}
        }
        head.update(
            REQUEST_METHOD="HEAD",
            QUERY_STRING="",
            RAW_URI=raw_path,
            REQUEST_URI=raw_path,
            CONTENT_LENGTH="0",
        )
        head["wsgi.input"] = io.BytesIO(b"")
        response = _call(self._moto, head)
        if response.code != 200:
            log.warning(
                "object vanished before its notification: HEAD %s %s", raw_path, response.status
            )
            return None
        headers = {name.lower(): value for name, value in response.headers}
        return headers.get("etag", ""), int(headers.get("content-length", "0"))

    def _notify(
        self, callback: ObjectCreatedCallback, request: _Request, etag: str, size: int
    ) -> None:
        call = request.call
        try:
            callback(call.bucket, call.key, etag, size)
        except Exception:
            # S3 never fails a write because its notification could not be delivered.
            log.exception(
                "ObjectCreated callback failed after %s s3://%s/%s",
                request.event_name,
                call.bucket,
                call.key,
            )

    def _fail(
        self,
        fault: S3Fault,
        request: _Request,
        environ: WSGIEnviron,
        start_response: StartResponse,
    ) -> Iterable[bytes]:
        with self.faults_lock:
            self.faults[fault.code] += 1
        call = request.call
        log.debug("injecting %s into %s /%s/%s", fault.code, call.method, call.bucket, call.key)
        request_id = uuid.uuid4().hex[:16].upper()
        resource = f"/{call.bucket}/{call.key}" if call.key else f"/{call.bucket}"
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{escape(fault.code)}</Code><Message>{escape(fault.message)}</Message>"
            f"<Resource>{escape(resource)}</Resource><RequestId>{request_id}</RequestId>"
            f"<HostId>{uuid.uuid4().hex}</HostId></Error>"
        ).encode()
        status = f"{fault.status} {_REASONS.get(fault.status, 'Error')}"
        start_response(
            status,
            [
                ("Content-Type", "application/xml"),
                ("Content-Length", str(len(body))),
                ("x-amz-request-id", request_id),
            ],
        )
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else [body]


_REASONS = {500: "Internal Server Error", 503: "Service Unavailable", 400: "Bad Request"}


def _parse(environ: WSGIEnviron) -> _Request:
    """Bucket and key of a path-style request, from the path as it arrived (still encoded)."""
    raw_uri = str(environ.get("RAW_URI") or environ.get("PATH_INFO") or "/")
    raw_path = raw_uri.split("?", 1)[0]
    bucket, _, encoded_key = raw_path.lstrip("/").partition("/")
    query = parse_qs(str(environ.get("QUERY_STRING", "")), keep_blank_values=True)
    call = S3Call(
        method=str(environ.get("REQUEST_METHOD", "GET")).upper(),
        bucket=unquote(bucket),
        key=unquote(encoded_key),
        query=frozenset(query),
        conditional="HTTP_IF_MATCH" in environ or "HTTP_IF_NONE_MATCH" in environ,
    )
    return _Request(call=call, raw_path=raw_path, copy="HTTP_X_AMZ_COPY_SOURCE" in environ)


def _call(app: DomainDispatcherApplication, environ: WSGIEnviron) -> _Response:
    """Run a WSGI app to completion and keep its whole response (moto's are in memory)."""
    captured: list[Any] = []
    written: list[bytes] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        captured[:] = [status, list(headers)]
        return written.append

    chunks = app(environ, start_response)
    try:
        written.extend(chunks)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    return _Response(status=captured[0], headers=captured[1], body=b"".join(written))
