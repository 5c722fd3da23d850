"""A seeded chaos run: every fault at once, then every invariant checked from S3 and the logs."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from devstack.chaos import ChaosConfig, run_chaos
from devstack.chaos.harness import ChaosStack
from tests.chaos.conftest import report_line

pytestmark = pytest.mark.chaos

CONFIG = ChaosConfig(
    seed=20261124,
    runs=2,
    tasks=160,
    parallel=2,
    killers=1,
    once=1,
    s3_error_rate=0.03,
    s3_after_write_rate=0.03,
    throttle_rate=0.25,
    drop_rate=0.3,
    duplicate_rate=0.25,
    crash_rate=0.006,
    hang_rate=0.004,
    defer_rate=0.03,
    task_ms=40,
    timeout_s=2.0,
    max_wait_s=200,
)


def test_chaos_seeded_run_loses_duplicates_forks_and_strands_nothing(tmp_path: Path) -> None:
    report = run_chaos(CONFIG, tmp_path)
    report_line(report.line())

    assert report.missing_faults == []
    assert (report.lost, report.duplicated, report.forks, report.unfinished) == (0, 0, 0, 0)
    assert [problem for check in report.checks for problem in check.problems] == []
    assert [check.killers_skipped for check in report.checks] == [1, 1]
    assert [check.status for check in report.checks] == ["done", "done"]


FANOUT = replace(
    CONFIG,
    seed=20261129,
    runs=1,
    parallel=1,
    tasks=240,
    chains=4,
    max_concurrency=8,
    task_ms=30,
)


def test_chaos_seeded_run_of_four_chains_loses_duplicates_forks_and_strands_nothing(
    tmp_path: Path,
) -> None:
    report = run_chaos(FANOUT, tmp_path)
    report_line(report.line())

    assert (report.lost, report.duplicated, report.forks, report.unfinished) == (0, 0, 0, 0)
    assert [problem for check in report.checks for problem in check.problems] == []
    assert [check.status for check in report.checks] == ["done"]
    assert [check.killers_skipped for check in report.checks] == [1]


PREFIX = replace(
    CONFIG,
    seed=20261130,
    killers=0,
    once=0,
    environment={"BATON_LIST_PAGE_SIZE": "20", "BATON_SEGMENT_PAGES": "2"},
    max_wait_s=120,
)
"""Pages of 20 keys, 2 a segment: 150 objects are 4 segments, each its own work chain."""


def test_chaos_prefix_run_lists_every_object_once_under_every_fault(tmp_path: Path) -> None:
    """A prefix run under the same faults: the lister's total (`total_listed`; run.json
    says 0) is every object, and every listed index is in the results once."""
    with ChaosStack(PREFIX, tmp_path) as chaos:
        source = chaos.upload_prefix("p0", 150, chains=3)
        chaos.wait([source], PREFIX.max_wait_s)
        chaos.settle()
        check = chaos.check(source)
        rows = chaos.rows(check.run_id or "")
        faults = chaos.faults()
    report_line(check.line() + f"; faults {dict(faults)}")

    assert check.problems == []
    assert (check.lost, check.duplicated, check.forks) == (0, 0, 0)
    assert check.status == "done"
    assert sum(faults.values()) > 0
    assert sorted(row["id"] for row in rows) == [f"chaos-data/p0/{i:05d}" for i in range(150)]
