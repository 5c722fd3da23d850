"""What an invocation uses, metered, and folded into the chain's checkpoint exactly once.

Each leg (and each start) has a `Meter`: its billed time so far (wall time from its
start, plus INIT on a cold start), its memory size, invokes made and S3 requests by
kind (the difference of `ObjectStore.counts()` since it began). Every checkpoint write
the leg makes carries the usage not yet recorded (`pending`) added to the
checkpoint's `usage`, and only once that CAS has landed does the meter count it as
recorded. So:

- a write redone on top of a steal adds its delta once (the redo keeps the delta);
- a write whose answer was lost (or whose call failed) but which landed is read back,
  not written again; if even the read-back failed, `Leg.release` finds it in place;
- a leg that loses the checkpoint records nothing more: its tail since its last
  write is not counted (a few seconds at most: it commits every ~10 s);
- a leg that dies holding the checkpoint was billed until its deadline: whoever
  claims after it adds the time from the dead leg's last write to its deadline.

The requests of a write are counted ahead, in that write (`ahead`): the CAS PUT
itself, and for a hand-off the invoke and for a chain's end the done marker that
follow it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from worker.checkpoint import Checkpoint
from worker.clock import Clock
from worker.container import Container
from worker.s3 import REQUEST_KINDS, ObjectStore


@dataclass(frozen=True)
class Usage:
    requests: int = 0
    """Lambda requests (invocations) counted."""
    billed_ms: int = 0
    mb_ms: int = 0
    """Memory size (MB) times billed ms, summed: GB-seconds without rounding, and right
    when a deploy changed the memory size mid-run."""
    init_ms: int = 0
    dead_ms: int = 0
    """Billed time of legs that died holding a checkpoint, from their last write to their
    deadline (part of `billed_ms` too)."""
    invokes: int = 0
    items: int = 0
    item_ms: int = 0
    """Tasks with a row, and their own elapsed time summed (what one invocation per task,
    as a Step Functions Map would make, would be billed for)."""
    s3_get: int = 0
    s3_put: int = 0
    s3_list: int = 0
    s3_head: int = 0
    s3_delete: int = 0
    s3_copy: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in _FIELDS})

    def __sub__(self, other: Usage) -> Usage:
        return Usage(**{f.name: getattr(self, f.name) - getattr(other, f.name) for f in _FIELDS})

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in _FIELDS}

    @classmethod
    def of(cls, data: Mapping[str, Any] | None) -> Usage:
        """From a checkpoint's `usage` (an older checkpoint has none: zero)."""
        known = {f.name for f in _FIELDS}
        return cls(**{k: int(v) for k, v in (data or {}).items() if k in known})

    def s3(self) -> dict[str, int]:
        return {kind: getattr(self, f"s3_{kind}") for kind in REQUEST_KINDS}


_FIELDS = fields(Usage)
AT_KEY = "at_ms"
"""In a checkpoint's usage: when the last owner recorded its usage (a dead leg's time is
counted from there to its deadline)."""
ONE_PUT = Usage(s3_put=1)


def recorded(cp: Checkpoint) -> Usage:
    return Usage.of(cp.usage)


def with_usage(cp: Checkpoint, delta: Usage, at_ms: int) -> Checkpoint:
    return replace(cp, usage={**(recorded(cp) + delta).as_dict(), AT_KEY: at_ms})


def dead_leg(cp: Checkpoint, *, lease_slack_ms: int, memory_mb: int) -> Usage:
    """A claim over an owner that died: it was billed until its deadline (its lease less
    the slack), and recorded up to its last write."""
    if cp.owner is None or not cp.lease_until_ms:
        return Usage()
    last = int(cp.usage.get(AT_KEY, 0)) or cp.heartbeat_ms
    unbilled = max(0, cp.lease_until_ms - lease_slack_ms - last)
    return Usage(billed_ms=unbilled, mb_ms=unbilled * memory_mb, dead_ms=unbilled)


def memory_mb(context: Any) -> int:
    """The function's memory size: the context's (a string on Lambda's Python runtime),
    else Lambda's variable; 0 when neither says."""
    for value in (
        getattr(context, "memory_limit_in_mb", None),
        os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"),
    ):
        try:
            if value not in (None, ""):
                return int(str(value))
        except ValueError:
            continue
    return 0


def init_ms(environ: Mapping[str, str] | None = None) -> int:
    """The INIT phase of this container, billed on managed runtimes: the process's age at
    its first invocation, on an on-demand cold start (Lambda and the local runtime say
    so in AWS_LAMBDA_INITIALIZATION_TYPE); 0 elsewhere (tests, the simulator)."""
    env = os.environ if environ is None else environ
    if env.get("AWS_LAMBDA_INITIALIZATION_TYPE") != "on-demand":
        return 0
    try:
        with open("/proc/self/stat") as stat:
            started_ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as uptime:
            up_s = float(uptime.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0
    return max(0, int((up_s - started_ticks / os.sysconf("SC_CLK_TCK")) * 1000))


class Meter:
    """One invocation's usage so far, and how much of it is already in a checkpoint."""

    def __init__(
        self, clock: Clock, objects: ObjectStore, *, memory_mb: int, init_ms: int = 0
    ) -> None:
        self.clock = clock
        self.objects = objects
        self.memory_mb = memory_mb
        self.init_ms = init_ms
        self.started = clock.monotonic()
        self.base = objects.counts()
        self.invokes = 0
        self.items = 0
        self.item_ms = 0.0
        self.recorded = Usage()

    def so_far(self) -> Usage:
        elapsed_ms = (self.clock.monotonic() - self.started) * 1000
        billed = math.ceil(round(elapsed_ms, 3)) + self.init_ms  # Lambda bills whole ms, up
        counts = self.objects.counts()
        return Usage(
            requests=1,
            billed_ms=billed,
            mb_ms=billed * self.memory_mb,
            init_ms=self.init_ms,
            invokes=self.invokes,
            items=self.items,
            item_ms=round(self.item_ms),
            **{f"s3_{kind}": counts[kind] - self.base[kind] for kind in REQUEST_KINDS},
        )

    def pending(self, ahead: Usage | None = None) -> Usage:
        """What the next write should add: everything not yet recorded, and `ahead`."""
        return self.so_far() + (ahead or Usage()) - self.recorded

    def landed(self, delta: Usage) -> None:
        """A write carrying `delta` landed."""
        self.recorded = self.recorded + delta

    def rows(self, rows: list[dict[str, Any]]) -> None:
        self.items += len(rows)
        self.item_ms += sum(float(r.get("elapsed_ms") or 0) for r in rows)


def start_meter(container: Container, context: Any) -> Meter:
    """The meter of one invocation; the first meter of the container's first invocation
    also carries its INIT time (recorded by `dispatch`, `Container.begin_invocation`)."""
    return Meter(
        container.clock,
        container.s3,
        memory_mb=memory_mb(context),
        init_ms=container.take_init_ms(),
    )
