"""Per-task work: the default fetch-and-extract processor, and plugging in others.

A processor is `fn(task, ctx) -> dict`. Whatever it returns is merged into the
task's result row; whatever it raises becomes that task's `error`, except
`OutOfTimeError`, which defers the task to the next leg. It never takes the
leg down.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from worker.clock import SYSTEM_CLOCK, Clock
from worker.exceptions import ConfigError, OutOfTimeError
from worker.extract import extract, without_userinfo
from worker.fetch import Fetcher, FetchError
from worker.tasks import Task

HTML_TYPES = ("text/html", "application/xhtml+xml")


@dataclass(frozen=True)
class TaskContext:
    fetcher: Fetcher
    deadline: float
    """`clock.monotonic()` by which the task must return."""
    clock: Clock = SYSTEM_CLOCK

    def time_left(self) -> float:
        return self.deadline - self.clock.monotonic()


Processor = Callable[[Task, TaskContext], dict[str, Any]]


def process(task: Task, ctx: TaskContext) -> dict[str, Any]:
    """The default processor: fetch the URL and extract the page.

    It returns only what it learnt; `run_one` lays it over `task.result_base()`,
    which holds every field of the row.
    """
    assert task.url is not None
    started = ctx.clock.monotonic()
    headers = task.options.get("headers")
    row: dict[str, Any] = {}
    try:
        page = ctx.fetcher.fetch(
            task.url, ctx.deadline, headers if isinstance(headers, dict) else None
        )
    except FetchError as exc:
        row["error"] = str(exc)
        row["attempts"] = exc.attempts
        row["elapsed_ms"] = round((ctx.clock.monotonic() - started) * 1000, 1)
        return row
    content_type = page.content_type.split(";", 1)[0].strip().lower()
    row.update(
        final_url=without_userinfo(page.final_url),
        status=page.status,
        content_type=content_type,
        bytes=len(page.body),
        attempts=page.attempts,
    )
    if page.status >= 400:
        row["error"] = f"HTTP {page.status}"
    elif content_type and content_type not in HTML_TYPES:
        row["error"] = f"not HTML: {content_type}"
    else:
        try:
            row.update(extract(page.body, page.final_url, page.content_type))
        except Exception as exc:  # a hostile page must cost one task, not the leg
            row["error"] = f"extraction failed: {type(exc).__name__}: {exc}"
    row["elapsed_ms"] = round((ctx.clock.monotonic() - started) * 1000, 1)
    return row


def load_processor(spec: str) -> Processor:
    """Import `module:function`, failing at cold start with a clear message."""
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"processor {spec!r}: cannot import {module_name!r}: {exc}") from exc
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ConfigError(f"processor {spec!r}: {module_name} has no callable {attr!r}")
    processor: Processor = fn
    return processor


@dataclass(frozen=True)
class Outcome:
    """One task's result row, or why it must wait for the next leg."""

    row: dict[str, Any] | None
    deferred: OutOfTimeError | None
    elapsed_ms: float
    left_ms: float = 0.0
    """Time the task had left before the batch's deadline when it started."""


def run_tasks(
    tasks: list[Task], processor: Processor, ctx: TaskContext, pool: ThreadPoolExecutor
) -> list[Outcome]:
    """Run a batch concurrently; outcomes come back in task order, one per task."""
    return list(pool.map(lambda task: run_one(task, processor, ctx), tasks))


def run_one(task: Task, processor: Processor, ctx: TaskContext) -> Outcome:
    """One task: its row, or why it is deferred; never an exception."""
    started = ctx.clock.monotonic()
    left_ms = ctx.time_left() * 1000
    row = task.result_base()
    if task.error is not None:
        row["error"] = task.error
        return Outcome(row, None, 0.0, left_ms)
    try:
        produced = processor(task, ctx)
    except OutOfTimeError as exc:
        return Outcome(None, exc, _ms_since(ctx.clock, started), left_ms)
    except Exception as exc:
        row["error"] = f"processor raised {type(exc).__name__}: {exc}"
    else:
        if isinstance(produced, dict):
            row.update({k: v for k, v in produced.items() if k != "index"})
        else:
            row["error"] = f"processor returned {type(produced).__name__}, not a dict"
    elapsed_ms = _ms_since(ctx.clock, started)
    if row["elapsed_ms"] is None:
        row["elapsed_ms"] = round(elapsed_ms, 1)
    return Outcome(row, None, elapsed_ms)


def _ms_since(clock: Clock, started: float) -> float:
    return (clock.monotonic() - started) * 1000
