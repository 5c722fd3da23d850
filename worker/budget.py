"""The one time-budget policy: when a leg stops starting tasks, how far ahead it plans.

A leg hands off while it still has `margin_ms` left (the final commit and the
invoke). When adaptive, it also keeps room for a slow task (the 90th percentile
of recent task latencies): it stops starting tasks once `remaining` falls below
that reserve, and every task still running is cut at the work deadline
(`remaining - margin`) by its own request deadlines, so a leg never overruns
however many tasks are in flight at the margin.

The plan is how far past its position a leg may start tasks before its next
compare-and-swap: about two commit intervals of work at the observed rate, so
the checkpoint is written every ~10 s, and a stealing chain (which never splits
below the plan) finds most of the range still stealable. Observations live as
long as the container, so a warm leg starts with good estimates.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

WINDOW = 500
"""Recent task latencies the reserve is drawn from."""
RESORT_EVERY = 16
"""Past a few dozen samples, the percentile is recomputed every this many new ones: the leg
asks for it on every turn of its loop, and sorting 500 latencies each time cost 0.1 ms a
page (bench/profile_leg.py); a window of 500 moves little in 16 samples."""


@dataclass
class TimeBudget:
    margin_ms: int
    adaptive: bool = True
    initial_plan: int = 25
    """Tasks planned before anything is observed (BATON_BATCH_SIZE)."""
    max_plan: int = 20_000
    commit_interval_ms: float = 10_000.0
    """Long enough that per-commit S3 writes stay cheap, short enough to checkpoint often."""
    _task_ms: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))
    _rate: float = 0.0
    """Tasks finished per second by the last legs on `_rate_of` (an exponential average)."""
    _rate_of: str = ""
    """The work (a run's chain) the rate was measured on: a container works many chains,
    and a rate learned on fast pages planned a slow chain's whole range at once, leaving
    nothing for a thief to take (the fan-out bench's straggler)."""
    _slow_ms: float = 0.0
    _unsorted: int = 0
    """Samples recorded since `_slow_ms` was computed."""

    def slow_task_ms(self) -> float:
        """90th percentile of recent task latencies: a slow task, not the worst outlier."""
        if self._unsorted and (self._unsorted >= RESORT_EVERY or len(self._task_ms) <= 64):
            ordered = sorted(self._task_ms)
            self._slow_ms = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
            self._unsorted = 0
        return self._slow_ms

    def reserve_ms(self) -> float:
        """Time to keep in hand when deciding whether to start another task."""
        if not self.adaptive:
            return float(self.margin_ms)
        return self.margin_ms + 1.2 * self.slow_task_ms()

    def can_start(self, remaining_ms: float) -> bool:
        return remaining_ms > self.reserve_ms()

    def work_deadline_ms(self, remaining_ms: float) -> float:
        """How long tasks started now may run at most (requests are cut to fit)."""
        return max(0.0, remaining_ms - self.margin_ms)

    def record_task(self, elapsed_ms: float) -> None:
        self._task_ms.append(elapsed_ms)
        self._unsorted += 1

    def record_rate(self, tasks: int, seconds: float, work: str = "") -> None:
        if tasks <= 0 or seconds <= 0:
            return
        rate = tasks / seconds
        known = self._rate > 0 and work == self._rate_of
        self._rate = 0.7 * self._rate + 0.3 * rate if known else rate
        self._rate_of = work

    @property
    def rate(self) -> float:
        return self._rate

    def plan_size(self, remaining_ms: float, level: int, work: str = "") -> int:
        """How many tasks past the position the next plan covers (at least `level`); a rate
        measured on other work than `work` is not used."""
        if not self.adaptive or self._rate <= 0 or work != self._rate_of:
            return max(self.initial_plan, level)
        work_s = max(0.0, self.work_deadline_ms(remaining_ms) - self.slow_task_ms()) / 1000
        horizon_s = min(work_s, 2 * self.commit_interval_ms / 1000)
        return max(level, min(self.max_plan, int(self._rate * horizon_s) + level))
