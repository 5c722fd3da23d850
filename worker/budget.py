"""The one time-budget policy: when to stop a leg, and how big a batch to take.

A leg hands off while it still has `margin_ms` left (the checkpoint write and
the invoke). When adaptive, it also keeps room for the slowest task seen
recently (the 90th percentile), and sizes each batch to what fits in the time left at the observed
rate, so a leg neither overruns nor stops early. Observations live as long as
the container, so a warm leg starts with a good estimate. Overrun is also
prevented where it happens: every request's timeout is cut to the batch's
deadline, and tasks that cannot finish in time are deferred to the next leg.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

WINDOW = 200
"""Recent tasks and batches the estimates are drawn from."""


@dataclass
class TimeBudget:
    margin_ms: int
    adaptive: bool = True
    batch_size: int = 25
    max_batch: int = 1000
    target_batch_ms: float = 10_000.0
    """Long enough that per-batch S3 writes stay cheap, short enough to checkpoint often."""
    _task_ms: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))
    _rate_ms: deque[float] = field(default_factory=lambda: deque(maxlen=20))

    def slow_task_ms(self) -> float:
        """90th percentile of recent task latencies: a slow task, not the worst outlier."""
        if not self._task_ms:
            return 0.0
        ordered = sorted(self._task_ms)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]

    def reserve_ms(self) -> float:
        """Time to keep in hand when deciding whether to start another batch."""
        if not self.adaptive:
            return float(self.margin_ms)
        return self.margin_ms + 1.2 * self.slow_task_ms()

    def can_start_batch(self, remaining_ms: float) -> bool:
        return remaining_ms > self.reserve_ms()

    def work_deadline_ms(self, remaining_ms: float) -> float:
        """How long the next batch may run at most (requests are cut to fit)."""
        return max(0.0, remaining_ms - self.margin_ms)

    def next_batch_size(self, remaining_ms: float) -> int:
        if not self.adaptive or not self._rate_ms:
            return self.batch_size
        per_task = max(sorted(self._rate_ms)[len(self._rate_ms) // 2], 0.05)
        window = min(
            self.target_batch_ms, self.work_deadline_ms(remaining_ms) - self.slow_task_ms()
        )
        fit = int(max(window, 0.0) / per_task)
        return max(1, min(self.largest_batch(), fit))

    def largest_batch(self) -> int:
        """The most tasks `next_batch_size` ever gives."""
        return self.max_batch if self.adaptive else self.batch_size

    def record_batch(self, elapsed_ms: float, task_ms: list[float]) -> None:
        """Learn from a finished batch: its wall time per task and each task's latency."""
        self._task_ms.extend(task_ms)
        if task_ms:
            self._rate_ms.append(elapsed_ms / len(task_ms))
