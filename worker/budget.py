"""The one time-budget policy: when to stop a leg, and how big a batch to take.

A leg hands off while it still has `margin` left. The margin has a fixed floor
(the checkpoint write and the hand-off) and, when adaptive, room for the
slowest batch seen so far in this container, so a leg does not start a batch it
cannot finish. Batch size adapts so one batch takes about `target_batch_ms`:
short enough to checkpoint often, long enough that S3 writes stay cheap.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TimeBudget:
    margin_ms: int
    adaptive: bool = True
    batch_size: int = 25
    min_batch: int = 1
    max_batch: int = 1000
    target_batch_ms: float = 2_000.0
    slowest_batch_ms: float = 0.0
    batches: int = 0
    _task_ms: list[float] = field(default_factory=list)

    def reserve_ms(self) -> float:
        """Time to keep in hand when deciding whether to start another batch."""
        if not self.adaptive:
            return float(self.margin_ms)
        return self.margin_ms + 1.25 * self.slowest_batch_ms

    def can_start_batch(self, remaining_ms: float) -> bool:
        return remaining_ms > self.reserve_ms()

    def work_deadline_ms(self, remaining_ms: float) -> float:
        """How long the next batch may run at most (requests are cut to fit)."""
        return max(0.0, remaining_ms - self.margin_ms)

    def next_batch_size(self, remaining_ms: float) -> int:
        size = self.batch_size
        if self.adaptive and self._task_ms:
            per_task = max(sorted(self._task_ms)[len(self._task_ms) // 2], 0.1)
            fit = int(min(self.target_batch_ms, self.work_deadline_ms(remaining_ms) / 2) / per_task)
            size = max(self.min_batch, min(self.max_batch, fit, self.batch_size * 4))
        return max(self.min_batch, size)

    def record_batch(self, elapsed_ms: float, tasks: int) -> None:
        self.batches += 1
        self.slowest_batch_ms = max(self.slowest_batch_ms, elapsed_ms)
        if tasks:
            self._task_ms.append(elapsed_ms / tasks)
            del self._task_ms[:-20]
