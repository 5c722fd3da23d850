from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from cache import clear_caches


@pytest.fixture(autouse=True)
def _fake_aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may ever reach real AWS, whatever the developer's shell has set."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in (
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_ENDPOINT_URL_LAMBDA",
    ):
        monkeypatch.delenv(name, raising=False)
    clear_caches()


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("s3", region_name="us-east-1")


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"baton-test-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def put_tasks(s3: Any, bucket: str, key: str, tasks: list[Any], jsonl: bool = False) -> str:
    if jsonl:
        body = "".join(json.dumps(t) + "\n" for t in tasks).encode()
    else:
        body = json.dumps(tasks).encode()
    return str(s3.put_object(Bucket=bucket, Key=key, Body=body)["ETag"])
