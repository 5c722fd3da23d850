"""The parent side: container processes, the async event queue, retries, faults, the runtime.

`LambdaRuntime` owns it all: it starts containers on demand, queues and retries
events, draws seeded faults and serves `api.InvokeApi` on a loopback port.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import json
import logging
import os
import random
import select
import signal
import subprocess
import sys
import threading
import time
import uuid
import zlib
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal

from werkzeug.serving import BaseWSGIServer, make_server

from devstack.lambda_runtime.api import InvokeApi, QuietHandler
from devstack.lambda_runtime.config import (
    ACCOUNT_ID,
    MAX_ASYNC_PAYLOAD,
    MAX_SYNC_PAYLOAD,
    RECURSION_LIMIT,
    REGION,
    VERSION,
    FailedEvent,
    FunctionConfig,
    FunctionStats,
    InvocationRecord,
    InvokeResult,
    LambdaApiError,
    LambdaFaults,
    RecursiveLoop,
)
from devstack.lambda_runtime.container import LOGGED_MARK, error_body, json_line
from devstack.service import Service

log = logging.getLogger(__name__)
container_log = logging.getLogger("devstack.lambda_runtime.container")
"""Handlers' own output, one record per line, prefixed with the container id.

The name it had before the package split, kept for log set-ups (and tests) that use it.
"""


class _ContainerExited(Exception):
    """The container process went away mid-invocation (exit, crash, kill)."""


def log_record(raw: str) -> tuple[str, dict[str, Any] | None]:
    """A line of the containers' log file (`[container] output`): the container's id, and the
    JSON record the worker logged on that line, or None for any other output."""
    container, _, rest = raw.partition("] ")
    if not rest.startswith("{"):
        return container.lstrip("["), None
    try:
        record = json.loads(rest)
    except ValueError:
        return container.lstrip("["), None
    return container.lstrip("["), record if isinstance(record, dict) else None


class _Sink:
    """Where containers' output goes: `container_log`, or a file (read by `log_record`)."""

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
                    "from devstack.lambda_runtime.container import _container_main; "
                    "_container_main()",
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
            return error_body("Runtime.ExitError", f"Runtime exited during init: {exc}")
        if message is None:
            seconds = self.config.init_timeout_s
            return error_body("Sandbox.Timedout", f"Init timed out after {seconds:.2f} seconds")
        if message["type"] == "init_error":
            return dict(message["error"])
        self.init_ms = (time.monotonic() - self._spawned) * 1000
        return None

    def invoke(self, request: dict[str, Any], deadline: float) -> dict[str, Any] | None:
        """The container's reply, or None if `deadline` (monotonic) passed first."""
        self.invocations += 1
        first = {"init_ms": self.init_ms} if self.invocations == 1 else {}
        data = memoryview(json_line(request | first))
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
                text, mark, request_id = line.partition(LOGGED_MARK)
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
    error = error_body(error_type, message, request_id)
    return _Attempt(outcome, json.dumps(error).encode(), error)


class LambdaRuntime(Service):
    """Functions, their containers and the Lambda API on a loopback port.

    `with LambdaRuntime(s3_endpoint_url=...) as runtime:` then `register()` functions;
    containers start on demand and reach this runtime (and S3) through
    `AWS_ENDPOINT_URL_LAMBDA` / `AWS_ENDPOINT_URL_S3` (and `_EVENTS`) with fake credentials.
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
            self.host, self.port, InvokeApi(self), threaded=True, request_handler=QuietHandler
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
            # The S3 emulator is moto's whole server: it answers EventBridge (and SQS) too.
            env["AWS_ENDPOINT_URL_S3"] = self.s3_endpoint_url
            env["AWS_ENDPOINT_URL_EVENTBRIDGE"] = self.s3_endpoint_url
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


def _throttled() -> LambdaApiError:
    return LambdaApiError(
        429,
        "TooManyRequestsException",
        "Rate Exceeded.",
        Reason="ReservedFunctionConcurrentInvocationLimitExceeded",
    )


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
