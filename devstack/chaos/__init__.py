"""Chaos on the embedded stack (moved from devstack/chaos.py; split by concern next)."""

from devstack.chaos.harness import (
    AFTER_WRITE,
    CRASH_ONCE,
    HANG_ONCE,
    KILLER,
    ChaosConfig,
    ChaosReport,
    ChaosS3Faults,
    ChaosStack,
    RunCheck,
    Source,
    main,
    process,
    run_chaos,
)

__all__ = [
    "AFTER_WRITE",
    "CRASH_ONCE",
    "HANG_ONCE",
    "KILLER",
    "ChaosConfig",
    "ChaosReport",
    "ChaosS3Faults",
    "ChaosStack",
    "RunCheck",
    "Source",
    "main",
    "process",
    "run_chaos",
]
