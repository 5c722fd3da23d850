"""Virtual time, and threads of which exactly one runs at a time, in an order the seed decides.

Every simulated invocation runs the real runtime in a thread of its own (an actor).
An actor runs until a yield point (an S3 call, an invoke, a sleep, a wait on task
futures), where it hands the baton back to the scheduler and blocks. The scheduler
then fires the earliest timer in virtual time (ties broken by a priority drawn from
the seeded RNG): resuming an actor, completing a task, delivering an event, killing
an invocation at its deadline. Nothing waits in real time and nothing depends on how
the OS schedules threads, so one seed is one run, replayed exactly.

Threads are reused (`_Runner`): a world starts a few and gives each actor one in turn.
"""

from __future__ import annotations

import _thread
import heapq
import random
import threading
from collections.abc import Callable
from typing import Any

from tests.fakes import Killed

START_MS = 1_800_000_000_000
"""Virtual epoch milliseconds at the start of every world."""
MAX_STILL_YIELDS = 1_000
"""Yields in a row by one actor without virtual time moving: it spins (a busy loop), and
is left blocked until its deadline kills it, as Lambda would."""
SPINNING = "spinning: it yielded without virtual time moving on"


class Livelock(Killed):
    """An actor kept yielding without virtual time moving on."""


class Timer:
    __slots__ = ("cancelled", "fn", "when")

    def __init__(self, when: int, fn: Callable[[], None]) -> None:
        self.when = when
        self.fn = fn
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Actor:
    """One thread of simulated work (an invocation); `body` runs in the actor's thread."""

    def __init__(self, name: str, body: Callable[[], None], deadline_ms: int | None) -> None:
        self.name = name
        self.body = body
        self.deadline_ms = deadline_ms
        self.killed: str | None = None
        self.finished = False
        self.blocked = False
        self.wake: Timer | None = None
        self.runner: _Runner | None = None
        self.on_exit: Callable[[Actor], None] | None = None
        self.still = 0
        self.last_at = -1
        self.spinning = False
        self.data: Any = None
        """What the world hangs on the actor (its invocation)."""


