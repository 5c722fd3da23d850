"""A local AWS Lambda runtime: warm worker processes, real deadlines, the Invoke API over HTTP.

Each function runs in "containers": Python processes started in the function's
code directory that import the handler once (init) and then serve invocations
one at a time, so module-level state survives between warm invocations as on
Lambda. A container that overruns its function's timeout is killed (SIGKILL, its
whole process group) and the invocation fails, as on Lambda.

`LambdaRuntime` answers the parts of the Lambda API a worker uses, over HTTP, so a
handler's own `boto3.client("lambda")` reaches it through `AWS_ENDPOINT_URL_LAMBDA`:
Invoke (`RequestResponse`, `Event`, `DryRun`), GetFunction and
Get/PutFunctionRecursionConfig. Async events wait in a queue, run on up to
`max_concurrency` containers (idle warm ones first), are retried `max_retries`
times after `retry_delay_s * attempt`, then dropped and recorded. Recursive loop
detection follows Lambda: each invocation carries `Lineage=<hash>:<depth>` in
`_X_AMZN_TRACE_ID`, botocore forwards it as `X-Amzn-Trace-Id`, and with
`RecursiveLoop: Terminate` the 17th invocation of a chain is stopped.

Errors of the API itself are `LambdaApiError(status, code, message)`; an
invocation whose handler failed is not an API error but an `InvokeResult` with
`function_error="Unhandled"`.

Not emulated: memory limits (reported, not enforced), freezing between
invocations, versions and aliases (only `$LATEST`), `X-Amz-Log-Type: Tail`.
"""

from __future__ import annotations

import contextlib
import heapq
import importlib
import itertools
import json
import logging
import os
import random
import re
import resource
import select
import signal
import subprocess
import sys
import threading
import time
import traceback
import uuid
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal, Self, TextIO

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

__all__ = [
    "ACCOUNT_ID",
    "REGION",
    "FailedEvent",
    "FunctionConfig",
    "FunctionStats",
    "InvocationRecord",
    "InvokeResult",
    "LambdaApiError",
    "LambdaContext",
    "LambdaFaults",
    "LambdaRuntime",
    "RecursiveLoop",
]

log = logging.getLogger(__name__)
container_log = log.getChild("container")
"""Handlers' own output, one record per line, prefixed with the container id."""

REGION = "us-east-1"
ACCOUNT_ID = "000000000000"
REPO_ROOT = Path(__file__).resolve().parents[2]
VERSION = "$LATEST"
MAX_SYNC_PAYLOAD = 6 * 1024 * 1024
MAX_ASYNC_PAYLOAD = 256 * 1024
"""Lambda's long-standing async limit (1 MB since 2025): stricter here, so growth shows early."""
RECURSION_LIMIT = 16
"""Lambda lets a chain of requests run this many invocations, then stops the next one."""

RecursiveLoop = Literal["Allow", "Terminate"]
_FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class FunctionConfig:
    """One function, configured as in a SAM template (local defaults where noted)."""

    name: str
    handler: str = "handler.handler"
    """`module.function`, the module relative to `code_dir` (slashes allowed, as on Lambda)."""
    timeout_s: float = 3.0
    memory_mb: int = 128
    environment: Mapping[str, str] = field(default_factory=dict)
    max_concurrency: int = 4
    max_retries: int = 2
    """Async retries after the first attempt (Lambda: 0 to 2)."""
    retry_delay_s: float = 0.5
    """Before retry n the event waits `n * retry_delay_s` (Lambda: about 1 and 2 minutes)."""
    recursive_loop: RecursiveLoop = "Terminate"
    """Lambda's default; baton's SAM template sets Allow."""
    code_dir: Path = REPO_ROOT
    init_timeout_s: float = 10.0
    log_level: str | None = "INFO"
    """AWS_LAMBDA_LOG_LEVEL for the root logger (None: Lambda's default, WARNING)."""

    def __post_init__(self) -> None:
        problems = []
        if not _FUNCTION_NAME.match(self.name):
            problems.append(f"name {self.name!r} must be 1-64 of A-Z a-z 0-9 - _")
        if "." not in self.handler:
            problems.append(f"handler {self.handler!r} must look like 'module.function'")
        if self.timeout_s <= 0 or self.init_timeout_s <= 0:
            problems.append("timeout_s and init_timeout_s must be > 0")
        if not 128 <= self.memory_mb <= 10_240:
            problems.append(f"memory_mb must be within 128..10240, got {self.memory_mb}")
        if self.max_concurrency < 1:
            problems.append(f"max_concurrency must be >= 1, got {self.max_concurrency}")
        if not 0 <= self.max_retries <= 2:
            problems.append(f"max_retries must be within 0..2, got {self.max_retries}")
        if self.retry_delay_s < 0:
            problems.append(f"retry_delay_s must be >= 0, got {self.retry_delay_s}")
        if self.recursive_loop not in ("Allow", "Terminate"):
            problems.append(f"recursive_loop must be Allow or Terminate, not {self.recursive_loop}")
        if problems:
            raise ValueError(f"function {self.name!r}: " + "; ".join(problems))

    @property
    def arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{self.name}"


