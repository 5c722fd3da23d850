"""The concurrency controller: grow while the CPU has room and work waits, shrink on overload."""

from __future__ import annotations

from dataclasses import dataclass

from worker.autoscale import INFLATED, MB_PER_VCPU, Autoscaler, cpu_share


@dataclass
class Cpu:
    seconds: float = 0.0

    def __call__(self) -> float:
        return self.seconds


def run(scaler: Autoscaler, cpu: Cpu, use: float, *, busy: bool, steps: int = 1) -> int:
    """`steps` intervals at `use` of the share, slots full (and work waiting) or not."""
    now = 100.0
    scaler.tick(now, in_flight=0, waiting=False)
    for _ in range(steps):
        now += scaler.interval_s
        cpu.seconds += use * scaler.share * scaler.interval_s
        in_flight = scaler.current if busy else 0
        scaler.tick(now, in_flight=in_flight, waiting=busy)
    return scaler.current


def test_autoscale_grows_while_cpu_is_under_target_and_work_waits() -> None:
    cpu = Cpu()
    scaler = Autoscaler(start=8, cpu_seconds=cpu)
    assert run(scaler, cpu, 0.1, busy=True, steps=5) > 8 * 1.5**4


def test_autoscale_doubles_while_the_cpu_is_nearly_idle() -> None:
    cpu = Cpu()
    scaler = Autoscaler(start=8, cpu_seconds=cpu)
    assert run(scaler, cpu, 0.1, busy=True) == 8 * 2 + 1


def test_autoscale_grows_by_half_well_under_its_target() -> None:
    cpu = Cpu()
    scaler = Autoscaler(start=8, cpu_seconds=cpu)
    assert run(scaler, cpu, 0.3, busy=True) == round(8 * 1.5 + 1)


def test_autoscale_grows_slower_near_its_target() -> None:
    cpu = Cpu()
    scaler = Autoscaler(start=100, cpu_seconds=cpu)
    assert run(scaler, cpu, 0.6, busy=True) == round(100 * 1.15 + 1)


def test_autoscale_holds_when_slots_are_idle() -> None:
    cpu = Cpu()
    scaler = Autoscaler(start=8, cpu_seconds=cpu)
    assert run(scaler, cpu, 0.1, busy=False, steps=5) == 8


def test_autoscale_shrinks_when_the_cpu_is_saturated() -> None:
    cpu = Cpu()
    scaler = Autoscaler(start=100, cpu_seconds=cpu)
    assert run(scaler, cpu, 1.0, busy=True) == 80


def test_autoscale_shrinks_when_tasks_time_out() -> None:
    cpu = Cpu()
    scaler = Autoscaler(start=100, cpu_seconds=cpu)
    scaler.tick(100.0, in_flight=0, waiting=False)
    for _ in range(10):
        scaler.task_done(timed_out=True)
    scaler.tick(100.0 + scaler.interval_s, in_flight=100, waiting=True)
    assert scaler.current == 80


def interval(scaler: Autoscaler, cpu: Cpu, now: float, task_s: float, tasks: int = 50) -> float:
    """One interval at a tenth of the CPU, slots full, `tasks` finished in `task_s` each."""
    for _ in range(tasks):
        scaler.task_done(timed_out=False, seconds=task_s)
    now += scaler.interval_s
    cpu.seconds += 0.1 * scaler.share * scaler.interval_s
    scaler.tick(now, in_flight=scaler.current, waiting=True)
    return now


def test_autoscale_holds_when_tasks_take_much_longer_than_at_a_lower_level() -> None:
    """A queue somewhere (the site's, or this process's CPU): more in flight only waits."""
    cpu = Cpu()
    scaler = Autoscaler(start=8, cpu_seconds=cpu)
    scaler.tick(100.0, in_flight=0, waiting=False)
    now = interval(scaler, cpu, 100.0, task_s=0.2)
    grown = scaler.current
    assert grown > 8
    interval(scaler, cpu, now, task_s=0.2 * INFLATED * 1.1)
    assert scaler.current == grown


def test_autoscale_grows_while_tasks_take_as_long_as_at_a_lower_level() -> None:
    cpu = Cpu()
    scaler = Autoscaler(start=8, cpu_seconds=cpu)
    scaler.tick(100.0, in_flight=0, waiting=False)
    now = interval(scaler, cpu, 100.0, task_s=0.2)
    grown = scaler.current
    interval(scaler, cpu, now, task_s=0.2 * INFLATED * 0.9)
    assert scaler.current > grown


def test_autoscale_a_site_that_stays_slower_becomes_the_norm_and_the_level_grows_again() -> None:
    cpu = Cpu()
    scaler = Autoscaler(start=8, cpu_seconds=cpu)
    scaler.tick(100.0, in_flight=0, waiting=False)
    now = interval(scaler, cpu, 100.0, task_s=0.2)
    held = scaler.current
    for _ in range(40):
        now = interval(scaler, cpu, now, task_s=0.5)
    assert scaler.current > held


def test_autoscale_instant_tasks_cannot_hold_the_level_for_good() -> None:
    """Tasks that take no time (an inline processor, a blocked address) are no latency to
    steer by: measured from zero, every later interval would look queued."""
    cpu = Cpu()
    scaler = Autoscaler(start=8, cpu_seconds=cpu)
    scaler.tick(100.0, in_flight=0, waiting=False)
    now = interval(scaler, cpu, 100.0, task_s=0.0)
    grown = scaler.current
    interval(scaler, cpu, now, task_s=0.006)
    assert scaler.current > grown


def test_autoscale_a_leg_measures_task_time_against_its_own_quickest() -> None:
    """A warm container's last leg worked quicker tasks (another run's): a new leg's
    slower site is not a queue."""
    cpu = Cpu()
    scaler = Autoscaler(start=8, cpu_seconds=cpu)
    scaler.tick(100.0, in_flight=0, waiting=False)
    now = interval(scaler, cpu, 100.0, task_s=0.02)
    scaler.resume_from(0)
    now = interval(scaler, cpu, now, task_s=0.2)
    grown = scaler.current
    interval(scaler, cpu, now, task_s=0.2)
    assert scaler.current > grown


def test_autoscale_is_capped_and_pinned_by_a_fixed_level() -> None:
    cpu = Cpu()
    capped = Autoscaler(start=8, maximum=20, cpu_seconds=cpu)
    assert run(capped, cpu, 0.0, busy=True, steps=10) == 20
    fixed = Autoscaler(fixed=5, cpu_seconds=cpu)
    assert run(fixed, cpu, 0.0, busy=True, steps=10) == 5


def test_autoscale_a_cold_container_starts_at_the_level_the_run_reached() -> None:
    scaler = Autoscaler(start=8)
    scaler.resume_from(48)
    assert scaler.current == 48


def test_autoscale_cpu_share_follows_the_memory_size_up_to_one_vcpu() -> None:
    assert cpu_share({"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(MB_PER_VCPU // 2)}) == 0.5 * (
        (MB_PER_VCPU // 2) / (MB_PER_VCPU / 2)
    )
    assert cpu_share({"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "10240"}) == 1.0
    assert cpu_share({}) == 1.0
