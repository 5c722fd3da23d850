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


class Paced:
    """A controller past its first tick, fed interval by interval at a tenth of the CPU with
    every slot busy: what varies is how long the tasks take."""

    def __init__(self) -> None:
        self.cpu = Cpu()
        self.scaler = Autoscaler(start=8, cpu_seconds=self.cpu)
        self.now = 100.0
        self.scaler.tick(self.now, in_flight=0, waiting=False)

    def interval(self, task_s: float, tasks: int = 50) -> int:
        """One interval in which `tasks` finished in `task_s` each; the level after it."""
        scaler = self.scaler
        for _ in range(tasks):
            scaler.task_done(timed_out=False, seconds=task_s)
        self.now += scaler.interval_s
        self.cpu.seconds += 0.1 * scaler.share * scaler.interval_s
        return scaler.tick(self.now, in_flight=scaler.current, waiting=True)


def test_autoscale_holds_when_tasks_take_much_longer_than_at_a_lower_level() -> None:
    """A queue somewhere (the site's, or this process's CPU): more in flight only waits."""
    paced = Paced()
    grown = paced.interval(task_s=0.2)
    assert grown > 8
    assert paced.interval(task_s=0.2 * INFLATED * 1.1) == grown


def test_autoscale_grows_while_tasks_take_as_long_as_at_a_lower_level() -> None:
    paced = Paced()
    grown = paced.interval(task_s=0.2)
    assert paced.interval(task_s=0.2 * INFLATED * 0.9) > grown


def test_autoscale_a_site_that_stays_slower_becomes_the_norm_and_the_level_grows_again() -> None:
    paced = Paced()
    held = paced.interval(task_s=0.2)
    levels = [paced.interval(task_s=0.5) for _ in range(40)]
    assert levels[-1] > held


def test_autoscale_instant_tasks_cannot_hold_the_level_for_good() -> None:
    """Tasks that take no time (an inline processor, a blocked address) are no latency to
    steer by: measured from zero, every later interval would look queued."""
    paced = Paced()
    grown = paced.interval(task_s=0.0)
    assert paced.interval(task_s=0.006) > grown


def test_autoscale_a_leg_measures_task_time_against_its_own_quickest() -> None:
    """A warm container's last leg worked quicker tasks (another run's): a new leg's
    slower site is not a queue."""
    paced = Paced()
    paced.interval(task_s=0.02)
    paced.scaler.resume_from(0)
    grown = paced.interval(task_s=0.2)
    assert paced.interval(task_s=0.2) > grown


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