@dataclass(frozen=True)
class LambdaFaults:
    """Seeded faults at the Invoke API over HTTP (the path a worker's hand-off takes)."""

    throttle_rate: float = 0.0
    """Answer 429 TooManyRequestsException instead of accepting the invoke."""
    drop_rate: float = 0.0
    """Accept an async invoke with 202, then never run it."""
    duplicate_rate: float = 0.0
    """Deliver an async event twice, with the same request id."""
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("throttle_rate", "drop_rate", "duplicate_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {getattr(self, name)}")


@dataclass
class FunctionStats:
    """Counters of one function; `LambdaRuntime.stats()` returns a copy."""

    invocations: int = 0
    """Attempts that reached a container (cold_starts + warm_starts)."""
    cold_starts: int = 0
    warm_starts: int = 0
    succeeded: int = 0
    errors: int = 0
    """Attempts whose handler raised, failed to init, or whose container died."""
    timeouts: int = 0
    async_accepted: int = 0
    retries: int = 0
    failed_events: int = 0
    """Async events given up on after their retries (see `failed_events()`)."""
    throttled: int = 0
    """429s answered, by the concurrency limit or by a fault."""
    recursion_stopped: int = 0
    fault_throttles: int = 0
    fault_drops: int = 0
    fault_duplicates: int = 0
    containers: int = 0
    """Containers alive when the copy was taken."""


@dataclass(frozen=True)
class InvocationRecord:
    request_id: str
    kind: Literal["Event", "RequestResponse"]
    attempt: int
    """0 for the first attempt of an event, n for its n-th retry."""
    container_id: str
    cold: bool
    outcome: Literal["ok", "error", "timeout"]
    duration_ms: float
    error_type: str | None = None


@dataclass(frozen=True)
class FailedEvent:
    request_id: str
    payload: bytes
    error_type: str
    error_message: str
    attempts: int


@dataclass(frozen=True)
class InvokeResult:
    """What Invoke answers: 200 with the result (or the error object), 202 for an event."""

    request_id: str
    status: int
    payload: bytes = b""
    function_error: str | None = None
    """"Unhandled" when the handler failed; `payload` then holds errorType/errorMessage."""

    def json(self) -> Any:
        return json.loads(self.payload) if self.payload else None


class LambdaApiError(Exception):
    """An error of the Lambda API itself, answered as Lambda does over HTTP."""

    def __init__(self, status: int, code: str, message: str, **fields: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields


# --------------------------------------------------------------------------------------
# Inside a container process
# --------------------------------------------------------------------------------------


class LambdaContext:
    """The `context` a handler receives: Lambda's attributes and a real deadline."""

    def __init__(self, aws_request_id: str, invoked_function_arn: str, deadline_ms: int) -> None:
        self.aws_request_id = aws_request_id
        self.invoked_function_arn = invoked_function_arn
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", VERSION)
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "")
        """A string, as on Lambda (it comes from the environment there too)."""
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self.identity = None
        self.client_context = None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - int(time.time() * 1000))


class _HandlerError(Exception):
    def __init__(self, error_type: str, message: str, stack: list[str] | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.stack = stack or []

    def body(self, request_id: str = "") -> dict[str, Any]:
        return _error_body(self.error_type, str(self), request_id, self.stack)


class _RequestIdFilter(logging.Filter):
    request_id = ""

    def filter(self, record: logging.LogRecord) -> bool:
        record.aws_request_id = self.request_id
        return True


def _container_main() -> None:
    """A container process: init once, then one invocation per request line until EOF."""
    requests_fd, replies_fd = int(sys.argv[1]), int(sys.argv[2])
    out = sys.stdout
    request_ids = _setup_container_logging(out)
    with os.fdopen(replies_fd, "wb", buffering=0) as replies:
        try:
            handler = _load_handler(os.environ["_HANDLER"])
        except _HandlerError as exc:
            _log_error(out, exc.body())
            replies.write(_line({"type": "init_error", "error": exc.body()}))
            return
        replies.write(_line({"type": "ready"}))
        with os.fdopen(requests_fd, "rb") as requests:
            for line in requests:
                replies.write(_line(_run_invocation(handler, json.loads(line), out, request_ids)))


def _setup_container_logging(out: TextIO) -> _RequestIdFilter:
    """Lambda's text log format on the root logger, with the request id of the moment."""
    logging.Formatter.converter = time.gmtime
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        logging.Formatter(
            "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s",
            "%Y-%m-%dT%H:%M:%S",
        )
    )
    request_ids = _RequestIdFilter()
    handler.addFilter(request_ids)
    root = logging.getLogger()
    root.addHandler(handler)
    level = os.environ.get("AWS_LAMBDA_LOG_LEVEL")
    if level:
        root.setLevel(level.upper())
    return request_ids


def _load_handler(spec: str) -> Callable[[Any, LambdaContext], Any]:
    module_name, _, function_name = spec.rpartition(".")
    if not module_name:
        raise _HandlerError("Runtime.MalformedHandlerName", f"Bad handler '{spec}'")
    try:
        module = importlib.import_module(module_name.replace("/", "."))
    except SyntaxError as exc:
        raise _HandlerError(
            "Runtime.UserCodeSyntaxError", f"Syntax error in module '{module_name}': {exc}"
        ) from exc
    except ImportError as exc:
        raise _HandlerError(
            "Runtime.ImportModuleError", f"Unable to import module '{module_name}': {exc}"
        ) from exc
    except Exception as exc:
        raise _HandlerError(
            type(exc).__name__, str(exc), traceback.format_tb(exc.__traceback__)
        ) from exc
    function = getattr(module, function_name, None)
    if not callable(function):
        raise _HandlerError(
            "Runtime.HandlerNotFound",
            f"Handler '{function_name}' missing on module '{module_name}'",
        )
    return function  # type: ignore[no-any-return]


