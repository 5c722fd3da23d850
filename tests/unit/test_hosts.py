"""Politeness per host: a cap in flight, and a throttling host backs off alone."""

from __future__ import annotations

from worker.hosts import Hosts, TaskQueue
from worker.tasks import Task


def task(index: int, host: str) -> Task:
    return Task(index, f"https://{host}/{index}")


def test_hosts_cap_tasks_in_flight_per_host() -> None:
    hosts = Hosts(per_host=2)
    queue = TaskQueue(hosts)
    queue.extend([task(0, "a"), task(1, "a"), task(2, "a"), task(3, "b")])
    started = []
    while (t := queue.pop_ready(0.0)) is not None:
        hosts.started(hosts.key(t))
        started.append(t.index)
    assert sorted(started) == [0, 1, 3]
    assert queue.size == 1


def test_hosts_queue_interleaves_hosts() -> None:
    queue = TaskQueue(Hosts(per_host=100))
    queue.extend([task(0, "a"), task(1, "a"), task(2, "b"), task(3, "b")])
    order = [t.index for t in iter(lambda: queue.pop_ready(0.0), None)]
    assert order == [0, 2, 1, 3]


def test_hosts_a_throttling_host_halves_its_cap_and_pauses_alone() -> None:
    hosts = Hosts(per_host=8)
    for _ in range(8):
        hosts.started("slow")
    hosts.finished("slow", {"status": 429, "error": "HTTP 429"}, now=10.0)
    assert not hosts.can_start("slow", 10.0)
    assert hosts.can_start("fast", 10.0)
    assert hosts.can_start("slow", 11.0) is False  # 7 in flight, cap now 4
    for _ in range(4):
        hosts.finished("slow", {"status": 200, "error": None}, now=11.0)
    assert hosts.can_start("slow", 11.0)


def test_hosts_earn_their_cap_back_one_task_at_a_time() -> None:
    hosts = Hosts(per_host=8)
    hosts.started("h")
    hosts.finished("h", {"status": 503, "error": "HTTP 503"}, now=0.0)  # cap 4
    for _ in range(40):
        hosts.started("h")
        hosts.finished("h", {"status": 200, "error": None}, now=100.0)
    hosts_in_flight = 0
    while hosts.can_start("h", 100.0):
        hosts.started("h")
        hosts_in_flight += 1
    assert hosts_in_flight == 8


def test_hosts_tasks_without_a_url_are_never_held() -> None:
    hosts = Hosts(per_host=1)
    assert hosts.key(Task(0, None, error="bad")) == ""
    assert hosts.can_start("", 0.0)


def test_hosts_a_task_its_leg_abandoned_frees_its_slot() -> None:
    hosts = Hosts(per_host=1)
    hosts.started("a")
    hosts.abandoned("a")
    assert hosts.can_start("a", 0.0)
