"""The object reader: ranged GETs pinned to the listed ETag, streamed, retried, time-bounded."""

from __future__ import annotations

import hashlib
import io
from typing import Any

import pytest
from botocore.exceptions import ReadTimeoutError

from tests.fakes import FakeClock
from worker.exceptions import ObjectChangedError, OutOfTimeError
from worker.reader import ObjectReader
from worker.s3 import ObjectStore
from worker.tasks import S3Object

BODY = bytes(range(256)) * 400  # 100 KiB


@pytest.fixture
def obj(s3: Any, bucket: str) -> S3Object:
    etag = s3.put_object(Bucket=bucket, Key="big.bin", Body=BODY)["ETag"]
    return S3Object(bucket, "big.bin", len(BODY), etag, "")


def reader(store: Any, obj: S3Object, **options: Any) -> ObjectReader:
    clock = FakeClock()
    return ObjectReader(store, obj, deadline=clock.monotonic() + 60, clock=clock, **options)


def test_reader_streams_an_object_bigger_than_its_chunk_in_ranges(s3: Any, obj: S3Object) -> None:
    r = reader(ObjectStore(s3), obj, chunk_bytes=16 * 1024, piece_bytes=4 * 1024)
    pieces = list(r)
    assert b"".join(pieces) == BODY
    assert max(len(p) for p in pieces) <= 4 * 1024  # never more than a piece held
    assert r.requests == 7  # 100 KiB in 16 KiB ranges
    assert r.bytes_read == len(BODY)


def test_reader_read_n_is_file_like(s3: Any, obj: S3Object) -> None:
    r = reader(ObjectStore(s3), obj, chunk_bytes=10_000)
    assert r.read(3) == BODY[:3]
    assert r.read(20_000) == BODY[3:20_003]
    assert hashlib.sha256(r.read()).digest() == hashlib.sha256(BODY[20_003:]).digest()
    assert r.read(5) == b""


def test_reader_refuses_an_object_changed_since_it_was_listed(s3: Any, obj: S3Object) -> None:
    s3.put_object(Bucket=obj.bucket, Key=obj.key, Body=b"new bytes")
    with pytest.raises(ObjectChangedError, match=r"changed: s3://.*no longer the version listed"):
        list(reader(ObjectStore(s3), obj))


def test_reader_says_an_object_deleted_since_it_was_listed_is_gone(s3: Any, obj: S3Object) -> None:
    s3.delete_object(Bucket=obj.bucket, Key=obj.key)
    with pytest.raises(ObjectChangedError, match="gone: s3://"):
        list(reader(ObjectStore(s3), obj))


def test_reader_checks_the_version_of_an_empty_object_too(s3: Any, bucket: str) -> None:
    etag = s3.put_object(Bucket=bucket, Key="empty", Body=b"")["ETag"]
    empty = S3Object(bucket, "empty", 0, etag, "")
    assert list(reader(ObjectStore(s3), empty)) == []
    s3.put_object(Bucket=bucket, Key="empty", Body=b"now something")
    with pytest.raises(ObjectChangedError):
        list(reader(ObjectStore(s3), empty))


class _Broken(io.BytesIO):
    def read(self, size: int | None = -1) -> bytes:
        raise ReadTimeoutError(endpoint_url="http://s3")


class FlakyStore:
    """Breaks the stream of the second range once, mid-read (a dropped connection)."""

    def __init__(self, real: ObjectStore) -> None:
        self.real = real
        self.ranges: list[str | None] = []

    def open(self, bucket: str, key: str, *, if_match: str, byte_range: str | None = None) -> Any:
        self.ranges.append(byte_range)
        body, size = self.real.open(bucket, key, if_match=if_match, byte_range=byte_range)
        if len(self.ranges) == 2:
            body.close()
            return _Broken(), size
        return body, size


def test_reader_resumes_a_broken_stream_from_the_byte_it_reached(s3: Any, obj: S3Object) -> None:
    flaky = FlakyStore(ObjectStore(s3))
    r = reader(flaky, obj, chunk_bytes=64 * 1024)
    assert b"".join(r) == BODY
    assert flaky.ranges == ["bytes=0-65535", "bytes=65536-102399", "bytes=65536-102399"]


def test_reader_out_of_time_defers_the_task(s3: Any, obj: S3Object) -> None:
    clock = FakeClock()
    r = ObjectReader(ObjectStore(s3), obj, deadline=clock.monotonic() - 1, clock=clock)
    with pytest.raises(OutOfTimeError) as raised:
        list(r)
    assert raised.value.tried is False