def _run_invocation(
    handler: Callable[[Any, LambdaContext], Any],
    request: dict[str, Any],
    out: TextIO,
    request_ids: _RequestIdFilter,
) -> dict[str, Any]:
    request_id = str(request["request_id"])
    os.environ["_X_AMZN_TRACE_ID"] = str(request["trace_id"])
    request_ids.request_id = request_id
    out.write(f"START RequestId: {request_id} Version: {VERSION}\n")
    started = time.perf_counter()
    context = LambdaContext(request_id, str(request["arn"]), int(request["deadline_ms"]))
    reply: dict[str, Any]
    try:
        result = handler(json.loads(request["payload"]), context)
        try:
            reply = {"type": "result", "payload": json.dumps(result)}
        except (TypeError, ValueError) as exc:
            message = f"Unable to marshal response: {exc}"
            error = _error_body("Runtime.MarshalError", message, request_id)
            reply = {"type": "error", "error": error}
    except Exception as exc:
        stack = traceback.format_tb(exc.__traceback__)[1:]
        reply = {
            "type": "error",
            "error": _error_body(type(exc).__name__, str(exc), request_id, stack),
        }
    if reply["type"] == "error":
        _log_error(out, reply["error"])
    duration_ms = (time.perf_counter() - started) * 1000
    max_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    report = (
        f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\t"
        f"Billed Duration: {int(duration_ms) + 1} ms\t"
        f"Memory Size: {context.memory_limit_in_mb} MB\tMax Memory Used: {max_rss_mb} MB"
    )
    if request.get("init_ms") is not None:
        report += f"\tInit Duration: {request['init_ms']:.2f} ms"
    out.write(f"END RequestId: {request_id}\n{report}\n")
    out.flush()
    os.write(1, f"{_LOGGED_MARK}{request_id}\n".encode())
    request_ids.request_id = ""
    return reply


_LOGGED_MARK = "\x1ebaton-logged "
"""Ends an invocation's output, so the parent can forward it before answering."""


def _error_body(
    error_type: str, message: str, request_id: str = "", stack: list[str] | None = None
) -> dict[str, Any]:
    return {
        "errorMessage": message,
        "errorType": error_type,
        "requestId": request_id,
        "stackTrace": stack or [],
    }


def _log_error(out: TextIO, error: dict[str, Any]) -> None:
    out.write(f"[ERROR] {error['errorType']}: {error['errorMessage']}\n")
    if error["stackTrace"]:
        out.write("Traceback (most recent call last):\n" + "".join(error["stackTrace"]))


def _line(message: dict[str, Any]) -> bytes:
    return json.dumps(message).encode() + b"\n"


# --------------------------------------------------------------------------------------
# The runtime (parent process)
# --------------------------------------------------------------------------------------


class _ContainerExited(Exception):
    """The container process went away mid-invocation (exit, crash, kill)."""


