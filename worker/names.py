"""Names the runtime, the dev stack, the CLI and the deploy scripts agree on; one place each."""

from __future__ import annotations

TASKS_PREFIX = "tasks/"
"""Uploads under it start runs (the trigger filter, and `Settings.tasks_prefix`'s default)."""
RESULTS_PREFIX = "runs/"
"""Run state and results; never triggers the worker (`Settings.results_prefix`'s default)."""
SCHEDULES_PREFIX = "schedules/"
"""One-time schedules waiting for their time (worker.schedule); neither prefix may overlap it."""
TRIGGER_SUFFIXES = (".json", ".jsonl")
FUNCTION_NAME = "baton-worker"
ENV_PREFIX = "BATON_"


def triggers(key: str, tasks_prefix: str = TASKS_PREFIX) -> bool:
    """Whether an upload of `key` starts a run (the bucket notification's filter)."""
    return key.startswith(tasks_prefix) and key.endswith(TRIGGER_SUFFIXES)


TICK_RATE = "rate(1 minute)"
"""The one EventBridge rule that carries the sweep and the schedule tick (template and
LocalStack deploy alike)."""

CRAWL_SUFFIX = ".crawl.json"
"""An upload under the tasks prefix with this suffix is a crawl spec, not a task list."""
