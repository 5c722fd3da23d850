"""EmbeddedS3 over real HTTP: moto's S3 semantics, atomic CAS, notifications and faults."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from moto.s3.models import S3Backend

from devstack.s3server import (
    INTERNAL_ERROR,
    SLOW_DOWN,
    EmbeddedS3,
    RandomFaults,
    S3Call,
    S3Fault,
)

pytestmark = pytest.mark.integration

NO_RETRIES = Config(retries={"total_max_attempts": 1, "mode": "standard"})

Created = tuple[str, str, str, int]


@pytest.fixture
def created() -> list[Created]:
    return []


@pytest.fixture
def server(created: list[Created]) -> Iterator[EmbeddedS3]:
    with EmbeddedS3(on_object_created=lambda *args: created.append(args)) as running:
        yield running


def make_client(server: EmbeddedS3, config: Config | None = None) -> Any:
    return boto3.client("s3", endpoint_url=server.endpoint_url, config=config)


@pytest.fixture
def s3(server: EmbeddedS3) -> Iterator[Any]:
    client = make_client(server, NO_RETRIES)
    yield client
    client.close()


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"baton-s3-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def error_code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def put_concurrently(server: EmbeddedS3, writers: int, **put: Any) -> list[str]:
    """Start `writers` PutObject calls at once; each returns "ok" or its error code."""
    outcomes: list[str] = []
    barrier = threading.Barrier(writers)

    def write(number: int) -> None:
        client = make_client(server, NO_RETRIES)
        barrier.wait()
        try:
            client.put_object(Body=f"writer {number}".encode(), **put)
            outcomes.append("ok")
        except ClientError as exc:
            outcomes.append(str(exc.response["Error"]["Code"]))
        finally:
            client.close()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


@pytest.fixture
def slow_backend_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Widen moto's window between its precondition check and its write to 50 ms."""
    put_object = S3Backend.put_object

    def slow_put_object(self: S3Backend, *args: Any, **kwargs: Any) -> Any:
        time.sleep(0.05)
        return put_object(self, *args, **kwargs)

    monkeypatch.setattr(S3Backend, "put_object", slow_put_object)


def test_embedded_s3_put_and_get_round_trip(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="tasks/a b+c.json", Body=b"[1, 2]")

    body = s3.get_object(Bucket=bucket, Key="tasks/a b+c.json")["Body"].read()

    assert body == b"[1, 2]"


def test_embedded_s3_get_if_none_match_is_not_modified(s3: Any, bucket: str) -> None:
    etag = s3.put_object(Bucket=bucket, Key="k", Body=b"v")["ETag"]

    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="k", IfNoneMatch=etag)

    assert error_code(exc) == "304"


def test_embedded_s3_get_if_match_stale_etag_fails(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"v1")

    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="k", IfMatch='"0123456789abcdef0123456789abcdef"')

    assert error_code(exc) == "PreconditionFailed"


def test_embedded_s3_ranged_get_returns_the_range(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"0123456789")

    response = s3.get_object(Bucket=bucket, Key="k", Range="bytes=2-5")

    assert response["Body"].read() == b"2345"
    assert response["ContentRange"] == "bytes 2-5/10"


def test_embedded_s3_put_if_none_match_fails_when_key_exists(s3: Any, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"first", IfNoneMatch="*")

    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="k", Body=b"second", IfNoneMatch="*")

    assert error_code(exc) == "PreconditionFailed"


def test_embedded_s3_put_if_match_stale_etag_fails(s3: Any, bucket: str) -> None:
    stale = s3.put_object(Bucket=bucket, Key="k", Body=b"v1")["ETag"]
    s3.put_object(Bucket=bucket, Key="k", Body=b"v2")

    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="k", Body=b"v3", IfMatch=stale)

    assert error_code(exc) == "PreconditionFailed"


@pytest.mark.usefixtures("slow_backend_writes")
def test_embedded_s3_concurrent_compare_and_swap_has_one_winner(
    server: EmbeddedS3, s3: Any, bucket: str
) -> None:
    etag = s3.put_object(Bucket=bucket, Key="checkpoint.json", Body=b"v0")["ETag"]

    outcomes = put_concurrently(server, 6, Bucket=bucket, Key="checkpoint.json", IfMatch=etag)

    assert sorted(outcomes) == ["PreconditionFailed"] * 5 + ["ok"]


@pytest.mark.usefixtures("slow_backend_writes")
def test_embedded_s3_concurrent_create_if_absent_has_one_winner(
    server: EmbeddedS3, bucket: str
) -> None:
    outcomes = put_concurrently(server, 6, Bucket=bucket, Key="checkpoint.json", IfNoneMatch="*")

    assert sorted(outcomes) == ["PreconditionFailed"] * 5 + ["ok"]


def test_embedded_s3_put_notifies_object_created(
    s3: Any, bucket: str, created: list[Created]
) -> None:
    etag = s3.put_object(Bucket=bucket, Key="tasks/a b.json", Body=b"[1, 2, 3]")["ETag"]

    assert created == [(bucket, "tasks/a b.json", etag, 9)]


