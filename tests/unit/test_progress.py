"""What `baton status` shows: stalled runs as stalled, exit codes by one rule."""

from __future__ import annotations

import pytest

from worker.checkpoint import Checkpoint, RunStatus
from worker.progress import EXIT_CODES, chain_lines, exit_code, progress_line, view
from worker.store import RunRecord

RECORD = RunRecord(
    run_id="r",
    bucket="b",
    key="tasks/l.json",
    etag='"e"',
    total=100,
    start_position=0,
    created_ms=0,
    source="s3",
    config={"stall_after_ms": 60_000},
)


def test_progress_a_run_nobody_moved_on_shows_stalled_not_an_eta() -> None:
    cp = Checkpoint(run_id="r", total=100, position=3, ok=3, started_ms=1, handed_off_ms=10_000)
    v = view(RECORD, [cp], at_ms=10_000 + 10 * 3_600_000)
    line = progress_line(v)
    assert v.stalled
    assert "stalled" in line
    assert "ETA" not in line
    assert "no progress for 10.0h" in line


def test_progress_a_run_handed_off_a_moment_ago_is_not_stalled() -> None:
    cp = Checkpoint(run_id="r", total=100, position=3, ok=3, started_ms=1, handed_off_ms=10_000)
    v = view(RECORD, [cp], at_ms=20_000)
    assert not v.stalled
    assert "ETA" in progress_line(v)


def test_progress_a_run_whose_owner_outlived_its_lease_is_stalled() -> None:
    cp = Checkpoint(run_id="r", total=100, position=3, owner="o", lease_until_ms=5_000)
    assert view(RECORD, [cp], at_ms=5_001).stalled


@pytest.mark.parametrize(
    ("status", "failed", "code"),
    [
        ("done", 0, 0),
        ("done", 1, EXIT_CODES["failed_tasks"]),
        ("failed", 0, EXIT_CODES["failed"]),
        ("cancelled", 0, EXIT_CODES["cancelled"]),
        ("superseded", 0, EXIT_CODES["superseded"]),
        ("running", 0, EXIT_CODES["unfinished"]),
    ],
)
def test_progress_exit_code_is_zero_only_for_a_clean_done(
    status: str, failed: int, code: int
) -> None:
    assert exit_code(status, failed) == code
    assert len(set(EXIT_CODES.values()) | {0, 1, 2}) == len(EXIT_CODES) + 3


def test_progress_a_run_of_chains_counts_rows_of_all_and_shows_a_bar_per_chain() -> None:
    record = RunRecord("r", "b", "k", '"e"', 100, 0, 0, "s3", chains=2, version=2)
    chains = [
        Checkpoint(run_id="r", total=100, position=50, start=0, end=50, ok=50, chain="0000"),
        Checkpoint(run_id="r", total=100, position=60, start=50, end=100, ok=10, chain="0001"),
    ]
    chains[0] = chains[0].finish(RunStatus.DONE, at_ms=1, reason=None, leg_ms=1)
    v = view(record, chains, at_ms=10_000)
    assert (v.done, v.todo, v.finished, v.state) == (60, 100, False, "running")
    assert "chains 1/2" in progress_line(v)
    lines = chain_lines(v)
    assert [line.split()[0] for line in lines] == ["0000", "0001"]
    assert "60/100" in lines[1]


def test_progress_many_chains_show_a_histogram_and_the_stragglers() -> None:
    record = RunRecord("r", "b", "k", '"e"', 400, 0, 0, "s3", chains=40, version=2)
    chains = [
        Checkpoint(
            run_id="r",
            total=400,
            position=10 * i + (10 if i else 1),
            start=10 * i,
            end=10 * i + 10,
            chain=f"{i:04d}",
        )
        for i in range(40)
    ]
    lines = chain_lines(view(record, chains, at_ms=1))
    assert any(line.strip().startswith("90- 99%") or "100" in line for line in lines)
    assert any("most left" in line and "0000" in line for line in lines)
