"""The Lambda entry point: one container per process, clear answers for bad input."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

import handler
from tests.conftest import put_tasks
from tests.fakes import FakeClock, FakeContext
from tests.unit.harness import Harness, settings
from worker.events import LegEvent


@pytest.fixture
def fresh_container(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(handler, "_container", None)
    yield
    if handler._container is not None:
        handler._container.close()


def test_handler_rejects_an_unknown_event_without_raising(fresh_container: None, s3: Any) -> None:
    answer = handler.handler({"hello": "world"}, FakeContext(FakeClock()))
    assert answer["ok"] is False
    assert answer["error_type"] == "BadEventError"
    assert "unrecognised event" in answer["error"]


def test_handler_leg_payload_for_an_unknown_run_is_refused(
    fresh_container: None, s3: Any, bucket: str
) -> None:
    payload = {
        "v": 1,
        "run_id": "ghost-000000000000",
        "bucket": bucket,
        "key": "tasks/a.json",
        "etag": '"x"',
        "position": 0,
        "leg": 3,
    }
    answer = handler.handler(payload, FakeContext(FakeClock()))
    assert answer["error_type"] == "RunNotFoundError"


def test_handler_keeps_one_container_across_invocations(fresh_container: None, s3: Any) -> None:
    handler.handler({"hello": 1}, FakeContext(FakeClock()))
    first = handler._container
    handler.handler({"hello": 2}, FakeContext(FakeClock()))
    assert handler._container is first


def test_handler_ignores_its_own_result_writes(fresh_container: None, s3: Any) -> None:
    event = {
        "Records": [
            {
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "bucket": {"name": "b"},
                    "object": {"key": "runs/x/summary.json", "eTag": "e"},
                },
            }
        ]
    }
    answer = handler.handler(event, FakeContext(FakeClock()))
    assert answer["ok"] is True
    assert answer["results"][0]["action"] == "ignored"


def test_handler_leg_with_a_different_pinned_etag_exits_quietly(s3: Any, bucket: str) -> None:
    h = Harness(s3, bucket, settings(), timeout_ms=1_600)
    etag = put_tasks(s3, bucket, "tasks/list.json", ["https://a.example/"] * 12)
    h.begin(h.upload_event("tasks/list.json", etag))
    payload = {**h.invoker.pop(), "etag": '"forged"'}
    assert h.invoke(payload)["results"][0]["exit"] == "stale"


def test_handler_warns_once_when_the_recursion_loop_is_not_allowed(
    s3: Any, bucket: str, caplog: pytest.LogCaptureFixture
) -> None:
    class Lambda:
        calls = 0

        def get_function_recursion_config(self, FunctionName: str) -> dict[str, str]:
            Lambda.calls += 1
            return {"RecursiveLoop": "Terminate"}

    h = Harness(s3, bucket, settings(check_recursion=True), timeout_ms=1_600)
    h.container.lambda_client = Lambda()
    etag = put_tasks(s3, bucket, "tasks/list.json", ["https://a.example/"] * 23)
    with caplog.at_level(logging.WARNING):
        h.drive(h.upload_event("tasks/list.json", etag))
    assert Lambda.calls == 1
    warnings = [r.getMessage() for r in caplog.records if "RecursiveLoop" in r.getMessage()]
    assert len(warnings) == 1
    assert "stop this chain after about 16 hops" in warnings[0]


def test_handler_end_to_end_through_the_real_entry_point(
    fresh_container: None, s3: Any, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BATON_PROCESSOR", "tests.unit.test_handler:echo")
    monkeypatch.setenv("BATON_CHECK_RECURSION", "false")
    monkeypatch.setenv("BATON_HANDOFF_ATTEMPTS", "1")
    etag = put_tasks(s3, bucket, "tasks/list.json", ["https://a.example/", "https://b.example/"])
    event = Harness(s3, bucket, settings()).upload_event("tasks/list.json", etag)
    started = handler.handler(event, FakeContext(FakeClock()))["results"][0]
    # moto has no function to invoke: leg 0's hand-off fails and is left to the sweep,
    # which sends the leg the checkpoint asks for.
    assert (started["outcome"], started["leg"]) == ("started", 0)
    assert "the sweep starts it" in started["note"]
    run_id = started["run_id"]
    record = json.loads(
        boto3.client("s3").get_object(Bucket=bucket, Key=f"runs/{run_id}/run.json")["Body"].read()
    )
    leg = LegEvent(run_id, bucket, "tasks/list.json", record["etag"], position=0, leg=0)
    answer = handler.handler(leg.payload(), FakeContext(FakeClock()))
    assert answer["results"][0]["exit"] == "done"
    body = boto3.client("s3").get_object(Bucket=bucket, Key=f"runs/{run_id}/summary.json")
    assert b'"ok":2' in body["Body"].read()


def echo(task: Any, ctx: Any) -> dict[str, Any]:
    return {"echo": task.url}
