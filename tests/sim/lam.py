"""The Lambda service, simulated: the async queue, containers, concurrency, retries, deadlines.

What it does, as Lambda does for `InvocationType="Event"`:

- an accepted event waits in a queue for a delivery delay, then runs on an idle
  warm container or a new (cold) one; delivery is at least once (`event_duplicate`),
  and an event can be late (`event_delay`) or, for a leg or a sweep, lost
  (`event_drop`);
- above the reserved concurrency an event is throttled and tried again with
  backoff (1 s doubling to 5 min) until its maximum event age, then it goes to the
  dead-letter queue;
- an invocation that raises, or is killed (its deadline, a kill fault, a task that
  kills its process), is retried twice, about 1 and 2 minutes later; after that
  the event goes to the dead-letter queue; a killed container is never reused;
- an invocation is killed at its deadline (start + timeout): the scheduler kills
  it at that virtual instant, at the yield point where it is blocked;
- with `recursion_cutoff`, a self-invoked event 16 hops down a chain is stopped.

`SimInvoker` is the runtime's `Invoker`: the Invoke API call is a yield point and
may be refused (`invoke_throttled`) or lose its answer (`invoke_lost_answer`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tests.fakes import Killed
from tests.sim.scheduler import Actor
from worker.dispatch import dispatch
from worker.handoff import HandoffError

if TYPE_CHECKING:
    from tests.sim.world import World

FUNCTION_ARN = "arn:aws:lambda:us-east-1:000000000000:function:baton-worker"
RETRY_DELAYS_MS = (60_000, 120_000)
"""Lambda's two retries of a failed asynchronous invocation."""
MAX_THROTTLE_BACKOFF_MS = 300_000
RECURSION_HOPS = 16
USER_SOURCES = ("s3", "manual")
"""Events a person or S3 sent: never silently dropped (the dead-letter queue keeps them)."""


@dataclass
class AsyncEvent:
    payload: dict[str, Any]
    request_id: str
    created_ms: int
    hop: int
    source: str
    """s3 (an upload's notification), manual (the user's start payload), invoke (a
    self-invoke), schedule (the sweep tick)."""
    attempt: int = 0
    throttles: int = 0
    copy: int = 0

    @property
    def label(self) -> str:
        payload = self.payload
        if "Records" in payload:
            obj = payload["Records"][0]["s3"]["object"]
            return f"upload {obj['key']} seq {obj['sequencer']}"
        if payload.get("action") == "sweep":
            return "sweep"
        if "v" not in payload:
            return f"start {payload.get('key', 'a crawl')} with {payload.get('chains')} chains"
        chain = f" chain {payload['chain']}" if "chain" in payload else f" (v{payload.get('v')})"
        return (
            f"leg {payload.get('leg')} of {payload.get('run_id')}{chain} "
            f"at {payload.get('position')}"
        )


@dataclass
class Invocation:
    """One run of the handler: who it is, what it did, how it ended."""

    number: int
    event: AsyncEvent
    container: SimContainer
    started_ms: int
    deadline_ms: int
    actor: Actor | None = None
    outcome: str = "running"
    """running, returned, raised, killed"""
    detail: str = ""
    ended_ms: int = 0
    faults: list[tuple[str, str, str]] = field(default_factory=list)
    """(fault, operation, key) of every S3 fault this invocation met, in order."""

    @property
    def name(self) -> str:
        return f"i{self.number}"

    @property
    def alive(self) -> bool:
        return self.outcome == "running"

    @property
    def died(self) -> bool:
        """It did not return: killed, or raised (Lambda counts both as failed)."""
        return self.outcome in ("killed", "raised")


@dataclass
class SimContainer:
    name: str
    container: Any
    busy: bool = False
    dead: bool = False


@dataclass
class Context:
    """The LambdaContext: remaining time from the virtual clock."""

    aws_request_id: str
    deadline_ms: int
    now: Callable[[], int]
    invoked_function_arn: str = FUNCTION_ARN
    function_name: str = "baton-worker"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self.deadline_ms - self.now())


