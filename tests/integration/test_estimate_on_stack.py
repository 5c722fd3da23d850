"""`baton estimate` against an actual run on the embedded stack: the same task count, and
legs within a stated tolerance (never wall time: that is this machine's)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from baton.cli import main
from devstack.demo import LocalRun
from devstack.stack import EmbeddedStack
from tests.integration.test_baton_on_stack import wait_for_end
from worker.store import RunStore

pytestmark = pytest.mark.integration

PROCESSOR = "tests.integration.processors:sleep_100ms"
TASKS = 240
TIMEOUT_S = 3.0
CONCURRENCY = 4
MARGIN_MS = 800
LEG_TOLERANCE = 0.34
S3_TOLERANCE = 0.25
"""S3 requests (machine-independent counts) within a quarter of the prediction scaled to the
legs the run actually made, in all and PUTs alone: this checks the model's per-leg and
per-commit counts (estimate.S3_PER_LEG/_PER_COMMIT); the leg count has its own tolerance,
and one leg more than predicted alone moves a 4-leg run's requests by a quarter."""
"""Actual legs within a third of the prediction (at least one leg either way): the model
ignores cold starts and the local runtime's own hop time, which shift a leg's end."""


def test_estimate_predicts_tasks_and_legs_of_an_actual_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bucket = f"baton-est-{time.time_ns() % 10**12}"
    run = LocalRun(timeout_s=TIMEOUT_S, margin_ms=MARGIN_MS, concurrency=CONCURRENCY)
    function = run.function(bucket)
    environment = {**function.environment, "BATON_PROCESSOR": PROCESSOR}
    function = type(function)(**{**function.__dict__, "environment": environment})
    path = tmp_path / "sleepy.jsonl"
    path.write_text("".join(json.dumps(f"https://example.com/{i}") + "\n" for i in range(TASKS)))

    monkeypatch.setenv("BATON_PROCESSOR", PROCESSOR)
    monkeypatch.setenv("BATON_MARGIN_MS", str(MARGIN_MS))
    code = main(
        [
            "estimate",
            str(path),
            "--json",
            "--sample",
            "5",
            "--timeout-s",
            str(TIMEOUT_S),
            "--concurrency",
            str(CONCURRENCY),
        ]
    )
    assert code == 0
    predicted = json.loads(capsys.readouterr().out)

    with EmbeddedStack(function, bucket=bucket, log_file=tmp_path / "containers.log") as stack:
        s3 = stack.s3_client()
        etag = s3.put_object(Bucket=bucket, Key="tasks/sleepy.jsonl", Body=path.read_bytes())[
            "ETag"
        ]
        store = RunStore.over(s3, bucket)
        run_id = wait_for_end(store, "tasks/sleepy.jsonl", etag)
        summary = store.load_summary(run_id)
    assert summary is not None
    assert predicted["tasks"] == summary["processed"] == TASKS
    slack = max(1, round(LEG_TOLERANCE * predicted["legs"]))
    assert abs(summary["legs"] - predicted["legs"]) <= slack
    assert predicted["cost"]["lambda"]["requests"] == predicted["legs"] + 1
    assert summary["cost"]["lambda"]["requests"] == summary["legs"] + 1
    per_leg = summary["legs"] / predicted["legs"]
    guessed = {kind: n * per_leg for kind, n in predicted["s3_requests"].items()}
    made = summary["cost"]["s3_requests"]
    assert abs(sum(made.values()) - sum(guessed.values())) <= S3_TOLERANCE * sum(guessed.values())
    assert abs(made["put"] - guessed["put"]) <= S3_TOLERANCE * guessed["put"]
