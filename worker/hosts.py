"""Politeness per host: a cap on tasks in flight to one host, and backing off one host alone.

Every mode has it (DESIGN: politeness in every mode), as Scrapy's 8 requests per
domain does. A host that answers 429 or 503 (after the fetcher's own retries,
which honour Retry-After) halves its own cap and pauses, then earns the cap back
one task at a time (additive increase, multiplicative decrease); the other
hosts of the run are not slowed by it. The state lives as long as the container.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from worker.tasks import Task

THROTTLED = frozenset({429, 503})
MAX_PAUSE_S = 30.0
MAX_CARRIED_PAUSE_S = 120.0
"""A pause carried across legs is bounded, so a skewed clock cannot park a host for long."""


@dataclass
class _Host:
    cap: float
    in_flight: int = 0
    not_before: float = 0.0
    strikes: int = 0
    delay_s: float = 0.0
    """The least time between two request starts (a crawl's per-host delay, robots'
    Crawl-delay); 0 for list runs."""


@dataclass
class Hosts:
    """How many tasks each host may have in flight now, and when it may have more."""

    per_host: int = 8
    delay_s: float = 0.0
    """Every host's least gap between request starts, unless `set_delay` says otherwise."""
    _hosts: dict[str, _Host] = field(default_factory=dict)

    def use(self, per_host: int, delay_s: float = 0.0) -> None:
        """The run's politeness, set by each leg: a container serves legs of many runs."""
        if (per_host, delay_s) != (self.per_host, self.delay_s):
            self.per_host, self.delay_s = per_host, delay_s
            self._hosts.clear()

    def set_delay(self, host: str, delay_s: float) -> None:
        """A host's own gap between request starts (robots' Crawl-delay, if larger)."""
        if host:
            state = self._host(host)
            state.delay_s = max(self.delay_s, delay_s)

    def key(self, task: Task) -> str:
        """The host a task talks to ("" for a task with no URL: no politeness applies)."""
        if not task.url or task.s3_object is not None:  # the run's own bucket: no politeness
            return ""
        url = task.options.get("moved_to") or task.url  # a crawl's redirect: its target's
        try:
            return (urlsplit(str(url)).hostname or "").lower()
        except ValueError:
            return ""

    def can_start(self, host: str, now: float) -> bool:
        if not host:
            return True
        state = self._host(host)
        return state.in_flight < max(1, int(state.cap)) and now >= state.not_before

    def started(self, host: str, now: float = 0.0) -> None:
        if host:
            state = self._host(host)
            state.in_flight += 1
            if state.delay_s:
                state.not_before = max(state.not_before, now + state.delay_s)

    def finished(self, host: str, row: dict[str, Any] | None, now: float) -> None:
        if not host:
            return
        state = self._host(host)
        state.in_flight = max(0, state.in_flight - 1)
        if row is not None and _throttled(row):
            state.strikes += 1
            state.cap = max(1.0, state.cap / 2)
            state.not_before = now + min(MAX_PAUSE_S, 2.0 ** min(state.strikes, 5) / 2)
        elif state.cap < self.per_host:
            state.strikes = 0
            state.cap = min(float(self.per_host), state.cap + 1 / state.cap)

    def abandoned(self, host: str) -> None:
        """A task its leg left running when it ended early (an error, a lost CAS): its
        slot is freed now, or the next leg in this container would find the host full."""
        if host:
            state = self._host(host)
            state.in_flight = max(0, state.in_flight - 1)

    def paused_until(self, host: str) -> float:
        return self._host(host).not_before if host else 0.0

    def pauses(self, now: float) -> dict[str, float]:
        """Seconds each host must still wait: what a hand-off carries to the next leg, so
        it does not hammer a host this one just hit (or that asked to be left alone)."""
        return {
            host: round(state.not_before - now, 3)
            for host, state in self._hosts.items()
            if state.not_before > now
        }

    def pause(self, host: str, seconds: float, now: float) -> None:
        """Carry a pause over from the previous leg."""
        if host and seconds > 0:
            state = self._host(host)
            state.not_before = max(state.not_before, now + min(seconds, MAX_CARRIED_PAUSE_S))

    def _host(self, host: str) -> _Host:
        state = self._hosts.get(host)
        if state is None:
            state = self._hosts[host] = _Host(cap=float(self.per_host), delay_s=self.delay_s)
        return state


class TaskQueue:
    """Tasks not yet started, one FIFO per host, served round-robin to hosts with room.

    Round-robin interleaves hosts, so a slow or throttled host holds up only
    its own tasks; within a host, tasks start in index order.
    """

    def __init__(self, hosts: Hosts) -> None:
        self.hosts = hosts
        self._queues: dict[str, deque[Task]] = {}
        self._order: deque[str] = deque()
        self.size = 0

    def extend(self, tasks: Iterable[Task]) -> None:
        for task in tasks:
            host = self.hosts.key(task)
            queue = self._queues.get(host)
            if queue is None:
                queue = self._queues[host] = deque()
                self._order.append(host)
            queue.append(task)
            self.size += 1

    def pop_ready(self, now: float) -> Task | None:
        """The next task whose host has room now, or None."""
        for _ in range(len(self._order)):
            host = self._order[0]
            self._order.rotate(-1)
            queue = self._queues[host]
            if queue and self.hosts.can_start(host, now):
                self.size -= 1
                task = queue.popleft()
                if not queue:
                    del self._queues[host]
                    self._order.remove(host)
                return task
        return None

    def drain(self) -> list[Task]:
        """Every task still waiting, in index order."""
        tasks = sorted((t for q in self._queues.values() for t in q), key=lambda t: t.index)
        self._queues.clear()
        self._order.clear()
        self.size = 0
        return tasks

    def next_ready_at(self) -> float:
        """When a paused host with waiting tasks may start again (0: no paused host)."""
        times = [self.hosts.paused_until(h) for h, q in self._queues.items() if q]
        return min(times, default=0.0)


def _throttled(row: dict[str, Any]) -> bool:
    status = row.get("status")
    if status in THROTTLED:
        return True
    error = str(row.get("error") or "")
    return error.startswith(("HTTP 429", "HTTP 503"))
