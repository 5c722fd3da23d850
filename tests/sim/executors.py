"""The clock and the executors a simulated container runs on: virtual time, no real threads.

A leg submits each task to `container.pool` and waits for the first to finish
(`worker.inflight`); `SimInFlight` waits in virtual time.
`TaskPool` runs the task inline, at once, with the clock shifted forward by the
task's own virtual time (the processor sleeps on the clock), and completes its
future at that virtual time by a scheduler timer. The processor touches no shared
state, so running it early is unobservable: the leg sees the task take its time.
`SimFuture` makes `wait` virtual too: the waiter `wait` installs gets a `SimEvent`
instead of a `threading.Event`, so waiting yields to the scheduler (and a timeout
is virtual). Futures hash by a sequence number, so the sets `wait` returns iterate
in the same order every run.

`container.io` (a commit's results, holes, segment and mail PUTs side by side, the
cancel marker's HEAD beside them, reads fanned out) is `ShuffledIo`: each call runs
at once or waits until something waits for it, as the seed decides, and the calls
waiting run in a seeded order. So side-by-side writes land in any order, and a crash
between two of them leaves the rest unsent, as the process's death would.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

from tests.sim.scheduler import Actor, Scheduler, SimEvent, _ceil_ms
from worker.inflight import InFlight
from worker.processor import Outcome

T = TypeVar("T")


class TaskScope:
    """A task running inline: how much virtual time it has taken, and whether it kills."""

    __slots__ = ("kill", "shift_ms")

    def __init__(self) -> None:
        self.shift_ms = 0
        self.kill: str | None = None


class SimClock:
    """`worker.clock.Clock` on the scheduler's virtual time (plus a task's own time)."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self.scope: TaskScope | None = None

    def now_ms(self) -> int:
        scope = self.scope
        return self.scheduler.now + (scope.shift_ms if scope is not None else 0)

    def monotonic(self) -> float:
        return self.now_ms() / 1000

    def sleep(self, seconds: float) -> None:
        ms = max(0, _ceil_ms(seconds))
        if self.scope is not None:
            self.scope.shift_ms += ms
            return
        self.scheduler.sleep_ms(ms)


class _SimWaiters(list[Any]):
    """`Future._waiters`: a waiter installed by `concurrent.futures.wait` waits virtually."""

    def __init__(self, scheduler: Scheduler) -> None:
        super().__init__()
        self.scheduler = scheduler

    def append(self, waiter: Any) -> None:
        if not isinstance(waiter.event, SimEvent):
            waiter.event = SimEvent(self.scheduler)
        super().append(waiter)


class SimFuture(Future[T]):
    def __init__(self, scheduler: Scheduler, number: int) -> None:
        super().__init__()
        self._scheduler = scheduler
        self._number = number
        self._waiters = _SimWaiters(scheduler)

    def __hash__(self) -> int:
        return self._number

    def result(self, timeout: float | None = None) -> T:
        if not self.done():
            event = SimEvent(self._scheduler)
            self.add_done_callback(lambda _: event.set())
            event.wait(timeout)
        return super().result(timeout=0)


class TaskPool(ThreadPoolExecutor):
    """`container.pool`: each task runs inline under a `TaskScope`; its future completes
    (or its process dies, for a task that kills) after the task's virtual time."""

    def __init__(
        self,
        scheduler: Scheduler,
        clock: SimClock,
        on_kill: Callable[[Actor, str], None],
    ) -> None:
        super().__init__(max_workers=1)  # never started: submit is overridden
        self.scheduler = scheduler
        self.clock = clock
        self.on_kill = on_kill
        self._numbers = 0

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        self._numbers += 1
        future: SimFuture[T] = SimFuture(self.scheduler, self._numbers)
        actor = self.scheduler.current
        scope = self.clock.scope = TaskScope()
        done = Future[T]()  # the outcome now; `future` gets it after the task's own time
        try:
            done.set_result(fn(*args, **kwargs))
        except Exception as exc:
            done.set_exception(exc)
        finally:
            self.clock.scope = None
        kill = scope.kill
        if kill is not None and actor is not None:
            self.scheduler.after(scope.shift_ms, lambda: self.on_kill(actor, kill))
        elif (error := done.exception()) is not None:
            self.scheduler.after(scope.shift_ms, lambda: future.set_exception(error))
        else:
            self.scheduler.after(scope.shift_ms, lambda: future.set_result(done.result()))
        return future


