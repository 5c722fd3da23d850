"""The time-budget policy: stop early enough, never starve a leg."""

from __future__ import annotations

from worker.budget import TimeBudget


def test_budget_fixed_margin_stops_below_the_floor() -> None:
    budget = TimeBudget(margin_ms=1_000, adaptive=False)
    assert budget.can_start_batch(1_001)
    assert not budget.can_start_batch(1_000)


def test_budget_adaptive_margin_keeps_room_for_the_slowest_batch() -> None:
    budget = TimeBudget(margin_ms=1_000)
    budget.record_batch(4_000, tasks=10)
    budget.record_batch(1_000, tasks=10)
    assert not budget.can_start_batch(5_999)
    assert budget.can_start_batch(6_001)


def test_budget_work_deadline_leaves_the_margin() -> None:
    assert TimeBudget(margin_ms=2_000).work_deadline_ms(10_000) == 8_000
    assert TimeBudget(margin_ms=2_000).work_deadline_ms(1_000) == 0


def test_budget_batch_size_grows_for_fast_tasks_and_shrinks_for_slow_ones() -> None:
    fast = TimeBudget(margin_ms=1_000, batch_size=25, target_batch_ms=2_000)
    fast.record_batch(250, tasks=25)  # 10 ms a task
    assert fast.next_batch_size(600_000) == 100  # capped at 4x the configured size
    slow = TimeBudget(margin_ms=1_000, batch_size=25, target_batch_ms=2_000)
    slow.record_batch(12_500, tasks=25)  # 500 ms a task
    assert slow.next_batch_size(600_000) == 4


def test_budget_batch_size_fits_the_time_left() -> None:
    budget = TimeBudget(margin_ms=1_000, batch_size=25, target_batch_ms=10_000)
    budget.record_batch(2_500, tasks=25)  # 100 ms a task
    assert budget.next_batch_size(3_000) == 10  # half of the 2 s left for work


def test_budget_without_adaptation_keeps_the_configured_size() -> None:
    budget = TimeBudget(margin_ms=1_000, adaptive=False, batch_size=25)
    budget.record_batch(2_500, tasks=25)
    assert budget.next_batch_size(3_000) == 25
