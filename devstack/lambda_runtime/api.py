"""The Lambda API over HTTP: the REST-JSON operations a worker's boto3 client calls.

A WSGI app in front of one `LambdaRuntime`. It calls the runtime's underscored
methods: it is the runtime's own HTTP face, not a client of its Python API.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from werkzeug.serving import WSGIRequestHandler
from werkzeug.wrappers import Request, Response

from devstack.lambda_runtime.config import VERSION, FunctionConfig, LambdaApiError

if TYPE_CHECKING:
    from devstack.lambda_runtime.runtime import LambdaRuntime

log = logging.getLogger(__name__)

_INVOKE = re.compile(r"^/2015-03-31/functions/(?P<function>[^/]+)/invocations/?$")
_GET_FUNCTION = re.compile(r"^/2015-03-31/functions/(?P<function>[^/]+)/?$")
_RECURSION_CONFIG = re.compile(r"^/2024-08-31/functions/(?P<function>[^/]+)/recursion-config/?$")


class InvokeApi:
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
            config = runtime._function(match["function"]).config
            return _json_response({"Configuration": _configuration(config)})
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


class QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        log.debug('"%s" %s %s', self.requestline, code, size)


def _configuration(config: FunctionConfig) -> dict[str, Any]:
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
    headers = {"x-amzn-RequestId": str(uuid.uuid4())}
    return Response(json.dumps(body), status, headers, content_type="application/json")


def _error_response(error: LambdaApiError) -> Response:
    """Lambda's error shape: the code in x-amzn-ErrorType, the message in the body."""
    body = {"Type": "User", "message": error.message, **error.fields}
    response = _json_response(body, error.status)
    response.headers["x-amzn-ErrorType"] = error.code
    if error.status == 429:
        response.headers["Retry-After"] = "1"
    return response
