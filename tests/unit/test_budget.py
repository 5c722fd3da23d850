"""The time budget: when a leg stops starting tasks, and how far ahead it plans."""

from __future__ import annotations

from worker.budget import RESORT_EVERY, WINDOW, TimeBudget


def test_budget_fixed_margin_stops_below_the_floor() -> None:
    budget = TimeBudget(margin_ms=1_000, adaptive=False)
    assert budget.can_start(1_001)
    assert not budget.can_start(1_000)


def test_budget_adaptive_keeps_room_for_a_slow_task() -> None:
    budget = TimeBudget(margin_ms=1_000)
    for ms in [100.0] * 9 + [2_000.0] * 2:  # p90 latency: 2 s
        budget.record_task(ms)
    assert budget.reserve_ms() == 1_000 + 1.2 * 2_000
    assert not budget.can_start(3_399)
    assert budget.can_start(3_401)


def test_budget_reserve_ignores_the_rare_outlier() -> None:
    budget = TimeBudget(margin_ms=1_000)
    for ms in [100.0] * 99 + [15_000.0]:
        budget.record_task(ms)
    assert budget.reserve_ms() == 1_000 + 1.2 * 100


def test_budget_work_deadline_is_what_is_left_after_the_margin() -> None:
    assert TimeBudget(margin_ms=2_000).work_deadline_ms(10_000) == 8_000
    assert TimeBudget(margin_ms=2_000).work_deadline_ms(1_000) == 0


def test_budget_plan_before_any_observation_is_the_initial_plan_or_the_level() -> None:
    assert TimeBudget(margin_ms=1_000, initial_plan=25).plan_size(600_000, level=8) == 25
    assert TimeBudget(margin_ms=1_000, initial_plan=25).plan_size(600_000, level=64) == 64


def test_budget_plan_covers_two_commit_intervals_at_the_observed_rate() -> None:
    budget = TimeBudget(margin_ms=1_000, commit_interval_ms=5_000)
    budget.record_rate(tasks=1_000, seconds=10.0)  # 100 tasks/s
    assert budget.plan_size(600_000, level=8) == 100 * 10 + 8


def test_budget_plan_uses_only_a_rate_measured_on_the_same_chain() -> None:
    # A container that worked a fast chain must not plan a slow chain's whole range from
    # that rate: a thief could then take nothing from the straggler (the fan-out bench).
    budget = TimeBudget(margin_ms=1_000, initial_plan=25, commit_interval_ms=5_000)
    budget.record_rate(tasks=1_000, seconds=10.0, work="run/0001")
    assert budget.plan_size(600_000, level=8, work="run/0001") == 100 * 10 + 8
    assert budget.plan_size(600_000, level=8, work="run/0002") == 25
    budget.record_rate(tasks=30, seconds=10.0, work="run/0002")  # a fresh rate, not averaged
    assert budget.plan_size(600_000, level=8, work="run/0002") == 3 * 10 + 8


def test_budget_plan_never_outruns_the_time_left() -> None:
    budget = TimeBudget(margin_ms=1_000, commit_interval_ms=5_000)
    budget.record_rate(tasks=1_000, seconds=10.0)
    assert budget.plan_size(3_000, level=8) == 100 * 2 + 8
    assert budget.plan_size(1_000, level=8) == 8  # never below the level


def test_budget_plan_is_capped() -> None:
    budget = TimeBudget(margin_ms=1_000, max_plan=1_000)
    budget.record_rate(tasks=100_000, seconds=1.0)
    assert budget.plan_size(600_000, level=8) == 1_000


def test_budget_non_adaptive_plans_the_initial_size() -> None:
    budget = TimeBudget(margin_ms=1_000, adaptive=False, initial_plan=25)
    budget.record_rate(tasks=1_000, seconds=1.0)
    assert budget.plan_size(3_000, level=8) == 25


def test_budget_slow_task_follows_a_long_window_without_sorting_it_every_turn() -> None:
    budget = TimeBudget(margin_ms=1_000)
    for _ in range(WINDOW):
        budget.record_task(100.0)
    assert budget.slow_task_ms() == 100.0
    for _ in range(RESORT_EVERY - 1):
        budget.record_task(5_000.0)
    assert budget.slow_task_ms() == 100.0  # at most RESORT_EVERY - 1 samples behind
    for _ in range(WINDOW // 5):
        budget.record_task(5_000.0)
    assert budget.slow_task_ms() == 5_000.0