class SimLambda:
    def __init__(self, world: World) -> None:
        self.world = world
        self.scheduler = world.scheduler
        self.faults = world.faults
        self.rng = world.lambda_rng
        self.trace = world.trace
        self.containers: list[SimContainer] = []
        self.running = 0
        self.queued = 0
        self.dead_letters: list[AsyncEvent] = []
        self.invocations: list[Invocation] = []
        self._requests = 0

    # accepting events
    def send(self, payload: dict[str, Any], *, source: str, hop: int = 0, by: str = "") -> None:
        """An accepted async event (the Invoke API answered 202, or S3 or EventBridge sent it)."""
        self._requests += 1
        event = AsyncEvent(payload, f"req-{self._requests:05d}", self.scheduler.now, hop, source)
        self.trace.add(by or "aws", f"event {event.request_id} queued: {event.label}")
        if source == "invoke" and hop >= RECURSION_HOPS and self.world.recursion_cutoff:
            self.faults.counts["recursion_cutoff"] += 1
            self.trace.add("aws", f"event {event.request_id} stopped: recursive loop, {hop} hops")
            return
        if source not in USER_SOURCES and self.faults.hit("event_drop"):
            self.trace.add("aws", f"event {event.request_id} DROPPED")
            return
        if source in USER_SOURCES and self.faults.hit("event_drop"):
            self.trace.add("aws", f"event {event.request_id} not delivered: to the DLQ")
            self.dead_letters.append(event)
            return
        self._queue(event, self._delay())
        if self.faults.hit("event_duplicate"):
            twin = AsyncEvent(payload, event.request_id, event.created_ms, hop, source, copy=1)
            self.trace.add("aws", f"event {event.request_id} will be delivered twice")
            self._queue(twin, self._delay())

    def _delay(self) -> int:
        if self.faults.hit("event_delay"):
            return self.rng.randint(1_000, 180_000)
        return self.rng.randint(5, 120)

    def _queue(self, event: AsyncEvent, delay_ms: int) -> None:
        self.queued += 1
        self.scheduler.after(delay_ms, lambda: self._deliver(event))

    # delivering
    def _deliver(self, event: AsyncEvent) -> None:
        self.queued -= 1
        world = self.world
        age = self.scheduler.now - event.created_ms
        if age > world.max_event_age_ms:
            self.trace.add("aws", f"event {event.request_id} expired after {age} ms: to the DLQ")
            self.dead_letters.append(event)
            return
        if self.running >= world.reserved_concurrency:
            event.throttles += 1
            backoff = min(MAX_THROTTLE_BACKOFF_MS, 1_000 * 2 ** min(event.throttles, 9))
            backoff = backoff // 2 + self.rng.randint(0, backoff // 2)
            self.trace.add("aws", f"event {event.request_id} throttled, again in {backoff} ms")
            self._queue(event, backoff)
            return
        idle = [c for c in self.containers if not c.busy and not c.dead]
        if idle and self.rng.random() < 0.9:
            container = idle[self.rng.randrange(len(idle))]
            init = 0
        else:
            container = world.new_container(len(self.containers))
            self.containers.append(container)
            init = self.rng.randint(100, 800)
        container.busy = True
        self.running += 1
        self.scheduler.after(init, lambda: self._start(event, container))

    def _start(self, event: AsyncEvent, container: SimContainer) -> None:
        world = self.world
        now = self.scheduler.now
        invocation = Invocation(
            len(self.invocations) + 1, event, container, now, now + world.timeout_ms
        )
        self.invocations.append(invocation)
        context = Context(event.request_id, invocation.deadline_ms, world.clock.now_ms)
        actor = Actor(
            invocation.name, lambda: self._body(invocation, context), invocation.deadline_ms
        )
        actor.data = invocation
        actor.on_exit = lambda _: self._ended(invocation)
        invocation.actor = actor
        retry = f" (retry {event.attempt})" if event.attempt else ""
        self.trace.add(
            invocation.name,
            f"start {event.request_id}{retry} on {container.name}: {event.label}, "
            f"deadline +{world.timeout_ms} ms",
        )
        self.scheduler.spawn(actor)

    def _body(self, invocation: Invocation, context: Context) -> None:
        """The invocation's thread: the real handler's dispatch, and how it ended."""
        payload = json.loads(json.dumps(invocation.event.payload))
        try:
            answer = dispatch(invocation.container.container, payload, context)
        except Killed as exc:
            invocation.outcome, invocation.detail = "killed", str(exc)
        except Exception as exc:
            invocation.outcome, invocation.detail = "raised", f"{type(exc).__name__}: {exc}"
        except BaseException as exc:
            invocation.outcome, invocation.detail = "raised", f"{type(exc).__name__}: {exc}"
        else:
            invocation.outcome, invocation.detail = "returned", _answer(answer)

    def _ended(self, invocation: Invocation) -> None:
        invocation.ended_ms = self.scheduler.now
        actor = invocation.actor
        if invocation.outcome == "running":  # killed before it ever ran
            invocation.outcome = "killed"
            invocation.detail = actor.killed if actor and actor.killed else "killed"
        self.running -= 1
        container = invocation.container
        container.busy = False
        if invocation.outcome == "killed":
            container.dead = True
        self.trace.add(invocation.name, f"end: {invocation.outcome}: {invocation.detail}")
        event = invocation.event
        if invocation.died:
            if event.attempt < len(RETRY_DELAYS_MS):
                delay = RETRY_DELAYS_MS[event.attempt] + self.rng.randint(-5_000, 5_000)
                retry = AsyncEvent(
                    event.payload,
                    event.request_id,
                    event.created_ms,
                    event.hop,
                    event.source,
                    attempt=event.attempt + 1,
                )
                self.trace.add("aws", f"event {event.request_id} retried in {delay} ms")
                self._queue(retry, delay)
            else:
                self.trace.add("aws", f"event {event.request_id} failed 3 times: to the DLQ")
                self.dead_letters.append(event)

    def redrive(self) -> int:
        """The operator redrives the dead-letter queue's uploads (legs are the sweep's)."""
        uploads = [e for e in self.dead_letters if e.source in USER_SOURCES]
        self.dead_letters = [e for e in self.dead_letters if e.source not in USER_SOURCES]
        for event in uploads:
            self.trace.add("operator", f"redrive {event.request_id}: {event.label}")
            fresh = AsyncEvent(event.payload, event.request_id, self.scheduler.now, 0, event.source)
            self._queue(fresh, self.rng.randint(5, 120))
        return len(uploads)

    @property
    def idle(self) -> bool:
        return self.running == 0 and self.queued == 0


