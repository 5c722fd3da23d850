"""Fakes shared by the unit tests: a Lambda context with a clock, an invoker that records."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from worker.handoff import HandoffError
from worker.notice import NoticeError
from worker.processor import TaskContext
from worker.tasks import Task

FUNCTION_ARN = "arn:aws:lambda:us-east-1:000000000000:function:baton"
_ids = itertools.count()


@dataclass
class FakeClock:
    """Virtual time for the container and Lambda's remaining time, advanced by hand (or by
    a fake processor); wall and monotonic time move together."""

    at_ms: float = 1_800_000_000_000.0

    def advance(self, ms: float) -> None:
        self.at_ms += ms

    def now_ms(self) -> int:
        return int(self.at_ms)

    def monotonic(self) -> float:
        return self.at_ms / 1000

    def sleep(self, seconds: float) -> None:
        self.advance(seconds * 1000)


@dataclass
class FakeContext:
    clock: FakeClock
    timeout_ms: float = 60_000
    aws_request_id: str = field(default_factory=lambda: f"req-{next(_ids)}")
    invoked_function_arn: str = FUNCTION_ARN
    function_name: str = "baton"
    memory_limit_in_mb: str = "1024"
    """A string, as Lambda's Python runtime gives it."""

    def __post_init__(self) -> None:
        self.deadline_ms = self.clock.at_ms + self.timeout_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int(self.deadline_ms - self.clock.at_ms))


@dataclass
class RecordingInvoker:
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    fail: bool = False

    def invoke_async(
        self, function: str, payload: dict[str, Any], *, within_s: float | None = None
    ) -> None:
        if self.fail:
            raise HandoffError("invoke refused (test)")
        self.calls.append((function, payload))

    def pop(self) -> dict[str, Any]:
        return self.calls.pop(0)[1]


class Killed(BaseException):
    """Stands in for SIGKILL: no `except Exception` in the worker can catch it."""


def ticking_processor(
    clock: FakeClock, ms_per_task: float, kill_on: Callable[[Task], bool] = lambda t: False
) -> Callable[[Task, TaskContext], dict[str, Any]]:
    """A processor whose every task costs `ms_per_task` of the leg's time."""

    def process(task: Task, ctx: TaskContext) -> dict[str, Any]:
        clock.advance(ms_per_task)
        if kill_on(task):
            raise Killed(f"task {task.index} killed the process")
        return {"echo": task.url}

    return process


@dataclass
class RecordingNotifier:
    """Takes every completion notice; `fail` makes the next sends fail (as a target down)."""

    sent: list[dict[str, Any]] = field(default_factory=list)
    fail: bool = False

    def send(self, detail: dict[str, Any]) -> list[str]:
        if self.fail:
            raise NoticeError("notice target down (test)")
        self.sent.append(detail)
        return ["recorded"]
