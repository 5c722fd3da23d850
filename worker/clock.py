"""Time, injected: the container holds one clock, and tests or the simulator pass their own."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int:
        """Wall-clock epoch milliseconds: what run state in S3 records (leases, heartbeats)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back: deadlines and durations inside a leg."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait: a real sleep, or virtual time moving on."""
        ...


class SystemClock:
    def now_ms(self) -> int:
        return int(time.time() * 1000)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


SYSTEM_CLOCK = SystemClock()
