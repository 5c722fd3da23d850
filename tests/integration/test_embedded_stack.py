"""The embedded stack: an upload under tasks/ reaches the function as a real S3 event."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from devstack.lambda_runtime import FunctionConfig
from devstack.stack import EmbeddedStack, TriggerFilter, object_created_event

pytestmark = pytest.mark.integration

RECORDER = FunctionConfig(
    name="recorder", handler="tests.integration.handlers.recorder.handler", timeout_s=5.0
)


@pytest.fixture
def stack() -> Iterator[EmbeddedStack]:
    with EmbeddedStack(RECORDER) as running:
        yield running


@pytest.fixture
def s3(stack: EmbeddedStack) -> Iterator[Any]:
    client = stack.s3_client()
    yield client
    client.close()


def seen_events(s3: Any, bucket: str) -> list[dict[str, Any]]:
    listing = s3.list_objects_v2(Bucket=bucket, Prefix="seen/")
    return [
        json.loads(s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())
        for item in listing.get("Contents", [])
    ]


def test_embedded_stack_upload_invokes_the_function_with_an_s3_event(
    stack: EmbeddedStack, s3: Any
) -> None:
    etag = s3.put_object(Bucket=stack.bucket, Key="tasks/spring crawl, 1.json", Body=b"[]")["ETag"]

    assert stack.runtime.wait_idle(15)

    [event] = seen_events(s3, stack.bucket)
    [record] = event["Records"]
    assert (record["eventSource"], record["eventName"]) == ("aws:s3", "ObjectCreated:Put")
    assert record["s3"]["bucket"]["name"] == stack.bucket
    assert record["s3"]["object"]["key"] == "tasks/spring+crawl%2C+1.json"
    assert record["s3"]["object"]["eTag"] == etag.strip('"')
    assert record["s3"]["object"]["size"] == 2


@pytest.mark.parametrize("key", ["runs/r/summary.json", "tasks/notes.txt", "seen/x.json"])
def test_embedded_stack_keys_outside_the_trigger_filter_invoke_nothing(
    stack: EmbeddedStack, s3: Any, key: str
) -> None:
    s3.put_object(Bucket=stack.bucket, Key=key, Body=b"[]")

    assert stack.runtime.wait_idle(5)
    assert stack.runtime.stats("recorder").async_accepted == 0


def test_embedded_stack_jsonl_upload_triggers(stack: EmbeddedStack, s3: Any) -> None:
    s3.put_object(Bucket=stack.bucket, Key="tasks/list.jsonl", Body=b'"http://a"\n')

    assert stack.runtime.wait_idle(15)
    assert stack.runtime.stats("recorder").succeeded == 1


def test_embedded_stack_lambda_client_reaches_the_runtime(stack: EmbeddedStack) -> None:
    client = stack.lambda_client()
    try:
        config = client.get_function_recursion_config(FunctionName=RECORDER.name)
    finally:
        client.close()

    assert config["RecursiveLoop"] == "Terminate"


def test_embedded_stack_client_environment_points_boto3_at_the_stack(
    stack: EmbeddedStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in stack.client_environment().items():
        monkeypatch.setenv(name, value)
    client = boto3.client("lambda")
    try:
        configuration = client.get_function(FunctionName=RECORDER.name)["Configuration"]
    finally:
        client.close()

    assert configuration["FunctionName"] == RECORDER.name


def test_embedded_stack_default_function_is_deployed_like_the_template() -> None:
    stack = EmbeddedStack()

    assert (stack.function.name, stack.function.handler) == ("baton-worker", "handler.handler")
    assert stack.function.recursive_loop == "Allow"
    assert stack.function.environment["BATON_BUCKET"] == stack.bucket


def test_embedded_stack_schedule_sends_sweep_ticks() -> None:
    counter = FunctionConfig(name="ticked", handler="tests.integration.handlers.counter.handler")
    with EmbeddedStack(counter, sweep_interval_s=0.1) as stack:
        time.sleep(0.5)
        ticks = stack.runtime.stats("ticked").async_accepted

    assert ticks >= 2


def test_embedded_stack_trigger_filter_matches_prefix_and_suffixes() -> None:
    trigger = TriggerFilter()

    assert trigger.matches("tasks/a.json")
    assert trigger.matches("tasks/deep/b.jsonl")
    assert not trigger.matches("tasks/a.json.bak")
    assert not trigger.matches("other/tasks/a.json")


def test_embedded_stack_event_keys_are_url_encoded_like_s3() -> None:
    event = object_created_event("b", "tasks/a b+c,é.json", '"abc"', 3, sequencer="01")

    assert event["Records"][0]["s3"]["object"]["key"] == "tasks/a+b%2Bc%2C%C3%A9.json"
    assert event["Records"][0]["s3"]["object"]["eTag"] == "abc"
