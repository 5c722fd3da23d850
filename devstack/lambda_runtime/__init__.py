"""A local AWS Lambda runtime: warm worker processes, real deadlines, the Invoke API over HTTP.

Each function runs in containers: processes that import the handler once, then serve
invocations one at a time, so module state survives between warm invocations. A
container that overruns its timeout is killed (SIGKILL, its process group), as on Lambda.

`LambdaRuntime` answers, over HTTP, what a worker's `boto3.client("lambda")` calls
through `AWS_ENDPOINT_URL_LAMBDA`: Invoke (`RequestResponse`, `Event`, `DryRun`),
GetFunction and Get/PutFunctionRecursionConfig. Async events queue, run on up to
`max_concurrency` containers (idle warm ones first) and are retried `max_retries` times
after `retry_delay_s * attempt`, then dropped and recorded. Recursive loops are detected
as on Lambda: `Lineage=<hash>:<depth>` in `_X_AMZN_TRACE_ID`, forwarded by botocore as
`X-Amzn-Trace-Id`; with `RecursiveLoop: Terminate` the 17th invocation of a chain stops.

Errors of the API itself are `LambdaApiError(status, code, message)`; a failed handler
is not one, but an `InvokeResult` with `function_error="Unhandled"`.

Not emulated: memory limits (reported only), freezing between invocations, versions
and aliases (only `$LATEST`), `X-Amz-Log-Type: Tail`.

Modules: `config` (settings, records, errors), `container` (inside a container process),
`runtime` (the parent side) and `api` (the HTTP front).
"""

from typing import TYPE_CHECKING, Any

from devstack.lambda_runtime.config import (
    ACCOUNT_ID,
    REGION,
    FailedEvent,
    FunctionConfig,
    FunctionStats,
    InvocationRecord,
    InvokeResult,
    LambdaApiError,
    LambdaFaults,
    RecursiveLoop,
)
from devstack.lambda_runtime.container import LambdaContext

if TYPE_CHECKING:
    from devstack.lambda_runtime.runtime import LambdaRuntime, log_record


def __getattr__(name: str) -> Any:
    """The parent side loads when first asked for: a container process imports this
    package too, and on Lambda no HTTP server (werkzeug) weighs on a cold start."""
    if name in ("LambdaRuntime", "log_record"):
        from devstack.lambda_runtime import runtime

        return getattr(runtime, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    "log_record",
]
