"""The table of faults: one entry per kind, from which each world's plan, the draws and the
counts derive.

A world draws, per kind, whether it is on and at what rate (so some worlds are
calm and some are storms). `layer` says who asks: the S3 fake at every call, the
Lambda service at every invoke or event, the world at a few moments, the processor
at every task attempt, a crawl world at the crawl's own moments (`tests.sim.crawl`:
after a write of the kind it names landed). `per` says what the rate is a
probability of. Kinds are appended, never inserted: a world's rates are drawn in
table order, so a new kind leaves every older world as it was. Faults of the
S3, Lambda, world and crawl layers stop when the world turns calm (only Lambda and the
sweep keep going, and every run must then end); the processor's are the workload
and never stop.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass


@dataclass(frozen=True)
class FaultKind:
    name: str
    layer: str
    """s3 | lambda | world | notice | processor | crawl"""
    per: str
    """What the rate is the chance of: call (an S3 call), write (an S3 write), invoke,
    event (an accepted async event), world (once in a world, up to `count` times),
    notice (a completion notice sent), attempt (a task attempt), task (a task of the
    list), point (the moment a crawl fault names: `tests.sim.crawl`)."""
    low: float
    high: float
    off: float
    """The chance a world has this kind switched off altogether."""
    help: str
    count: int = 1


# fmt: off
FAULTS: tuple[FaultKind, ...] = (
    FaultKind("s3_error_before", "s3", "call", 0.002, 0.03, 0.3,
              "500 InternalError or 503 SlowDown that botocore's retries did not hide; "
              "nothing happened"),
    FaultKind("s3_error_after", "s3", "write", 0.002, 0.03, 0.3,
              "the write landed, then the caller sees a 500 (its retries failed)"),
    FaultKind("s3_lost_answer", "s3", "write", 0.005, 0.06, 0.3,
              "the write landed and its answer was lost: botocore sends the same request "
              "again (a conditional retry then gets 412)"),
    FaultKind("s3_throttle", "s3", "call", 0.01, 0.1, 0.3,
              "SlowDown retried inside the client: the call takes 0.1-2 s longer"),
    FaultKind("kill_before", "s3", "call", 0.0005, 0.008, 0.3,
              "the invocation is killed between two S3 calls (before this one leaves)"),
    FaultKind("kill_after", "s3", "write", 0.0005, 0.01, 0.3,
              "the invocation is killed after its write landed, before it saw the answer"),
    FaultKind("invoke_throttled", "lambda", "invoke", 0.01, 0.1, 0.3,
              "the Invoke API keeps refusing until the hand-off gives up (HandoffError)"),
    FaultKind("invoke_lost_answer", "lambda", "invoke", 0.005, 0.05, 0.4,
              "the event was queued, but the caller sees an error"),
    FaultKind("event_duplicate", "lambda", "event", 0.01, 0.15, 0.3,
              "an async event delivered twice (at-least-once delivery)"),
    FaultKind("event_drop", "lambda", "event", 0.005, 0.08, 0.3,
              "a leg or sweep event is never delivered (an S3 notification goes to the "
              "dead-letter queue instead, and is redriven when the world is calm)"),
    FaultKind("event_delay", "lambda", "event", 0.01, 0.15, 0.3,
              "an event delivered 1 s to 3 min late, overtaking later ones"),
    FaultKind("recursion_cutoff", "lambda", "world", 0.05, 0.05, 0.0,
              "RecursiveLoop is not Allow: Lambda stops a chain of self-invokes after 16 "
              "hops (the sweep starts a new chain)"),
    FaultKind("sweep", "world", "world", 0.3, 0.9, 0.2,
              "a sweep tick at a random moment, besides the one every minute", count=4),
    FaultKind("cancel", "world", "world", 0.12, 0.12, 0.0,
              "the run's cancel marker written at a random moment"),
    FaultKind("replace_list", "world", "world", 0.12, 0.12, 0.0,
              "the task list uploaded again, changed, at a random moment (a new run; "
              "the old one ends superseded)"),
    FaultKind("duplicate_upload_event", "world", "world", 0.1, 0.1, 0.0,
              "S3 sends the upload's notification twice"),
    FaultKind("deploy", "world", "world", 0.1, 0.1, 0.0,
              "the first run was made by 0.1 (layout 1: one checkpoint.json) and worked for "
              "a while; then a deploy: its v1 leg payloads still in Lambda's queue"),
    FaultKind("task_error", "processor", "attempt", 0.02, 0.2, 0.2,
              "the task fails: an error row (HTTP 500, or the processor raises)"),
    FaultKind("task_throttled", "processor", "attempt", 0.01, 0.1, 0.5,
              "the host answers 429: an error row, and the host backs off"),
    FaultKind("task_slow", "processor", "attempt", 0.02, 0.15, 0.3,
              "the task takes 1-6 s instead of 20-800 ms"),
    FaultKind("task_out_of_time", "processor", "attempt", 0.01, 0.08, 0.4,
              "the task runs out of the leg's time (OutOfTimeError: deferred to the next leg)"),
    FaultKind("task_killer", "processor", "task", 0.01, 0.05, 0.7,
              "the task kills its process every time it runs (found by strikes and skipped)"),
    FaultKind("notice_refused", "notice", "notice", 0.1, 0.6, 0.4,
              "the completion notice's target refuses it (or takes it and answers with an "
              "error): the sweep sends it again"),
    # a crawl's own moments (asked only in crawl worlds, after the write named landed)
    FaultKind("crawl_kill_after_frontier", "crawl", "point", 0.05, 0.3, 0.3,
              "a crawl leg killed after its segment and seen-set PUT, before the CAS that "
              "counts them"),
    FaultKind("crawl_kill_after_inbox", "crawl", "point", 0.05, 0.3, 0.3,
              "a crawl leg killed after writing links to another chain's inbox, before its CAS"),
    FaultKind("crawl_kill_before_wake", "crawl", "point", 0.1, 0.5, 0.3,
              "a crawl leg killed after the CAS that counted links it mailed, before it wakes "
              "their owners"),
    FaultKind("crawl_kill_after_end", "crawl", "point", 0.05, 0.3, 0.3,
              "a crawl chain's leg killed after its done marker, before it reads its inbox again"),
    FaultKind("crawl_kill_mid_merge", "crawl", "point", 0.05, 0.3, 0.3,
              "a crawl leg killed after deleting one of the inbox objects its CAS took in"),
)
# fmt: on
KINDS = {kind.name: kind for kind in FAULTS}


class FaultPlan:
    """One world's rates, and its draws: `hit(name)` is True when the fault happens now."""

    def __init__(self, plan_rng: random.Random, draw_rng: random.Random) -> None:
        self.rates: dict[str, float] = {}
        for kind in FAULTS:
            on = plan_rng.random() >= kind.off
            self.rates[kind.name] = plan_rng.uniform(kind.low, kind.high) if on else 0.0
        self.rng = draw_rng
        self.counts: Counter[str] = Counter()
        self.active = True
        """False once the world is calm: only the processor's faults go on."""

    def hit(self, name: str) -> bool:
        rate = self.rates[name]
        if not rate or (not self.active and KINDS[name].layer != "processor"):
            return False
        if self.rng.random() < rate:
            self.counts[name] += 1
            return True
        return False

    def switch(self, name: str) -> bool:
        """Whether a world-long fault is on in this world (counted when it strikes, not here)."""
        return bool(self.rates[name]) and self.rng.random() < self.rates[name]

    def occurrences(self, name: str) -> int:
        """How many times a world fault happens in this world (drawn now)."""
        kind = KINDS[name]
        return sum(self.hit(name) for _ in range(kind.count))

    def off(self, *names: str) -> None:
        for name in names:
            self.rates[name] = 0.0

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def describe() -> str:
    """The table, for `python -m tests.sim --faults`."""
    lines = [f"{'fault':24} {'layer':9} {'per':8} {'rate':13} help"]
    for kind in FAULTS:
        rate = f"{kind.low:g}-{kind.high:g}"
        lines.append(f"{kind.name:24} {kind.layer:9} {kind.per:8} {rate:13} {kind.help}")
    return "\n".join(lines)
