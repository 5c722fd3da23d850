"""The fan-out bench's Lambda handler: baton's own, with stealing switchable, short legs.

`bench.fanout` deploys its function with `handler = "bench/fanout_handler.handler"`,
so this module is imported in each container of the embedded stack, never in the
Lambda zip. It wraps `handler.handler` unchanged, and makes `Leg.take_a_stolen_range`
decline (a finished chain then just ends, as a one-chain run does) for runs whose task
list key contains `NO_STEAL`: the straggler bench runs the same list with and without
stealing on one warm stack, and a user-facing setting for a measurement alone would
be one more knob to document and test.

With `BENCH_LEG_S` set, the handler's context says a leg has that many seconds from its
start (or less, if the function's real timeout is nearer): legs hand off as under a
short timeout, while the function's real timeout stays long, so a container that is
slow to start on the shared cores is not killed mid-leg (a kill, and the cold start of
its replacement, would measure the machine's load rather than the protocol).
"""

from __future__ import annotations

import os
import time
from typing import Any

import handler as baton
from worker.leg import Leg

NO_STEAL = "-nosteal-"
"""In a task list's key: that run's chains never steal."""

_take_a_stolen_range = Leg.take_a_stolen_range


def _maybe_steal(self: Leg) -> bool:
    if NO_STEAL in self.event.key:
        return False
    return _take_a_stolen_range(self)


Leg.take_a_stolen_range = _maybe_steal  # type: ignore[method-assign]


LEG_MS = float(os.environ.get("BENCH_LEG_S") or 0) * 1000


class _ShortLeg:
    """A Lambda context whose remaining time ends `LEG_MS` after the invocation began."""

    def __init__(self, context: Any) -> None:
        self._context = context
        self._deadline_ms = time.monotonic() * 1000 + LEG_MS

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    def get_remaining_time_in_millis(self) -> int:
        mine = int(self._deadline_ms - time.monotonic() * 1000)
        return max(0, min(mine, int(self._context.get_remaining_time_in_millis())))


def handler(event: Any, context: Any) -> Any:
    return baton.handler(event, _ShortLeg(context) if LEG_MS > 0 else context)