class ShuffledIo(ThreadPoolExecutor):
    """`container.io`: a call runs when submitted or waits, `rng` decides. Calls waiting
    run, in an order `rng` draws, in the thread of whoever waits for one of them (they
    may yield), until what it waits for is done; the rest wait on: a write still in
    flight when its leg moved on lands at a later wait, perhaps the next leg's."""

    def __init__(self, rng: random.Random, defer: float = 0.5) -> None:
        super().__init__(max_workers=1)  # never started: submit is overridden
        self.rng = rng
        self.defer = defer
        self._waiting: list[tuple[Future[Any], Callable[[], Any]]] = []
        self._numbers = 0

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        self._numbers += 1
        future: Future[T] = _Deferred(self, self._numbers)
        self._waiting.append((future, partial(fn, *args, **kwargs)))
        if self.rng.random() >= self.defer:
            self.run_until(future.done)
        return future

    def run_until(self, done: Callable[[], bool]) -> None:
        while self._waiting and not done():
            future, call = self._waiting.pop(self.rng.randrange(len(self._waiting)))
            if not future.set_running_or_notify_cancel():
                continue  # cancelled before it started (`Executor.map` on an error)
            try:
                result = call()
            except Exception as exc:
                future.set_exception(exc)
            except BaseException:
                self._waiting = []  # the process died: what was not sent never is
                raise
            else:
                future.set_result(result)


class _Deferred(Future[T]):
    """A `ShuffledIo` call's future: waiting for it runs calls waiting until it is done."""

    def __init__(self, io: ShuffledIo, number: int) -> None:
        super().__init__()
        self._io = io
        self._number = number
        self._waiters = _RunningWaiters(io)

    def __hash__(self) -> int:
        return self._number  # the sets `wait` returns iterate alike in every process

    def result(self, timeout: float | None = None) -> T:
        self._io.run_until(self.done)
        return super().result(timeout=0)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        self._io.run_until(self.done)
        return super().exception(timeout=0)


class _RunningWaiters(list[Any]):
    """`Future._waiters`: `concurrent.futures.wait`'s waiter runs calls until it is set
    instead of blocking (no other thread would run them)."""

    def __init__(self, io: ShuffledIo) -> None:
        super().__init__()
        self.io = io

    def append(self, waiter: Any) -> None:
        if not isinstance(waiter.event, _RunningEvent):
            waiter.event = _RunningEvent(self.io, waiter.event)
        super().append(waiter)


class _RunningEvent:
    def __init__(self, io: ShuffledIo, event: Any) -> None:
        self.io = io
        self.event = event

    def set(self) -> None:
        self.event.set()

    def is_set(self) -> bool:
        return bool(self.event.is_set())

    def wait(self, timeout: float | None = None) -> bool:
        self.io.run_until(self.is_set)
        return self.is_set()


class SimInFlight(InFlight):
    """A leg's tasks in flight, waited for in virtual time: each finished future wakes the
    leg through a `SimEvent`; they come back in the order their timers fired."""

    def __init__(self, scheduler: Scheduler) -> None:
        super().__init__()
        self._done: deque[Future[Outcome]] = deque()
        self._event = SimEvent(scheduler)

    def _arrived(self, future: Future[Outcome]) -> None:
        self._done.append(future)
        self._event.set()

    def _wait_first(self, timeout: float) -> Future[Outcome] | None:
        if not self._done:
            self._event.clear()
            self._event.wait(timeout)
        return self._poll()

    def _poll(self) -> Future[Outcome] | None:
        return self._done.popleft() if self._done else None
