"""Every kind of fault the chaos harness injects, as one table.

A kind is the name the report counts it under, the `ChaosConfig` rate that
switches it on, the layer whose hook injects it, and how the stack counts it
where it happened. The function's environment, the S3 fault hook, the counters,
the command-line options and the report line all derive from `FAULTS`. Adding a
kind is one entry here plus its hook in its layer (an S3 kind needs none: its
`response` is the hook), and a field on `ChaosConfig` if its rate is a new one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from devstack.lambda_runtime import FunctionStats
from devstack.s3server import INTERNAL_ERROR, SLOW_DOWN, S3Fault

__all__ = [
    "AFTER_WRITE",
    "FAULTS",
    "RATES",
    "FaultKind",
    "Layer",
    "Seen",
    "by_name",
    "counts",
    "kinds_of",
]

AFTER_WRITE = S3Fault(503, "ServiceUnavailable", "Service is unable to handle request.", after=True)
"""The write landed, the client sees an error (and botocore retries it)."""


class Layer(StrEnum):
    """Where a kind's hook injects it."""

    S3 = "s3"
    """The emulator answers `FaultKind.response` (`harness.ChaosS3Faults`)."""
    LAMBDA = "lambda"
    """The local runtime's Invoke API (`LambdaFaults`, wired by `ChaosConfig.lambda_faults`)."""
    PROCESSOR = "processor"
    """The per-task processor inside the containers (`processor.process`), told its rate
    through a `CHAOS_*` variable of the function."""


@dataclass(frozen=True)
class Seen:
    """What the stack counted, where the faults happened."""

    s3: Mapping[str, int]
    """Faults the emulator answered, by S3 error code."""
    runtime: FunctionStats
    processor: Mapping[str, int]
    """The processor's faults file, lines by their first word."""


Count = Callable[[Seen], int]


@dataclass(frozen=True)
class FaultKind:
    """One kind of fault: an entry of `FAULTS`."""

    name: str
    """Its key in the counts and the report line."""
    rate: str
    """The `ChaosConfig` field (a probability per opportunity) that switches it on."""
    where: Layer
    count: Count
    help: str
    """What one of them is, for `--help`."""
    planted_by: tuple[str, ...] = ()
    """`ChaosConfig` fields that plant it in tasks whatever the rate."""
    response: S3Fault | None = None
    """What the emulator answers (S3 kinds only)."""

    @property
    def variable(self) -> str:
        """The function's variable that tells the processor this kind's rate."""
        return f"CHAOS_{self.rate.upper()}"


def _s3(code: str) -> Count:
    return lambda seen: seen.s3.get(code, 0)


def _logged(word: str) -> Count:
    return lambda seen: seen.processor.get(word, 0)


FAULTS: tuple[FaultKind, ...] = (
    FaultKind(
        "s3_500",
        "s3_error_rate",
        Layer.S3,
        _s3(INTERNAL_ERROR.code),
        "a worker's S3 request is answered 500 InternalError before it reaches the store",
        response=INTERNAL_ERROR,
    ),
    FaultKind(
        "s3_503",
        "s3_error_rate",
        Layer.S3,
        _s3(SLOW_DOWN.code),
        "a worker's S3 request is answered 503 SlowDown before it reaches the store",
        response=SLOW_DOWN,
    ),
    FaultKind(
        "s3_after_write",
        "s3_after_write_rate",
        Layer.S3,
        _s3(AFTER_WRITE.code),
        "a worker's S3 write lands, and its client is answered 503",
        response=AFTER_WRITE,
    ),
    FaultKind(
        "throttle",
        "throttle_rate",
        Layer.LAMBDA,
        lambda seen: seen.runtime.fault_throttles,
        "an invoke is answered 429 TooManyRequestsException",
    ),
    FaultKind(
        "drop",
        "drop_rate",
        Layer.LAMBDA,
        lambda seen: seen.runtime.fault_drops,
        "an async invoke is accepted, then never run",
    ),
    FaultKind(
        "duplicate",
        "duplicate_rate",
        Layer.LAMBDA,
        lambda seen: seen.runtime.fault_duplicates,
        "an async event is delivered twice",
    ),
    FaultKind(
        "crash",
        "crash_rate",
        Layer.PROCESSOR,
        _logged("crash"),
        "a task attempt exits its container mid-batch",
        planted_by=("killers", "once"),
    ),
    FaultKind(
        "timeout",
        "hang_rate",
        Layer.PROCESSOR,
        lambda seen: seen.runtime.timeouts,
        "a task attempt hangs until the runtime kills the leg at its timeout",
        planted_by=("once",),
    ),
    FaultKind(
        "defer",
        "defer_rate",
        Layer.PROCESSOR,
        _logged("defer"),
        "a task attempt defers itself to the next leg (OutOfTimeError)",
    ),
)

RATES: tuple[str, ...] = tuple(dict.fromkeys(kind.rate for kind in FAULTS))
"""The `ChaosConfig` rate fields, each in [0, 1], in the table's order."""


def by_name(name: str) -> FaultKind:
    """The entry called `name`; a hook looks its kind up once, at import."""
    for entry in FAULTS:
        if entry.name == name:
            return entry
    raise KeyError(f"no fault kind {name!r}")


def kinds_of(rate: str) -> list[FaultKind]:
    """The kinds one rate switches on (s3_error_rate: a 500 or a 503, drawn per fault)."""
    return [kind for kind in FAULTS if kind.rate == rate]


def counts(seen: Seen) -> dict[str, int]:
    """Faults that happened, by kind."""
    return {kind.name: kind.count(seen) for kind in FAULTS}