class SimInvoker:
    """`worker.handoff.Invoker` over the simulated Invoke API."""

    def __init__(self, world: World) -> None:
        self.world = world

    def invoke_async(
        self, function: str, payload: dict[str, Any], *, within_s: float | None = None
    ) -> None:
        world = self.world
        scheduler = world.scheduler
        actor = scheduler.current
        invocation: Invocation | None = actor.data if actor is not None else None
        by = invocation.name if invocation else "?"
        if world.faults.hit("invoke_throttled"):
            limit = int(1000 * (10.0 if within_s is None else within_s))
            waited = min(limit, world.lambda_rng.randint(200, 3_000))
            scheduler.sleep_ms(waited)
            world.trace.add(by, f"invoke refused (throttled) for {waited} ms: HandoffError")
            raise HandoffError("invoke refused: TooManyRequestsException (simulated)")
        scheduler.sleep_ms(world.lambda_rng.randint(5, 40))
        hop = invocation.event.hop + 1 if invocation else 0
        world.lam.send(json.loads(json.dumps(payload)), source="invoke", hop=hop, by=by)
        if world.faults.hit("invoke_lost_answer"):
            world.trace.add(by, "invoke accepted, answer lost: HandoffError")
            raise HandoffError("invoke answer lost (simulated)")


def _answer(answer: dict[str, Any]) -> str:
    if not answer.get("ok"):
        return f"refused {answer.get('error_type')}: {answer.get('error')}"
    parts = []
    for result in answer.get("results", []):
        action = result.get("action")
        if action == "leg":
            parts.append(
                f"leg {result['leg']} {result['exit']} at {result['position']}/{result['total']}, "
                f"{result['processed']} tasks"
                + (f" ({result['reason']})" if result.get("reason") else "")
            )
        elif action == "sweep":
            parts.append(f"sweep resumed {result['resumed']} tidied {result['tidied']}")
        else:
            parts.append(
                f"{action} {result.get('run_id')}"
                + (f" ({result['note']})" if result.get("note") else "")
            )
    return "; ".join(parts) or "ok"
