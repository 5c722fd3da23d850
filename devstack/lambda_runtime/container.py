"""Inside a container process: import the handler once, then serve invocations until EOF.

The parent (`runtime`) talks over two pipes, one JSON object per line: it writes
requests; the container answers `ready` (or `init_error`), then one reply per request.
Handler output goes to stdout in Lambda's log format, each invocation's ended by
`LOGGED_MARK`, so the parent can forward the logs before it answers the caller.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import resource
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any, TextIO

from devstack.lambda_runtime.config import VERSION

LOGGED_MARK = "\x1ebaton-logged "
"""Ends an invocation's output, so the parent can forward it before answering."""


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
        return error_body(self.error_type, str(self), request_id, self.stack)


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
            replies.write(json_line({"type": "init_error", "error": exc.body()}))
            return
        replies.write(json_line({"type": "ready"}))
        with os.fdopen(requests_fd, "rb") as requests:
            for line in requests:
                reply = _run_invocation(handler, json.loads(line), out, request_ids)
                replies.write(json_line(reply))


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
            error = error_body("Runtime.MarshalError", message, request_id)
            reply = {"type": "error", "error": error}
    except Exception as exc:
        stack = traceback.format_tb(exc.__traceback__)[1:]
        reply = {
            "type": "error",
            "error": error_body(type(exc).__name__, str(exc), request_id, stack),
        }
    if reply["type"] == "error":
        _log_error(out, reply["error"])
    duration_ms = (time.perf_counter() - started) * 1000
    max_rss_mb = _peak_rss_mb()
    report = (
        f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\t"
        f"Billed Duration: {int(duration_ms) + 1} ms\t"
        f"Memory Size: {context.memory_limit_in_mb} MB\tMax Memory Used: {max_rss_mb} MB"
    )
    if request.get("init_ms") is not None:
        report += f"\tInit Duration: {request['init_ms']:.2f} ms"
    out.write(f"END RequestId: {request_id}\n{report}\n")
    out.flush()
    os.write(1, f"{LOGGED_MARK}{request_id}\n".encode())
    request_ids.request_id = ""
    return reply


def error_body(
    error_type: str, message: str, request_id: str = "", stack: list[str] | None = None
) -> dict[str, Any]:
    """Lambda's error object, as Invoke answers it; the parent builds its own failures too."""
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


def json_line(message: dict[str, Any]) -> bytes:
    """One message on a pipe between the parent and a container."""
    return json.dumps(message).encode() + b"\n"


def _peak_rss_mb() -> int:
    """This process's own peak RSS (VmHWM): `ru_maxrss` would include the parent's,
    since a child inherits it across fork and exec."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
