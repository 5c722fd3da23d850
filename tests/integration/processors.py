"""Per-task processors the integration tests plug into the worker (`BATON_PROCESSOR`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from worker.processor import TaskContext, process
from worker.tasks import Task


def hang_once(task: Task, ctx: TaskContext) -> dict[str, Any]:
    """Hang past the Lambda timeout the first time a task marked `hang_marker` runs."""
    marker = task.options.get("hang_marker")
    if isinstance(marker, str) and not Path(marker).exists():
        Path(marker).write_text("hung once\n")
        time.sleep(600)
    return process(task, ctx)


def sleep_100ms(task: Task, ctx: TaskContext) -> dict[str, Any]:
    """A task that takes 100 ms of wall time and almost no CPU, on any machine."""
    time.sleep(0.1)
    return {"slept_ms": 100}