class _Sink:
    """Where containers' output goes: this module's `container` logger, or a file."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._file: IO[str] | None = None
        self._lock = threading.Lock()

    def write(self, container_id: str, line: str) -> None:
        if self._path is None:
            container_log.info("[%s] %s", container_id, line)
            return
        with self._lock:
            if self._file is None:
                self._file = self._path.open("a", encoding="utf-8")
            self._file.write(f"[{container_id}] {line}\n")
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


class _Container:
    """One warm worker process and the two pipes it talks over."""

    def __init__(self, container_id: str, config: FunctionConfig, env: dict[str, str], sink: _Sink):
        self.id = container_id
        self.config = config
        self.invocations = 0
        self.init_ms: float | None = None
        """Process start to handler imported, as Lambda's Init Duration counts it."""
        self._spawned = time.monotonic()
        self._sink = sink
        self._buffer = bytearray()
        self._kill_lock = threading.Lock()
        self._closed = False
        self._logged = threading.Condition()
        self._last_logged = ""
        requests_read, self._requests = os.pipe()
        self._replies, replies_write = os.pipe()
        try:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-u",
                    "-c",
                    "from worker.local.lambda_runtime import _container_main; _container_main()",
                    str(requests_read),
                    str(replies_write),
                ],
                cwd=config.code_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                pass_fds=(requests_read, replies_write),
                start_new_session=True,
            )
        except BaseException:
            os.close(self._requests)
            os.close(self._replies)
            raise
        finally:
            os.close(requests_read)
            os.close(replies_write)
        self._forwarder = threading.Thread(
            target=self._forward_output, name=f"baton-log-{container_id}", daemon=True
        )
        self._forwarder.start()

    def wait_ready(self) -> dict[str, Any] | None:
        """None once init is done; Lambda's error object if init failed or took too long."""
        try:
            message = self._receive(time.monotonic() + self.config.init_timeout_s)
        except _ContainerExited as exc:
            return _error_body("Runtime.ExitError", f"Runtime exited during init: {exc}")
        if message is None:
            seconds = self.config.init_timeout_s
            return _error_body("Sandbox.Timedout", f"Init timed out after {seconds:.2f} seconds")
        if message["type"] == "init_error":
            return dict(message["error"])
        self.init_ms = (time.monotonic() - self._spawned) * 1000
        return None

    def invoke(self, request: dict[str, Any], deadline: float) -> dict[str, Any] | None:
        """The container's reply, or None if `deadline` (monotonic) passed first."""
        self.invocations += 1
        first = {"init_ms": self.init_ms} if self.invocations == 1 else {}
        data = memoryview(_line(request | first))
        try:
            while data:
                data = data[os.write(self._requests, data) :]
        except BrokenPipeError as exc:
            raise _ContainerExited(self._exit_status()) from exc
        reply = self._receive(deadline)
        if reply is not None:
            with self._logged:
                self._logged.wait_for(
                    lambda: self._last_logged == request["request_id"], timeout=1.0
                )
        return reply

    def write_log(self, line: str) -> None:
        self._sink.write(self.id, line)

    def kill(self) -> None:
        """SIGKILL the container's process group, as Lambda ends a sandbox, and reap it.

        Idempotent, since a reaped pid may soon belong to another process. Safe from any
        thread: the pipes stay open for the thread that may be reading them.
        """
        with self._kill_lock:
            if self.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def close(self) -> None:
        """Kill, then release the pipes; only by the container's owner (no reader left)."""
        self.kill()
        with self._kill_lock:
            if self._closed:
                return
            self._closed = True
            os.close(self._requests)
            os.close(self._replies)
        self._forwarder.join(timeout=2.0)

    def _receive(self, deadline: float) -> dict[str, Any] | None:
        while b"\n" not in self._buffer:
            timeout = deadline - time.monotonic()
            if timeout <= 0:
                return None
            ready, _, _ = select.select([self._replies], [], [], timeout)
            if not ready:
                return None
            chunk = os.read(self._replies, 1 << 16)
            if not chunk:
                raise _ContainerExited(self._exit_status())
            self._buffer += chunk
        end = self._buffer.index(b"\n")
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        message: dict[str, Any] = json.loads(line)
        return message

    def _exit_status(self) -> str:
        try:
            code = self.process.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            return "closed its pipe"
        if code < 0:
            return f"signal: {signal.Signals(-code).name}"
        return f"exit status {code}"

    def _forward_output(self) -> None:
        stream = self.process.stdout
        if stream is None:
            return
        with stream:
            for raw in stream:
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                text, mark, request_id = line.partition(_LOGGED_MARK)
                if text or not mark:
                    self._sink.write(self.id, text)
                if mark:
                    with self._logged:
                        self._last_logged = request_id
                        self._logged.notify_all()


@dataclass
class _Event:
    request_id: str
    payload: bytes
    depth: int
    attempt: int = 0


@dataclass
class _Function:
    config: FunctionConfig
    recursive_loop: RecursiveLoop
    numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    idle: list[_Container] = field(default_factory=list)
    containers: set[_Container] = field(default_factory=set)
    pending: deque[_Event] = field(default_factory=deque)
    in_flight: int = 0
    stats: FunctionStats = field(default_factory=FunctionStats)
    records: deque[InvocationRecord] = field(default_factory=lambda: deque(maxlen=10_000))
    failed: list[FailedEvent] = field(default_factory=list)

    @property
    def lineage(self) -> str:
        return f"{zlib.crc32(self.config.arn.encode()):08x}"


@dataclass(frozen=True)
class _Attempt:
    outcome: Literal["ok", "error", "timeout"]
    payload: bytes
    """The handler's JSON result, or Lambda's error object."""
    error: dict[str, Any] | None = None
    warm: bool = False
    """The container survived and can serve again (a handler's exception does not end it)."""

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"


def _failure(
    outcome: Literal["error", "timeout"], error_type: str, message: str, request_id: str
) -> _Attempt:
    error = _error_body(error_type, message, request_id)
    return _Attempt(outcome, json.dumps(error).encode(), error)


