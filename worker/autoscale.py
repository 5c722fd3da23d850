"""How many tasks a leg keeps in flight: the level that keeps its CPU share busy, no more.

A fixed pool is wrong twice over: against a 200 ms site, 8 threads leave the
CPU idle; against a fast one, 64 only add thread hand-offs. The controller
measures, every `interval_s`, the process CPU time against the share of a vCPU
the function's memory buys (Lambda: 1,769 MB is one vCPU; the local runtime
sets the same variable), and

- grows while the CPU is under its target and every slot is busy (work waits),
  faster the further below target it is (doubling below a quarter of it, so a
  leg reaches a latency-bound site's level in a couple of seconds);
- shrinks on CPU saturation, on memory pressure, and when tasks time out;
- holds otherwise (slots idle means the window, not the level, is the limit), and
  when tasks take much longer than the quickest the container has seen: that is a
  queue, at the site or for this process's CPU, and tasks added to it would only
  wait in it (Scrapy's AutoThrottle steers by the same latency).

Throttling (429/503) is a host's business, not the leg's: `worker.hosts` backs
that host off alone. The level learned is kept by the container, and written
to the checkpoint so a cold container starts where the last leg ended instead
of ramping from scratch (Crawlee's AutoscaledPool starts low every run).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

MB_PER_VCPU = 1769
"""Lambda allocates CPU in proportion to memory: 1,769 MB buys one vCPU."""
MAX_USEFUL_VCPUS = 1.0
"""One Python process holds the GIL for parsing and encoding: more vCPUs do not help it."""


INFLATED = 1.4
"""Mean task time over the quickest seen, past which more in flight only queues."""
QUICKEST_DRIFT = 1.02
"""Per interval with tasks, the quickest mean may rise this much: a site that got slower
for good is the new norm after about 17 such intervals, so the level grows against it."""
QUICKEST_FLOOR_S = 0.005
"""The quickest mean counted: tasks quicker than this (a signed URL, a blocked address)
are no latency to steer by, and a zero would hold the level for good."""


def cpu_share(environ: dict[str, str] | None = None) -> float:
    """The vCPUs this function may use, from `AWS_LAMBDA_FUNCTION_MEMORY_SIZE`."""
    env = os.environ if environ is None else environ
    try:
        memory_mb = int(env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "0"))
    except ValueError:
        memory_mb = 0
    if memory_mb <= 0:
        return MAX_USEFUL_VCPUS
    return min(MAX_USEFUL_VCPUS, memory_mb / MB_PER_VCPU)


def _process_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


@dataclass
class Autoscaler:
    """The concurrency controller; `fixed` (BATON_CONCURRENCY) pins the level."""

    maximum: int = 256
    start: int = 8
    fixed: int | None = None
    share: float = MAX_USEFUL_VCPUS
    target: float = 0.75
    """CPU use (of `share`) the controller steers to: headroom for the leg's own S3 work."""
    interval_s: float = 0.5
    cpu_seconds: Callable[[], float] = field(default=_process_cpu_seconds)
    level: float = field(init=False)
    _last_at: float | None = field(default=None, init=False)
    _last_cpu: float = field(default=0.0, init=False)
    _tasks: int = field(default=0, init=False)
    _timeouts: int = field(default=0, init=False)
    _timed: int = field(default=0, init=False)
    _task_s: float = field(default=0.0, init=False)
    _quickest_s: float | None = field(default=None, init=False)
    _busy: float = field(default=0.0, init=False)
    _samples: int = field(default=0, init=False)
    learned: bool = field(default=False, init=False)
    """Whether any adjustment has been made in this container (else a checkpoint's level wins)."""
    last_cpu_use: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        self.level = float(self.fixed or max(1, min(self.start, self.maximum)))

    @property
    def current(self) -> int:
        return int(self.fixed or max(1, min(self.maximum, round(self.level))))

    def resume_from(self, level: int) -> None:
        """At a leg's start: a cold container starts at the level the run's last leg
        reached. The quickest task time is the leg's own (another run's work, earlier in
        this container, is no measure of this one's)."""
        self._quickest_s = None
        if self.fixed is None and not self.learned and level > 0:
            self.level = float(min(self.maximum, level))

    def task_done(self, *, timed_out: bool, seconds: float | None = None) -> None:
        """`seconds`: the time of a task that ran to an ok row (not one deferred, failed or
        retried: its time is its error's or its backoff's, not the site's latency)."""
        self._tasks += 1
        self._timeouts += int(timed_out)
        if seconds is not None:
            self._timed += 1
            self._task_s += seconds

    def tick(self, now: float, in_flight: int, waiting: bool, memory_use: float = 0.0) -> int:
        """Record how busy the slots are; every `interval_s`, adjust. Returns the level."""
        self._busy += in_flight >= self.current and waiting
        self._samples += 1
        if self._last_at is None:
            self._last_at, self._last_cpu = now, self.cpu_seconds()
            return self.current
        elapsed = now - self._last_at
        if elapsed < self.interval_s or self.fixed is not None:
            return self.current
        cpu = self.cpu_seconds()
        use = (cpu - self._last_cpu) / elapsed / self.share if elapsed > 0 else 0.0
        saturated = self._busy / self._samples >= 0.5
        timeouts = self._timeouts / self._tasks if self._tasks else 0.0
        self.level = self._next(use, saturated, timeouts, memory_use, self._queued())
        self.learned = True
        self.last_cpu_use = use
        self._last_at, self._last_cpu = now, cpu
        self._tasks = self._timeouts = self._samples = self._timed = 0
        self._busy = self._task_s = 0.0
        return self.current

    def _queued(self) -> bool:
        """Whether this interval's tasks took INFLATED times the quickest interval's."""
        if not self._timed:
            return False
        mean = max(QUICKEST_FLOOR_S, self._task_s / self._timed)
        quickest = self._quickest_s
        self._quickest_s = mean if quickest is None else min(mean, quickest * QUICKEST_DRIFT)
        return quickest is not None and mean > quickest * INFLATED

    def _next(
        self, use: float, saturated: bool, timeouts: float, memory_use: float, queued: bool
    ) -> float:
        if memory_use > 0.85 or timeouts > 0.2 or use > 0.95:
            return max(1.0, self.level * 0.8)
        if saturated and use < self.target and not queued:
            step = 2.0 if use < self.target / 4 else 1.5 if use < self.target / 2 else 1.15
            return min(float(self.maximum), self.level * step + 1)
        return self.level
