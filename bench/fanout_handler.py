"""The fan-out bench's Lambda handler: baton's own, with a switch to turn stealing off.

`bench.fanout` deploys its function with `handler = "bench/fanout_handler.handler"`,
so this module is imported in each container of the embedded stack, never in the
Lambda zip. It wraps `handler.handler` unchanged, and makes `Leg.take_a_stolen_range`
decline (a finished chain then just ends, as a one-chain run does) for runs whose task
list key contains `NO_STEAL`: the straggler bench runs the same list with and without
stealing on one warm stack, and a user-facing setting for a measurement alone would
be one more knob to document and test.
"""

from __future__ import annotations

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


def handler(event: Any, context: Any) -> Any:
    return baton.handler(event, context)
