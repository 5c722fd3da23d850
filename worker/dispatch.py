"""Route a parsed event to its action and shape the handler's answer."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from worker.container import Container
from worker.events import IgnoredEvent, LegEvent, StartRequest, SweepEvent, parse_event
from worker.exceptions import BadEventError, ConfigError, RunNotFoundError, TaskListError
from worker.leg import LambdaContext, Leg
from worker.schedule import TickResult, tick
from worker.start import start_run
from worker.sweep import sweep
from worker.usage import init_ms

log = logging.getLogger(__name__)


def dispatch(container: Container, event: Any, context: LambdaContext) -> dict[str, Any]:
    """Act on one event. Bad input is answered, not raised, so Lambda does not retry it."""
    settings = container.settings
    container.begin_invocation(init_ms)
    try:
        parsed = parse_event(event, settings.tasks_prefix, settings.results_prefix)
        outcomes: list[dict[str, Any]] = []
        for item in parsed:
            outcomes.append(_act(container, item, context))
    except (BadEventError, TaskListError, RunNotFoundError, ConfigError) as exc:
        log.error("rejected event: %s", exc)
        return {"ok": False, "error": str(exc), "error_type": type(exc).__name__}
    return {"ok": True, "results": outcomes}


MAX_TICK_AHEAD_MS = 60_000
"""A sweep event's `time` further ahead of the function's clock than this is refused for
the tick (a manual sweep with a future time would start schedules early); the sweep runs."""
TICK_SHARE = 0.5
"""The schedule tick may use this share of the invocation's time left; the sweep after it
gets the rest (schedules still due wait for the next tick)."""


def schedule_tick(
    container: Container, bucket: str, at_ms: int | None, context: LambdaContext
) -> TickResult:
    """The schedule tick rides on the sweep's rule: due schedules move before the sweep.
    An error in it is logged and reported, never raised: the sweep must still run.

    The tick moves what is due at the event's `time` when it has one (the embedded stack's
    ticks, a manual sweep), else at the function's clock: on AWS the template's rule sends
    a constant input, so there the function's clock decides."""
    clock = container.clock
    at = clock.now_ms() if at_ms is None else at_ms
    if at > clock.now_ms() + MAX_TICK_AHEAD_MS:
        log.error("sweep event time %s ms is ahead of the clock: no schedule tick", at)
        return TickResult(
            errors=[
                f"schedule tick: the event's time is {(at - clock.now_ms()) / 1000:.0f} s ahead "
                "of the function's clock: refused (it would start schedules early)"
            ]
        )
    deadline = clock.monotonic() + context.get_remaining_time_in_millis() * TICK_SHARE / 1000
    try:
        return tick(
            container.s3,
            bucket,
            datetime.fromtimestamp(at / 1000, UTC),
            tasks_prefix=container.settings.tasks_prefix,
            out_of_time=lambda: clock.monotonic() >= deadline,
        )
    except Exception as exc:
        log.exception("schedule tick failed; the sweep runs all the same")
        return TickResult(errors=[f"schedule tick: {type(exc).__name__}: {exc}"])


def _act(container: Container, item: Any, context: LambdaContext) -> dict[str, Any]:
    if isinstance(item, IgnoredEvent):
        log.info("ignored: %s", item.reason)
        return {"action": "ignored", "reason": item.reason}
    if isinstance(item, SweepEvent):
        if not container.settings.bucket:
            raise ConfigError("the sweep needs BATON_BUCKET to know which bucket to scan")
        bucket = container.settings.bucket
        moved = schedule_tick(container, bucket, item.at_ms, context)
        swept = sweep(container, bucket, context.invoked_function_arn)
        return {
            "action": "sweep",
            "scheduled": moved.moved,
            "deferred": moved.deferred,
            "checked": swept.checked,
            "resumed": swept.resumed,
            "tidied": swept.tidied,
            "errors": moved.errors + swept.errors,
        }
    if isinstance(item, StartRequest):
        started = start_run(container, item, context)
        return {"action": started.outcome, **started.as_dict()}
    assert isinstance(item, LegEvent)
    return {"action": "leg", **Leg(container, item, context).run().as_dict()}
