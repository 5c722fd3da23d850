"""The time-budget policy: stop early enough, never starve a leg, size batches to fit."""

from __future__ import annotations

from worker.budget import TimeBudget


def test_budget_fixed_margin_stops_below_the_floor() -> None:
    budget = TimeBudget(margin_ms=1_000, adaptive=False)
    assert budget.can_start_batch(1_001)
    assert not budget.can_start_batch(1_000)


def test_budget_adaptive_margin_keeps_room_for_a_slow_task() -> None:
    budget = TimeBudget(margin_ms=1_000)
    budget.record_batch(4_000, [100.0] * 9 + [2_000.0] * 2)  # p90 latency: 2 s
    assert budget.slow_task_ms() == 2_000
    assert not budget.can_start_batch(3_399)
    assert budget.can_start_batch(3_401)


def test_budget_reserve_ignores_a_rare_outlier() -> None:
    budget = TimeBudget(margin_ms=1_000)
    budget.record_batch(20_000, [100.0] * 99 + [15_000.0])
    assert budget.slow_task_ms() == 100


def test_budget_work_deadline_leaves_the_margin() -> None:
    assert TimeBudget(margin_ms=2_000).work_deadline_ms(10_000) == 8_000
    assert TimeBudget(margin_ms=2_000).work_deadline_ms(1_000) == 0


def test_budget_first_batch_uses_the_configured_size() -> None:
    assert TimeBudget(margin_ms=1_000, batch_size=25).next_batch_size(600_000) == 25


def test_budget_batch_size_grows_for_fast_tasks_up_to_the_target_time() -> None:
    budget = TimeBudget(margin_ms=1_000, batch_size=25, target_batch_ms=5_000)
    budget.record_batch(250, [10.0] * 25)  # 10 ms of wall time a task
    assert budget.next_batch_size(600_000) == 500  # the 5 s target / 10 ms
    budget = TimeBudget(margin_ms=1_000, batch_size=25, target_batch_ms=5_000)
    budget.record_batch(2_500, [100.0] * 25)  # 100 ms a task
    assert budget.next_batch_size(600_000) == 50  # the 5 s target / 100 ms


def test_budget_batch_size_shrinks_to_the_time_left() -> None:
    budget = TimeBudget(margin_ms=1_000, batch_size=25, target_batch_ms=5_000)
    budget.record_batch(2_500, [100.0] * 25)
    assert budget.next_batch_size(3_000) == 19  # (2 s of work time - 100 ms) / 100 ms
    assert budget.next_batch_size(1_050) == 1  # never zero: the deadline cuts the rest


def test_budget_batch_size_never_exceeds_the_cap() -> None:
    budget = TimeBudget(margin_ms=1_000, max_batch=1000, target_batch_ms=10_000)
    budget.record_batch(10, [1.0] * 10)
    assert budget.next_batch_size(600_000) == 1000


def test_budget_without_adaptation_keeps_the_configured_size() -> None:
    budget = TimeBudget(margin_ms=1_000, adaptive=False, batch_size=25)
    budget.record_batch(2_500, [100.0] * 25)
    assert budget.next_batch_size(3_000) == 25
