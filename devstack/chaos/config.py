"""What a chaos session runs: the load, the fault rates, and the function they shape."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack.chaos.faults import FAULTS, RATES, FaultKind, Layer
from devstack.chaos.processor import PROCESSOR, ProcessorChaos
from devstack.lambda_runtime import FunctionConfig, LambdaFaults
from worker.names import FUNCTION_NAME

__all__ = ["ChaosConfig"]


@dataclass(frozen=True)
class ChaosConfig:
    """Rates are per opportunity: per S3 request, per invoke, per task attempt.

    Every rate field is named by a kind in `faults.FAULTS`; a new kind with a new
    rate adds its field here.
    """

    seed: int = 1
    runs: int = 2
    tasks: int = 200
    chains: int = 1
    """Chains per run (the upload's baton-chains metadata)."""
    parallel: int = 2
    """Runs uploaded at once; `runs` are worked through in waves of this many."""
    killers: int = 1
    """Tasks per run planted to crash their leg on every attempt."""
    once: int = 1
    """Tasks per run planted to crash on their first attempt, and as many to hang on it."""
    s3_error_rate: float = 0.02
    s3_after_write_rate: float = 0.02
    throttle_rate: float = 0.15
    drop_rate: float = 0.1
    duplicate_rate: float = 0.15
    crash_rate: float = 0.006
    hang_rate: float = 0.004
    defer_rate: float = 0.01
    timeout_s: float = 2.5
    task_ms: float = 15.0
    batch_size: int = 6
    concurrency: int = 2
    max_concurrency: int = 4
    margin_ms: int = 1_000
    lease_slack_ms: int = 300
    stall_after_ms: int = 1_500
    sweep_interval_s: float = 0.5
    max_task_attempts: int = 3
    max_wait_s: float = 300.0
    """Per wave: a run not ended by then counts as unfinished."""
    environment: Mapping[str, str] = field(default_factory=dict)
    """Extra function variables (say BATON_MAX_LEGS), over the ones derived here."""

    @classmethod
    def quiet(cls, **overrides: Any) -> ChaosConfig:
        """No random faults at all: for scenarios that plant their own."""
        rates = dict.fromkeys(RATES, 0.0)
        return cls(**{**rates, "killers": 0, "once": 0, **overrides})

    def rate(self, kind: FaultKind) -> float:
        value: float = getattr(self, kind.rate)
        return value

    def enabled_kinds(self) -> list[str]:
        """Kinds switched on by their rate or planted in tasks: each must happen in a soak."""
        return [
            kind.name
            for kind in FAULTS
            if self.rate(kind) + sum(getattr(self, name) for name in kind.planted_by) > 0
        ]

    def processor(self, directory: Path) -> ProcessorChaos:
        """The processor's side, shared with the containers through `directory`."""
        return ProcessorChaos(
            directory=directory,
            seed=self.seed,
            rates={kind.name: self.rate(kind) for kind in FAULTS if kind.where is Layer.PROCESSOR},
            task_ms=self.task_ms,
            hang_s=self.timeout_s * 5,
        )

    def function(self, bucket: str, directory: Path) -> FunctionConfig:
        environment = {
            "BATON_BUCKET": bucket,
            "BATON_PROCESSOR": PROCESSOR,
            "BATON_BATCH_SIZE": str(self.batch_size),
            "BATON_CONCURRENCY": str(self.concurrency),
            "BATON_MARGIN_MS": str(self.margin_ms),
            "BATON_LEASE_SLACK_MS": str(self.lease_slack_ms),
            "BATON_STALL_AFTER_MS": str(self.stall_after_ms),
            "BATON_MAX_TASK_ATTEMPTS": str(self.max_task_attempts),
            "BATON_METRICS": "false",
            "BATON_LOG_FORMAT": "json",
            **self.processor(directory).environment(),
            **self.environment,
        }
        return FunctionConfig(
            name=FUNCTION_NAME,
            timeout_s=self.timeout_s,
            memory_mb=1024,
            environment=environment,
            max_concurrency=self.max_concurrency,
            max_retries=2,
            retry_delay_s=0.3,
            recursive_loop="Allow",
        )

    def lambda_faults(self) -> LambdaFaults:
        """The hook of the `Layer.LAMBDA` kinds, in the local runtime."""
        return LambdaFaults(
            throttle_rate=self.throttle_rate,
            drop_rate=self.drop_rate,
            duplicate_rate=self.duplicate_rate,
            seed=self.seed,
        )
