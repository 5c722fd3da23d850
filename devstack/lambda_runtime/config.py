"""What the local Lambda runtime is configured with and answers: settings, records, errors.

Shared by the parent (`runtime`, `api`) and the container process (`container`), so it
imports nothing from either.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

REGION = "us-east-1"
ACCOUNT_ID = "000000000000"


def _code_root() -> Path:
    """Where `handler.py` lives: the checkout, or site-packages after `pip install .[local]`."""
    spec = importlib.util.find_spec("handler")
    if spec is not None and spec.origin:
        return Path(spec.origin).resolve().parent
    return Path.cwd()


CODE_ROOT = _code_root()
"""The containers' default cwd and LAMBDA_TASK_ROOT, as the Lambda zip's root is."""
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
    code_dir: Path = CODE_ROOT
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