def test_embedded_s3_copy_notifies_object_created(
    s3: Any, bucket: str, created: list[Created]
) -> None:
    etag = s3.put_object(Bucket=bucket, Key="a.json", Body=b"[]")["ETag"]

    s3.copy_object(Bucket=bucket, Key="b.json", CopySource={"Bucket": bucket, "Key": "a.json"})

    assert created[-1] == (bucket, "b.json", etag, 2)


def test_embedded_s3_complete_multipart_upload_notifies_object_created(
    s3: Any, bucket: str, created: list[Created]
) -> None:
    upload = s3.create_multipart_upload(Bucket=bucket, Key="big.jsonl")["UploadId"]
    parts = []
    for number, body in enumerate((b"x" * 5 * 1024 * 1024, b"tail"), start=1):
        part = s3.upload_part(
            Bucket=bucket, Key="big.jsonl", UploadId=upload, PartNumber=number, Body=body
        )
        parts.append({"ETag": part["ETag"], "PartNumber": number})

    done = s3.complete_multipart_upload(
        Bucket=bucket, Key="big.jsonl", UploadId=upload, MultipartUpload={"Parts": parts}
    )

    assert created == [(bucket, "big.jsonl", done["ETag"], 5 * 1024 * 1024 + 4)]


def test_embedded_s3_failed_conditional_put_does_not_notify(
    s3: Any, bucket: str, created: list[Created]
) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"v1")

    with pytest.raises(ClientError):
        s3.put_object(Bucket=bucket, Key="k", Body=b"v2", IfNoneMatch="*")

    assert len(created) == 1


def test_embedded_s3_callback_error_does_not_fail_the_write(
    server: EmbeddedS3, s3: Any, bucket: str
) -> None:
    def broken(bucket: str, key: str, etag: str, size: int) -> None:
        raise RuntimeError("notification target is down")

    server.on_object_created = broken

    s3.put_object(Bucket=bucket, Key="k", Body=b"v")

    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"


def test_embedded_s3_fault_hook_answers_an_s3_error(
    server: EmbeddedS3, s3: Any, bucket: str
) -> None:
    server.fault_hook = lambda call: SLOW_DOWN if call.method == "PUT" else None

    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="k", Body=b"v")

    assert error_code(exc) == "SlowDown"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert server.faults_injected == {"SlowDown": 1}


def test_embedded_s3_fault_before_forwarding_leaves_no_object(
    server: EmbeddedS3, s3: Any, bucket: str, created: list[Created]
) -> None:
    server.fault_hook = lambda call: INTERNAL_ERROR if call.method == "PUT" else None

    with pytest.raises(ClientError):
        s3.put_object(Bucket=bucket, Key="k", Body=b"v")

    server.fault_hook = None
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    assert created == []


def test_embedded_s3_fault_after_forwarding_keeps_the_write(
    server: EmbeddedS3, s3: Any, bucket: str, created: list[Created]
) -> None:
    lost_reply = S3Fault(500, "InternalError", "reply lost", after=True)
    server.fault_hook = lambda call: lost_reply if call.method == "PUT" else None

    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="k", Body=b"v")

    assert error_code(exc) == "InternalError"
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"
    assert [key for _, key, _, _ in created] == ["k"]


def test_embedded_s3_botocore_retries_through_injected_faults(
    server: EmbeddedS3, bucket: str
) -> None:
    remaining = [2]

    def fail_twice(call: S3Call) -> S3Fault | None:
        if call.method != "PUT" or remaining[0] == 0:
            return None
        remaining[0] -= 1
        return SLOW_DOWN

    server.fault_hook = fail_twice
    client = make_client(server, Config(retries={"total_max_attempts": 3, "mode": "standard"}))
    try:
        response = client.put_object(Bucket=bucket, Key="k", Body=b"v")
    finally:
        client.close()

    assert response["ResponseMetadata"]["RetryAttempts"] == 2
    assert server.faults_injected == {"SlowDown": 2}


def test_embedded_s3_random_faults_replay_with_the_same_seed() -> None:
    call = S3Call("PUT", "b", "k", frozenset(), conditional=False)
    first = RandomFaults(rate=0.5, seed=7)
    second = RandomFaults(rate=0.5, seed=7)

    draws = [first(call) for _ in range(50)]

    assert draws == [second(call) for _ in range(50)]
    assert 10 < sum(fault is not None for fault in draws) < 40


def test_embedded_s3_random_faults_only_hit_matching_calls() -> None:
    faults = RandomFaults(rate=1.0, match=lambda call: call.key.endswith("checkpoint.json"))

    assert faults(S3Call("PUT", "b", "runs/r/checkpoint.json", frozenset(), True)) is not None
    assert faults(S3Call("PUT", "b", "runs/r/results/1.jsonl", frozenset(), False)) is None