class Scheduler:
    def __init__(self, rng: random.Random, start_ms: int = START_MS) -> None:
        self.now = start_ms
        self.start_ms = start_ms
        self.rng = rng
        self._heap: list[tuple[int, float, int, Timer]] = []
        self._seq = 0
        self.current: Actor | None = None
        self._back = _thread.allocate_lock()
        self._back.acquire()
        self._idle: list[_Runner] = []
        self._runners: list[_Runner] = []
        self.steps = 0
        self._until_ms = 0
        self._max_steps = 0

    # timers (scheduler thread, or the running actor)
    def at(self, when: int, fn: Callable[[], None]) -> Timer:
        timer = Timer(max(when, self.now), fn)
        self._seq += 1
        heapq.heappush(self._heap, (timer.when, self.rng.random(), self._seq, timer))
        return timer

    def after(self, ms: int, fn: Callable[[], None]) -> Timer:
        return self.at(self.now + ms, fn)

    @property
    def pending(self) -> int:
        return len(self._heap)

    def run(self, *, until_ms: int, max_steps: int) -> bool:
        """Fire timers in order until none is left; False if a limit stopped it first."""
        heap = self._heap
        self._until_ms, self._max_steps = until_ms, max_steps
        while heap:
            when, _, _, timer = heapq.heappop(heap)
            if timer.cancelled:
                continue
            if when > until_ms or self.steps >= max_steps:
                heapq.heappush(heap, (when, 0.0, 0, timer))
                return False
            self.now = when
            self.steps += 1
            timer.fn()
        return True

    # actors
    def spawn(self, actor: Actor) -> None:
        """Start `actor` now (after whatever else is due now, in seeded order)."""
        actor.blocked = True
        actor.wake = self.at(self.now, lambda: self._switch(actor))
        if actor.deadline_ms is not None:
            self.at(actor.deadline_ms, lambda: self.kill(actor, "deadline"))

    def kill(self, actor: Actor, reason: str) -> None:
        """Kill a blocked actor (scheduler thread): it raises Killed at its yield point."""
        if actor.finished or actor.killed is not None:
            return
        actor.killed = f"{reason} ({SPINNING})" if actor.spinning else reason
        if actor.wake is not None:
            actor.wake.cancel()
        if actor.runner is None:  # never ran: nothing to unwind
            actor.finished = True
            if actor.on_exit is not None:
                actor.on_exit(actor)
            return
        self._switch(actor)

    def wake(self, actor: Actor) -> None:
        """Resume a blocked actor now (an event it waits on was set)."""
        if actor.finished or not actor.blocked:
            return
        if actor.wake is not None:
            actor.wake.cancel()
        actor.wake = self.at(self.now, lambda: self._switch(actor))

    def _switch(self, actor: Actor) -> None:
        if actor.finished or not actor.blocked:
            return
        actor.blocked = False
        actor.wake = None
        if actor.runner is None:
            actor.runner = self._idle.pop() if self._idle else self._new_runner()
            actor.runner.actor = actor
        self.current = actor
        actor.runner.lock.release()
        self._back.acquire()
        self.current = None
        if actor.finished:
            runner = actor.runner
            runner.actor = None
            self._idle.append(runner)
            if actor.on_exit is not None:
                actor.on_exit(actor)

    def _new_runner(self) -> _Runner:
        runner = _Runner(self, len(self._runners))
        self._runners.append(runner)
        return runner

    # yield points (the running actor's thread)
    def block(self, wake_ms: int | None) -> None:
        """Give the baton back; resumed at `wake_ms` (None: only by `wake` or a kill)."""
        actor = self.current
        assert actor is not None, "a yield point outside an actor"
        if actor.killed is not None:
            raise Killed(actor.killed)
        if wake_ms is not None and wake_ms <= self.now:
            if actor.last_at == self.now:
                actor.still += 1
                if actor.still > MAX_STILL_YIELDS:
                    if actor.deadline_ms is None:
                        actor.killed = SPINNING
                        raise Livelock(actor.killed)
                    actor.spinning = True
                    wake_ms = None  # burns its time: the deadline kills it
            else:
                actor.still, actor.last_at = 0, self.now
        actor.blocked = True
        if wake_ms is not None:
            actor.wake = timer = self.at(wake_ms, lambda: self._switch(actor))
            if self._next_is(timer):
                # What the scheduler would do next is resume this actor: do it here, without
                # two thread switches (the same pops, the same order, the same steps).
                heapq.heappop(self._heap)
                self.now = timer.when
                self.steps += 1
                actor.blocked = False
                actor.wake = None
                return
        runner = actor.runner
        assert runner is not None
        self._back.release()
        runner.lock.acquire()
        if actor.killed is not None:
            raise Killed(actor.killed)

    def _next_is(self, timer: Timer) -> bool:
        heap = self._heap
        while heap and heap[0][3].cancelled:
            heapq.heappop(heap)  # the run loop would skip it too
        return heap[0][3] is timer and timer.when <= self._until_ms and self.steps < self._max_steps

    def sleep_ms(self, ms: int) -> None:
        self.block(self.now + max(0, ms))

    def finish(self) -> None:
        """Kill what still runs and stop the threads (the world is over)."""
        for runner in list(self._runners):
            actor = runner.actor
            if actor is not None and not actor.finished:
                self.kill(actor, "the world ended")
        for runner in self._runners:
            runner.stop()
        self._runners.clear()
        self._idle.clear()


class _Runner:
    """A reusable thread: runs one actor's body at a time, only when given the baton."""

    def __init__(self, scheduler: Scheduler, number: int) -> None:
        self.scheduler = scheduler
        self.lock = _thread.allocate_lock()
        self.lock.acquire()
        self.actor: Actor | None = None
        self._stopping = False
        self.thread = threading.Thread(target=self._loop, name=f"sim-{number}", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while True:
            self.lock.acquire()
            actor = self.actor
            if self._stopping or actor is None:
                return
            try:
                actor.body()
            finally:
                actor.finished = True
                self.scheduler._back.release()

    def stop(self) -> None:
        self._stopping = True
        self.actor = None
        self.lock.release()
        self.thread.join()


class SimEvent:
    """threading.Event's surface for one waiting actor, in virtual time."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self._flag = False
        self._waiter: Actor | None = None

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        self._flag = True
        if self._waiter is not None:
            waiter, self._waiter = self._waiter, None
            self.scheduler.wake(waiter)

    def clear(self) -> None:
        self._flag = False

    def wait(self, timeout: float | None = None) -> bool:
        if self._flag:
            return True
        scheduler = self.scheduler
        self._waiter = scheduler.current
        wake = None if timeout is None else scheduler.now + max(0, _ceil_ms(timeout))
        try:
            scheduler.block(wake)
        finally:
            self._waiter = None
        return self._flag


def _ceil_ms(seconds: float) -> int:
    ms = seconds * 1000
    whole = int(ms)
    return whole if whole >= ms else whole + 1