class LambdaRuntime:
    """Functions, their containers and the Lambda API on a loopback port.

    `with LambdaRuntime(s3_endpoint_url=...) as runtime:` then `register()` functions;
    containers start on demand and reach this runtime (and S3) through
    `AWS_ENDPOINT_URL_LAMBDA` / `AWS_ENDPOINT_URL_S3` with fake credentials.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        s3_endpoint_url: str | None = None,
        faults: LambdaFaults | None = None,
        log_file: Path | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.s3_endpoint_url = s3_endpoint_url
        self.faults = faults or LambdaFaults()
        self._random = random.Random(self.faults.seed)
        self._functions: dict[str, _Function] = {}
        self._cond = threading.Condition()
        self._delayed: list[tuple[float, int, _Function, _Event]] = []
        self._sequence = itertools.count()
        self._workers: set[threading.Thread] = set()
        self._stopping = False
        self._sink = _Sink(log_file)
        self._server: BaseWSGIServer | None = None
        self._server_thread: threading.Thread | None = None
        self._dispatcher: threading.Thread | None = None

    # ----- lifecycle -------------------------------------------------------------------

    def start(self) -> str:
        if self._server is not None or self._stopping:
            raise RuntimeError("a LambdaRuntime starts once")
        self._server = make_server(
            self.host, self.port, _InvokeApi(self), threaded=True, request_handler=_QuietHandler
        )
        self._server_thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="baton-lambda-api",
            daemon=True,
        )
        self._server_thread.start()
        self._dispatcher = threading.Thread(
            target=self._dispatch, name="baton-lambda-dispatch", daemon=True
        )
        self._dispatcher.start()
        log.debug("local Lambda runtime serving at %s", self.endpoint_url)
        return self.endpoint_url

    def stop(self) -> None:
        """Stop serving, drop queued events, kill every container and join every thread."""
        server, server_thread, dispatcher = self._server, self._server_thread, self._dispatcher
        if server is None or server_thread is None or dispatcher is None:
            return
        server.shutdown()
        server_thread.join()
        with self._cond:
            self._stopping = True
            queued = len(self._delayed) + sum(len(f.pending) for f in self._functions.values())
            self._delayed.clear()
            for function in self._functions.values():
                function.pending.clear()
            self._cond.notify_all()
        dispatcher.join()
        if queued:
            log.warning("stopped with %d async events still queued; they are dropped", queued)
        with self._cond:
            idle = [c for f in self._functions.values() for c in f.idle]
            busy = [c for f in self._functions.values() for c in f.containers if c not in idle]
            for function in self._functions.values():
                function.idle.clear()
                function.containers.clear()
            workers = list(self._workers)
        for container in busy:
            container.kill()  # its invocation fails now and its owner closes it
        for container in idle:
            container.close()
        for worker in workers:
            worker.join()
        server.server_close()
        self._sink.close()
        self._server = self._server_thread = self._dispatcher = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def endpoint_url(self) -> str:
        if self._server is None:
            raise RuntimeError("LambdaRuntime not started")
        return f"http://{self.host}:{self._server.server_port}"

    def set_faults(self, faults: LambdaFaults) -> None:
        """Change the faults mid-run (say, after setup); the seed restarts their sequence."""
        with self._cond:
            self.faults = faults
            self._random = random.Random(faults.seed)

    def register(self, config: FunctionConfig) -> None:
        with self._cond:
            if config.name in self._functions:
                raise ValueError(f"function {config.name!r} is already registered")
            self._functions[config.name] = _Function(config, config.recursive_loop)

    # ----- invoking --------------------------------------------------------------------

    def invoke(self, function_name: str, payload: Any = None) -> InvokeResult:
        """A synchronous (RequestResponse) invocation, from Python."""
        function = self._function(function_name)
        return self._invoke_sync(function, _payload_bytes(payload, MAX_SYNC_PAYLOAD), depth=1)

    def invoke_async(self, function_name: str, payload: Any = None) -> str:
        """Queue an event (as S3 or `InvocationType=Event` would); returns its request id.

        This path starts a new chain and takes no faults: those apply to the HTTP API.
        """
        function = self._function(function_name)
        body = _payload_bytes(payload, MAX_ASYNC_PAYLOAD)
        return self._accept_event(function, body, depth=1, faults=False)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no event is queued, waiting to be retried or running; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._idle():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    # ----- introspection ---------------------------------------------------------------

    def stats(self, function_name: str) -> FunctionStats:
        with self._cond:
            function = self._function(function_name)
            return replace(function.stats, containers=len(function.containers))

    def records(self, function_name: str) -> list[InvocationRecord]:
        """Every attempt so far (the latest 10,000), oldest first."""
        with self._cond:
            return list(self._function(function_name).records)

    def failed_events(self, function_name: str) -> list[FailedEvent]:
        with self._cond:
            return list(self._function(function_name).failed)

    # ----- internals: the API ----------------------------------------------------------

    def _function(self, reference: str) -> _Function:
        name = _function_name(reference)
        function = self._functions.get(name)
        if function is None:
            raise LambdaApiError(
                404,
                "ResourceNotFoundException",
                f"Function not found: arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name}",
            )
        return function

    def _api_invoke(
        self, reference: str, kind: str, body: bytes, trace_header: str
    ) -> InvokeResult:
        function = self._function(reference)
        if kind not in ("RequestResponse", "Event", "DryRun"):
            raise LambdaApiError(
                400, "InvalidParameterValueException", f"Unsupported InvocationType: {kind}"
            )
        if kind == "DryRun":
            return InvokeResult(request_id=_request_id(), status=204)
        with self._cond:
            if self._draw(self.faults.throttle_rate):
                function.stats.fault_throttles += 1
                function.stats.throttled += 1
                raise _throttled()
        limit = MAX_ASYNC_PAYLOAD if kind == "Event" else MAX_SYNC_PAYLOAD
        payload = _payload_bytes(body, limit)
        depth = _lineage_depth(trace_header, function.lineage) + 1
        if kind == "Event":
            request_id = self._accept_event(function, payload, depth, faults=True)
            return InvokeResult(request_id=request_id, status=202)
        return self._invoke_sync(function, payload, depth)

    def _recursion_config(self, reference: str, value: Any = None) -> RecursiveLoop:
        function = self._function(reference)
        if value is not None:
            if value not in ("Allow", "Terminate"):
                raise LambdaApiError(
                    400,
                    "InvalidParameterValueException",
                    f"RecursiveLoop must be Allow or Terminate, got {value!r}",
                )
            with self._cond:
                function.recursive_loop = "Allow" if value == "Allow" else "Terminate"
        return function.recursive_loop

    def _loop_stopped(self, function: _Function, depth: int) -> str | None:
        """Lambda's recursive loop detection; call with the lock held."""
        if depth <= RECURSION_LIMIT or function.recursive_loop == "Allow":
            return None
        function.stats.recursion_stopped += 1
        return (
            f"Function {function.config.name} was stopped: it was invoked more than "
            f"{RECURSION_LIMIT} times in one chain of requests (RecursiveLoop: Terminate)"
        )

    def _accept_event(self, function: _Function, payload: bytes, depth: int, faults: bool) -> str:
        request_id = _request_id()
        name = function.config.name
        with self._cond:
            function.stats.async_accepted += 1
            stopped = self._loop_stopped(function, depth)
            if stopped is not None:
                function.failed.append(
                    FailedEvent(request_id, payload, "RecursiveInvocationException", stopped, 0)
                )
                log.warning("%s: event %s not run: %s", name, request_id, stopped)
                return request_id
            if faults and self._draw(self.faults.drop_rate):
                function.stats.fault_drops += 1
                log.info("%s: fault: event %s accepted and dropped", name, request_id)
                return request_id
            function.pending.append(_Event(request_id, payload, depth))
            if faults and self._draw(self.faults.duplicate_rate):
                function.stats.fault_duplicates += 1
                log.info("%s: fault: event %s delivered twice", name, request_id)
                function.pending.append(_Event(request_id, payload, depth))
            self._cond.notify_all()
        return request_id

    def _draw(self, rate: float) -> bool:
        """A seeded coin; called with the lock held so a seed replays the same faults."""
        return rate > 0 and self._random.random() < rate

    # ----- internals: scheduling -------------------------------------------------------

    def _idle(self) -> bool:
        return not self._delayed and all(
            not f.pending and f.in_flight == 0 for f in self._functions.values()
        )

    def _dispatch(self) -> None:
        """Move due retries back to their queues; start events while concurrency allows."""
        with self._cond:
            while not self._stopping:
                now = time.monotonic()
                while self._delayed and self._delayed[0][0] <= now:
                    _, _, due_function, event = heapq.heappop(self._delayed)
                    due_function.pending.append(event)
                for function in self._functions.values():
                    while function.pending and function.in_flight < function.config.max_concurrency:
                        event = function.pending.popleft()
                        function.in_flight += 1
                        worker = threading.Thread(
                            target=self._run_event,
                            args=(function, event),
                            name=f"baton-invoke-{event.request_id[:8]}",
                            daemon=True,
                        )
                        self._workers.add(worker)
                        worker.start()
                self._cond.wait(self._delayed[0][0] - now if self._delayed else None)

    def _run_event(self, function: _Function, event: _Event) -> None:
        try:
            attempt = self._attempt(function, event, "Event")
        except Exception as exc:
            # A bug here must not leave the event in flight forever (wait_idle would hang).
            log.exception("%s: event %s: runtime error", function.config.name, event.request_id)
            attempt = _failure("error", "Runtime.Unknown", repr(exc), event.request_id)
        config = function.config
        with self._cond:
            function.in_flight -= 1
            self._workers.discard(threading.current_thread())
            if not attempt.ok and not self._stopping:
                error = attempt.error or {}
                if event.attempt < config.max_retries:
                    retry = replace(event, attempt=event.attempt + 1)
                    delay = config.retry_delay_s * retry.attempt
                    heapq.heappush(
                        self._delayed,
                        (time.monotonic() + delay, next(self._sequence), function, retry),
                    )
                    function.stats.retries += 1
                    log.info(
                        "%s: event %s failed (%s); retry %d in %.2f s",
                        config.name,
                        event.request_id,
                        error.get("errorType"),
                        retry.attempt,
                        delay,
                    )
                else:
                    failed = FailedEvent(
                        event.request_id,
                        event.payload,
                        str(error.get("errorType", "")),
                        str(error.get("errorMessage", "")),
                        event.attempt + 1,
                    )
                    function.stats.failed_events += 1
                    function.failed.append(failed)
                    log.warning(
                        "%s: dropping event %s after %d attempts: %s: %s",
                        config.name,
                        failed.request_id,
                        failed.attempts,
                        failed.error_type,
                        failed.error_message,
                    )
            self._cond.notify_all()

    def _invoke_sync(self, function: _Function, payload: bytes, depth: int) -> InvokeResult:
        event = _Event(_request_id(), payload, depth)
        with self._cond:
            stopped = self._loop_stopped(function, depth)
            if stopped is not None:
                raise LambdaApiError(400, "RecursiveInvocationException", stopped)
            if function.in_flight >= function.config.max_concurrency:
                function.stats.throttled += 1
                raise _throttled()
            function.in_flight += 1
        try:
            attempt = self._attempt(function, event, "RequestResponse")
        finally:
            with self._cond:
                function.in_flight -= 1
                self._cond.notify_all()
        return InvokeResult(
            request_id=event.request_id,
            status=200,
            payload=attempt.payload,
            function_error=None if attempt.ok else "Unhandled",
        )

    # ----- internals: one attempt in one container -------------------------------------

    def _attempt(
        self, function: _Function, event: _Event, kind: Literal["Event", "RequestResponse"]
    ) -> _Attempt:
        started = time.monotonic()
        try:
            container, cold = self._checkout(function)
        except (_ContainerExited, OSError) as exc:
            message = f"could not start a container: {exc}"
            return _failure("error", "Runtime.ExitError", message, event.request_id)
        attempt = self._run_in(function, container, cold, event)
        with self._cond:
            reuse = attempt.warm and not self._stopping
            if reuse:
                function.idle.append(container)
            else:
                function.containers.discard(container)
            stats = function.stats
            stats.invocations += 1
            stats.cold_starts += cold
            stats.warm_starts += not cold
            stats.succeeded += attempt.ok
            stats.errors += attempt.outcome == "error"
            stats.timeouts += attempt.outcome == "timeout"
            function.records.append(
                InvocationRecord(
                    request_id=event.request_id,
                    kind=kind,
                    attempt=event.attempt,
                    container_id=container.id,
                    cold=cold,
                    outcome=attempt.outcome,
                    duration_ms=(time.monotonic() - started) * 1000,
                    error_type=None if attempt.error is None else str(attempt.error["errorType"]),
                )
            )
            self._cond.notify_all()
        if not reuse:
            container.close()
        return attempt

    def _checkout(self, function: _Function) -> tuple[_Container, bool]:
        """A warm idle container (most recently used first), or a new one: (container, cold)."""
        with self._cond:
            if self._stopping:
                raise _ContainerExited("the runtime is stopping")
            if function.idle:
                return function.idle.pop(), False
            number = next(function.numbers)
            container = _Container(
                f"{function.config.name}-{number}",
                function.config,
                self._environment(function),
                self._sink,
            )
            function.containers.add(container)
            return container, True

    def _run_in(
        self, function: _Function, container: _Container, cold: bool, event: _Event
    ) -> _Attempt:
        config = function.config
        request_id = event.request_id
        if cold:
            init_error = container.wait_ready()
            if init_error is not None:
                init_error["requestId"] = request_id
                return _Attempt("error", json.dumps(init_error).encode(), init_error)
        request = {
            "request_id": request_id,
            "payload": event.payload.decode(),
            "arn": config.arn,
            "deadline_ms": int(time.time() * 1000) + round(config.timeout_s * 1000),
            "trace_id": _trace_id(function.lineage, event.depth),
        }
        try:
            reply = container.invoke(request, time.monotonic() + config.timeout_s)
        except _ContainerExited as exc:
            message = f"RequestId: {request_id} Error: Runtime exited with error: {exc}"
            return _failure("error", "Runtime.ExitError", message, request_id)
        if reply is None:
            container.kill()
            message = f"Task timed out after {config.timeout_s:.2f} seconds"
            container.write_log(f"{_now_iso()} {request_id} {message}")
            container.write_log(f"END RequestId: {request_id}")
            container.write_log(
                f"REPORT RequestId: {request_id}\tDuration: {config.timeout_s * 1000:.2f} ms\t"
                f"Memory Size: {config.memory_mb} MB\tStatus: timeout"
            )
            log.warning(
                "%s: %s %s; container %s killed", config.name, request_id, message, container.id
            )
            return _failure(
                "timeout",
                "Sandbox.Timedout",
                f"RequestId: {request_id} Error: {message}",
                request_id,
            )
        if reply["type"] == "result":
            return _Attempt("ok", str(reply["payload"]).encode(), warm=True)
        error = dict(reply["error"])
        return _Attempt("error", json.dumps(error).encode(), error, warm=True)

    def _environment(self, function: _Function) -> dict[str, str]:
        """A container's environment: Lambda's reserved variables, endpoints, fake credentials."""
        config = function.config
        env = {name: os.environ[name] for name in _INHERITED_ENV if name in os.environ}
        env.update(
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_SESSION_TOKEN="testing",
            AWS_ENDPOINT_URL_LAMBDA=self.endpoint_url,
        )
        if self.s3_endpoint_url:
            env["AWS_ENDPOINT_URL_S3"] = self.s3_endpoint_url
        env.update(config.environment)
        stream = f"{datetime.now(UTC):%Y/%m/%d}/[{VERSION}]{uuid.uuid4().hex}"
        env.update(
            AWS_REGION=REGION,
            AWS_DEFAULT_REGION=REGION,
            AWS_EXECUTION_ENV=f"AWS_Lambda_python{sys.version_info.major}.{sys.version_info.minor}",
            AWS_LAMBDA_FUNCTION_NAME=config.name,
            AWS_LAMBDA_FUNCTION_VERSION=VERSION,
            AWS_LAMBDA_FUNCTION_MEMORY_SIZE=str(config.memory_mb),
            AWS_LAMBDA_LOG_GROUP_NAME=f"/aws/lambda/{config.name}",
            AWS_LAMBDA_LOG_STREAM_NAME=stream,
            AWS_LAMBDA_INITIALIZATION_TYPE="on-demand",
            LAMBDA_TASK_ROOT=str(config.code_dir),
            PYTHONUNBUFFERED="1",
            TZ=":UTC",
            _HANDLER=config.handler,
        )
        if config.log_level:
            env["AWS_LAMBDA_LOG_LEVEL"] = config.log_level
        return env


_INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PYTHONPATH")
"""All a container takes from the parent's environment: no profile, no real credentials."""


# --------------------------------------------------------------------------------------
# The Lambda API over HTTP
# --------------------------------------------------------------------------------------


_INVOKE = re.compile(r"^/2015-03-31/functions/(?P<function>[^/]+)/invocations/?$")
_GET_FUNCTION = re.compile(r"^/2015-03-31/functions/(?P<function>[^/]+)/?$")
_RECURSION_CONFIG = re.compile(r"^/2024-08-31/functions/(?P<function>[^/]+)/recursion-config/?$")


class _InvokeApi:
    """The WSGI app: Lambda's REST-JSON API, the few operations a worker calls."""

    def __init__(self, runtime: LambdaRuntime) -> None:
        self._runtime = runtime

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        request = Request(environ)
        try:
            response = self._route(request)
        except LambdaApiError as exc:
            response = _error_response(exc)
        return response(environ, start_response)

    def _route(self, request: Request) -> Response:
        runtime = self._runtime
        path, method = request.path, request.method
        if method == "POST" and (match := _INVOKE.match(path)):
            result = runtime._api_invoke(
                match["function"],
                request.headers.get("X-Amz-Invocation-Type", "RequestResponse"),
                request.get_data(),
                request.headers.get("X-Amzn-Trace-Id", ""),
            )
            headers = {"X-Amz-Executed-Version": VERSION, "x-amzn-RequestId": result.request_id}
            if result.function_error:
                headers["X-Amz-Function-Error"] = result.function_error
            body = result.payload if result.status == 200 else b""
            return Response(body, result.status, headers, content_type="application/json")
        if method == "GET" and (match := _GET_FUNCTION.match(path)):
            function = runtime._function(match["function"])
            return _json_response({"Configuration": _configuration(function)})
        if match := _RECURSION_CONFIG.match(path):
            if method == "GET":
                return _json_response(
                    {"RecursiveLoop": runtime._recursion_config(match["function"])}
                )
            if method == "PUT":
                value = _json_body(request).get("RecursiveLoop")
                loop = runtime._recursion_config(match["function"], value)
                return _json_response({"RecursiveLoop": loop})
        raise LambdaApiError(
            404, "UnknownOperationException", f"{method} {path} is not emulated locally"
        )


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        log.debug('"%s" %s %s', self.requestline, code, size)


