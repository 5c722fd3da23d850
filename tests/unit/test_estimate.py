"""`baton estimate`'s sampling and report (the prediction against an actual run is
tests/integration/test_estimate_on_stack.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from baton.cli import main
from baton.estimate import Sample, predict, priced, report, sample
from worker.config import Settings
from worker.tasks import parse_task_list

INSTANT = "tests.unit.test_estimate:instant"


def instant(task: Any, ctx: Any) -> dict[str, Any]:
    return {"ok": True}


def test_estimate_counts_hosts_over_the_whole_list_not_the_sample() -> None:
    urls = [f"https://h{i % 16}.example/{i}" for i in range(160)]
    tasks = parse_task_list(json.dumps(urls).encode())
    measured = sample(tasks, 2, Settings(processor=INSTANT))
    assert measured.tasks == 2
    assert measured.hosts == 16


def report_of(hosts: int) -> list[str]:
    settings = Settings(processor=INSTANT, margin_ms=1_500)
    measured = Sample(tasks=5, wall_ms=100, cpu_ms=1, hosts=hosts, failed=0)
    p = predict(
        100,
        measured,
        memory_mb=1024,
        chains=1,
        timeout_s=900,
        margin_ms=settings.margin_ms,
        concurrency=0,
        max_concurrency=64,
        per_host=8,
    )
    return report(measured, p, priced(p, measured, settings), settings)


def test_estimate_report_says_one_host_and_where_its_settings_come_from() -> None:
    lines = report_of(1)
    assert "1 host in the list" in lines[0]
    assert "2 hosts in the list" in report_of(2)[0]
    settings_line = next(line for line in lines if "BATON_*" in line)
    assert "this shell's BATON_* variables, not the function's" in settings_line
    assert "margin 1500 ms" in settings_line


def test_estimate_refuses_a_sample_of_none(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "list.json"
    path.write_text('["https://example.com/"]')
    with pytest.raises(SystemExit) as exited:
        main(["estimate", str(path), "--sample", "0"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "sample at least one task" in err
    assert "at least one chain" not in err
