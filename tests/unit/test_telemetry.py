"""Structured logs and EMF metrics: what CloudWatch will read."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

from tests.conftest import put_tasks
from tests.unit.harness import Harness, settings
from worker.telemetry import JsonFormatter, emit_metrics


def test_telemetry_json_log_lines_carry_extra_fields() -> None:
    record = logging.LogRecord("worker.leg", logging.INFO, "f", 1, "leg %s", (3,), None)
    record.run_id = "r-1"
    line = json.loads(JsonFormatter().format(record))
    assert (line["message"], line["level"], line["run_id"]) == ("leg 3", "INFO", "r-1")


def test_telemetry_emf_document_declares_every_metric() -> None:
    out = io.StringIO()
    emit_metrics({"TasksDone": (5, "Count")}, {"Function": "baton"}, {"run_id": "r"}, out)
    doc = json.loads(out.getvalue())
    directive = doc["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "baton"
    assert directive["Dimensions"] == [["Function"]]
    assert directive["Metrics"] == [{"Name": "TasksDone", "Unit": "Count"}]
    assert (doc["TasksDone"], doc["Function"], doc["run_id"]) == (5, "baton", "r")


def test_telemetry_each_leg_emits_its_metrics(s3: Any, bucket: str, capsys: Any) -> None:
    h = Harness(s3, bucket, settings(metrics=True), timeout_ms=1_600)
    etag = put_tasks(s3, bucket, "tasks/list.json", [f"https://e.example/{i}" for i in range(12)])
    h.drive(h.upload_event("tasks/list.json", etag))
    docs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if "_aws" in line]
    assert [d["exit"] for d in docs] == ["handed_off", "done"]
    assert sum(d["TasksDone"] for d in docs) == 12
    assert all(0 < d["BudgetUse"] <= 100 for d in docs)