def _configuration(function: _Function) -> dict[str, Any]:
    config = function.config
    return {
        "FunctionName": config.name,
        "FunctionArn": config.arn,
        "Runtime": f"python{sys.version_info.major}.{sys.version_info.minor}",
        "Handler": config.handler,
        "Timeout": max(1, round(config.timeout_s)),
        "MemorySize": config.memory_mb,
        "Version": VERSION,
        "State": "Active",
        "LastUpdateStatus": "Successful",
        "PackageType": "Zip",
        "Environment": {"Variables": dict(config.environment)},
    }


def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(request.get_data() or b"{}")
    except ValueError as exc:
        raise LambdaApiError(400, "InvalidRequestContentException", f"bad JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise LambdaApiError(400, "InvalidRequestContentException", "expected a JSON object")
    return body


def _json_response(body: dict[str, Any], status: int = 200) -> Response:
    headers = {"x-amzn-RequestId": _request_id()}
    return Response(json.dumps(body), status, headers, content_type="application/json")


def _error_response(error: LambdaApiError) -> Response:
    """Lambda's error shape: the code in x-amzn-ErrorType, the message in the body."""
    body = {"Type": "User", "message": error.message, **error.fields}
    response = _json_response(body, error.status)
    response.headers["x-amzn-ErrorType"] = error.code
    if error.status == 429:
        response.headers["Retry-After"] = "1"
    return response


def _throttled() -> LambdaApiError:
    return LambdaApiError(
        429,
        "TooManyRequestsException",
        "Rate Exceeded.",
        Reason="ReservedFunctionConcurrentInvocationLimitExceeded",
    )


# --------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------


def _function_name(reference: str) -> str:
    """The name in `name`, `name:qualifier`, `acct:function:name` or a full ARN."""
    parts = reference.split(":")
    if reference.startswith("arn:") and len(parts) >= 7:
        parts = parts[6:]
    elif len(parts) >= 3 and parts[1] == "function":
        parts = parts[2:]
    if len(parts) > 1 and parts[1] != VERSION:
        raise LambdaApiError(
            404, "ResourceNotFoundException", f"only {VERSION} is emulated, not {parts[1]!r}"
        )
    return parts[0]


def _payload_bytes(payload: Any, limit: int) -> bytes:
    """The event as JSON bytes; an empty body is `{}`, as on Lambda."""
    if isinstance(payload, bytes | bytearray):
        body = bytes(payload) or b"{}"
        try:
            json.loads(body)
        except ValueError as exc:
            raise LambdaApiError(
                400,
                "InvalidRequestContentException",
                f"Could not parse request body into json: {exc}",
            ) from exc
    else:
        body = json.dumps({} if payload is None else payload).encode()
    if len(body) > limit:
        raise LambdaApiError(
            413,
            "RequestTooLargeException",
            f"Request must be smaller than {limit} bytes for this invocation type",
        )
    return body


def _lineage_depth(trace_header: str, lineage: str) -> int:
    """How many invocations of this function the chain carrying `trace_header` has had."""
    for part in trace_header.split(";"):
        name, _, value = part.strip().partition("=")
        if name != "Lineage":
            continue
        for entry in value.split("|"):
            digest, _, count = entry.partition(":")
            if digest == lineage and count.isdigit():
                return int(count)
    return 0


def _trace_id(lineage: str, depth: int) -> str:
    root = f"1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]}"
    return f"Root={root};Parent={uuid.uuid4().hex[:16]};Sampled=0;Lineage={lineage}:{depth}"


def _request_id() -> str:
    return str(uuid.uuid4())


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
