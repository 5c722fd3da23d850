"""The seeded processor: each task attempt's latency and outcome, drawn when the world is made.

A task's attempts are drawn up front from the workload stream, so what a task does
on its n-th attempt does not depend on how the run was scheduled. The processor
sleeps on the clock (inside `TaskPool`, that is the task's own virtual time), and:

- returns a row (ok, an HTTP 500, or a 429 that makes the host back off), or raises
  (the row's error is then "processor raised ...");
- raises `OutOfTimeError` when the attempt needs more than the time the leg gave it
  (a task's deadline), or when the attempt was drawn to run out of time;
- for a killer task, marks the task scope: the invocation is killed when the task
  would have ended (`TaskPool` schedules it).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.sim.executors import SimClock
from tests.sim.faults import FaultPlan
from worker.exceptions import OutOfTimeError
from worker.processor import TaskContext
from worker.tasks import Task

ATTEMPTS = 6
"""Attempts drawn per task; later attempts repeat the last one."""


@dataclass(frozen=True)
class Attempt:
    latency_ms: int
    kind: str
    """ok, error, raise, throttled, out_of_time"""
    slow: bool = False


@dataclass(frozen=True)
class TaskPlan:
    killer: bool
    attempts: tuple[Attempt, ...]


def draw_plan(rng: random.Random, rates: dict[str, float]) -> TaskPlan:
    """A task's attempts, from the world's processor rates (counted when they happen)."""
    attempts = []
    for _ in range(ATTEMPTS):
        slow = rng.random() < rates["task_slow"]
        latency = rng.randint(1_000, 6_000) if slow else rng.randint(20, 800)
        kind = "ok"
        if rng.random() < rates["task_out_of_time"]:
            kind = "out_of_time"
        elif rng.random() < rates["task_throttled"]:
            kind = "throttled"
        elif rng.random() < rates["task_error"]:
            kind = rng.choice(("error", "raise"))
        attempts.append(Attempt(latency, kind, slow))
    return TaskPlan(rng.random() < rates["task_killer"], tuple(attempts))


class SimProcessor:
    """`container.processor`: `fn(task, ctx) -> dict`, as the runtime calls it."""

    def __init__(
        self,
        clock: SimClock,
        plans: dict[str, TaskPlan],
        faults: FaultPlan,
        on_start: Callable[[Task], None] | None = None,
    ) -> None:
        self.clock = clock
        self.plans = plans
        self.faults = faults
        self.on_start = on_start
        """Told of every attempt as it starts (the oracle checks who works it)."""
        self.tries: Counter[str] = Counter()

    def __call__(self, task: Task, ctx: TaskContext) -> dict[str, Any]:
        assert task.url is not None
        if self.on_start is not None:
            self.on_start(task)
        plan = self.plans[task.url]
        attempt = plan.attempts[min(self.tries[task.url], ATTEMPTS - 1)]
        self.tries[task.url] += 1
        counts = self.faults.counts
        if attempt.slow:
            counts["task_slow"] += 1
        if attempt.kind != "ok":
            counts[
                "task_error" if attempt.kind in ("error", "raise") else f"task_{attempt.kind}"
            ] += 1
        left_ms = int(ctx.time_left() * 1000)
        if attempt.kind == "out_of_time":
            self.clock.sleep(min(left_ms, attempt.latency_ms) / 1000)
            raise OutOfTimeError("no time left for another request", tried=left_ms > 0)
        if attempt.latency_ms > left_ms:
            self.clock.sleep(max(0, left_ms) / 1000)
            raise OutOfTimeError(f"ran out of time after {left_ms} ms", tried=True)
        self.clock.sleep(attempt.latency_ms / 1000)
        if plan.killer:
            scope = self.clock.scope
            assert scope is not None, "a task runs inside TaskPool"
            scope.kill = f"task {task.index} ({task.url}) killed its process"
            return {}
        row: dict[str, Any] = {"attempts": self.tries[task.url], "elapsed_ms": attempt.latency_ms}
        if attempt.kind == "error":
            return {**row, "status": 500, "error": "HTTP 500"}
        if attempt.kind == "throttled":
            return {**row, "status": 429, "error": "HTTP 429"}
        if attempt.kind == "raise":
            raise ValueError(f"simulated failure of task {task.index}")
        return {**row, "status": 200, "title": f"page {task.index}", "bytes": 1000 + task.index}
