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

`container.io` (the cancel marker's HEAD beside a commit's PUT) runs inline: the
HEAD happens just before the PUT instead of beside it, one of the real orders.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
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


class InlineExecutor(ThreadPoolExecutor):
    """`container.io`: runs the call at once in the caller's thread (it may yield)."""

    def __init__(self) -> None:
        super().__init__(max_workers=1)

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:
            future.set_exception(exc)
        return future


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
