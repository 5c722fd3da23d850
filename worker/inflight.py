"""The tasks a leg has in flight, handed back in the order they finish.

`concurrent.futures.wait` over every future in flight installs a waiter on each
of them and removes it again on every call: with a hundred tasks in flight that
was most of a leg's thread hand-off cost (bench/profile_leg.py), several times a
plain thread pool's. Here each future puts itself on one queue as it finishes,
and the leg takes from that queue: one wake-up, whatever the level.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future
from queue import Empty, SimpleQueue

from worker.processor import Outcome
from worker.tasks import Task


class InFlight:
    def __init__(self) -> None:
        self._tasks: dict[Future[Outcome], tuple[Task, str]] = {}
        self._finished: SimpleQueue[Future[Outcome]] = SimpleQueue()

    def __len__(self) -> int:
        return len(self._tasks)

    def add(self, future: Future[Outcome], task: Task, host: str) -> None:
        self._tasks[future] = (task, host)
        future.add_done_callback(self._arrived)

    def hosts(self) -> Iterator[str]:
        return (host for _, host in self._tasks.values())

    def finished(self, timeout: float) -> list[tuple[Task, str, Outcome]]:
        """What finished, waiting up to `timeout` seconds for the first of it."""
        done = []
        future = self._wait_first(timeout)
        while future is not None:
            task, host = self._tasks.pop(future)
            done.append((task, host, future.result()))
            future = self._poll()
        return done

    def _arrived(self, future: Future[Outcome]) -> None:
        self._finished.put(future)

    def _wait_first(self, timeout: float) -> Future[Outcome] | None:
        try:
            return self._finished.get(timeout=timeout)
        except Empty:
            return None

    def _poll(self) -> Future[Outcome] | None:
        try:
            return self._finished.get_nowait()
        except Empty:
            return None
