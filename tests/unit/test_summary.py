"""The closing summary and the failure tally shared by the leg and the rewind."""

from __future__ import annotations

from typing import Any

from worker.checkpoint import Checkpoint
from worker.summary import MAX_FAILURE_KINDS, MAX_FAILURE_SAMPLES, tally_failures, task_time_share


def test_summary_task_time_share_is_at_most_one_after_a_killed_leg() -> None:
    # A killed leg's batches were counted, its leg time never was.
    cp = Checkpoint(run_id="r", total=10, position=10, leg_ms_total=1_000, task_ms_total=1_700)
    assert task_time_share(cp) == 1.0


def test_summary_task_time_share_is_none_before_any_leg_time() -> None:
    assert task_time_share(Checkpoint(run_id="r", total=1, position=0)) is None


def test_summary_tally_caps_kinds_and_samples_but_counts_every_failure() -> None:
    rows: list[dict[str, Any]] = [
        {"index": i, "url": f"u{i}", "error": f"kind {i}: boom"} for i in range(200)
    ]
    kinds: dict[str, int] = {}
    samples: list[dict[str, Any]] = []
    assert tally_failures(kinds, samples, [*rows, {"index": 200, "error": None}]) == 200
    assert len(kinds) == MAX_FAILURE_KINDS
    assert len(samples) == MAX_FAILURE_SAMPLES
