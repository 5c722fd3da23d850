"""The one S3 boundary: botocore's errors become baton's here, with the right meaning."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from worker.exceptions import ConflictError, InputChangedError, TransientError
from worker.s3 import ObjectNotFoundError, ObjectStore, S3Error


def test_s3_revalidation_sends_if_none_match_and_a_304_is_a_hit(s3: Any, bucket: str) -> None:
    etag = s3.put_object(Bucket=bucket, Key="k", Body=b"abc")["ETag"]
    calls: list[dict[str, Any]] = []
    s3.meta.events.register("before-call.s3.GetObject", lambda params, **_: calls.append(params))
    ObjectStore(s3).unchanged(bucket, "k", etag)
    assert calls[0]["headers"]["If-None-Match"] == etag


def test_s3_revalidation_of_a_changed_object_is_input_changed(s3: Any, bucket: str) -> None:
    etag = s3.put_object(Bucket=bucket, Key="k", Body=b"abc")["ETag"]
    s3.put_object(Bucket=bucket, Key="k", Body=b"new")
    with pytest.raises(InputChangedError, match="changed"):
        ObjectStore(s3).unchanged(bucket, "k", etag)


def test_s3_pinned_read_of_a_changed_object_is_input_changed(s3: Any, bucket: str) -> None:
    etag = s3.put_object(Bucket=bucket, Key="k", Body=b"abc")["ETag"]
    s3.put_object(Bucket=bucket, Key="k", Body=b"new")
    with pytest.raises(InputChangedError, match="no longer the pinned version"):
        ObjectStore(s3).get(bucket, "k", if_match=etag)


def test_s3_missing_object_is_not_found(s3: Any, bucket: str) -> None:
    with pytest.raises(ObjectNotFoundError):
        ObjectStore(s3).get(bucket, "missing")
    assert ObjectStore(s3).head(bucket, "missing") is None


def test_s3_conditional_write_that_loses_is_a_conflict(s3: Any, bucket: str) -> None:
    store = ObjectStore(s3)
    first = store.put(bucket, "k", b"1", if_none_match=True)
    with pytest.raises(ConflictError):
        store.put(bucket, "k", b"2", if_none_match=True)
    store.put(bucket, "k", b"3", if_match=first)
    with pytest.raises(ConflictError):
        store.put(bucket, "k", b"4", if_match=first)


def test_s3_list_pages_through_every_key_in_order(s3: Any, bucket: str) -> None:
    for i in range(2_050):
        s3.put_object(Bucket=bucket, Key=f"p/{i:05d}", Body=b"")
    keys = [o.key for o in ObjectStore(s3).list(bucket, "p/", start_after="p/00010")]
    assert keys == [f"p/{i:05d}" for i in range(11, 2_050)]


class _Failing:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def get_object(self, **_: Any) -> Any:
        raise self.exc


def _client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject"
    )


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (_client_error("SlowDown", 503), TransientError),
        (_client_error("InternalError", 500), TransientError),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:9"), TransientError),
        (_client_error("AccessDenied", 403), S3Error),
    ],
)
def test_s3_errors_are_converted_by_what_a_caller_does_about_them(
    exc: Exception, kind: type[Exception]
) -> None:
    with pytest.raises(kind):
        ObjectStore(_Failing(exc)).get("b", "k")


MIB = 1024 * 1024


def test_s3_put_stream_of_a_small_body_is_one_put(s3: Any, bucket: str) -> None:
    ObjectStore(s3).put_stream(bucket, "small", iter([b"a\n", b"b\n"]))
    assert s3.get_object(Bucket=bucket, Key="small")["Body"].read() == b"a\nb\n"


def test_s3_put_stream_past_a_part_is_a_multipart_upload(s3: Any, bucket: str) -> None:
    pieces = [bytes([i]) * MIB for i in range(11)]  # 11 MiB in 5 MiB parts: 3 parts
    etag = ObjectStore(s3).put_stream(bucket, "big", iter(pieces), part_bytes=5 * MIB)
    assert etag.endswith('-3"')  # a multipart ETag names its parts
    assert s3.get_object(Bucket=bucket, Key="big")["Body"].read() == b"".join(pieces)


def test_s3_put_stream_that_fails_aborts_its_upload(s3: Any, bucket: str) -> None:
    def pieces() -> Any:
        yield b"x" * 5 * MIB
        raise RuntimeError("the source broke")

    with pytest.raises(RuntimeError, match="source broke"):
        ObjectStore(s3).put_stream(bucket, "broken", pieces(), part_bytes=5 * MIB)
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert ObjectStore(s3).head(bucket, "broken") is None


def test_s3_delete_many_takes_a_thousand_keys_a_request(s3: Any, bucket: str) -> None:
    for i in range(1_005):
        s3.put_object(Bucket=bucket, Key=f"d/{i:05d}", Body=b"")
    store = ObjectStore(s3)
    store.delete_many(bucket, [f"d/{i:05d}" for i in range(1_005)] + ["d/never-there"])
    assert list(store.list(bucket, "d/")) == []
    assert store.counts()["delete"] == 2


class _Refusing:
    def __init__(self, code: str) -> None:
        self.code = code

    def delete_objects(self, **kw: Any) -> Any:
        key = kw["Delete"]["Objects"][0]["Key"]
        return {"Errors": [{"Key": key, "Code": self.code, "Message": "no"}]}


@pytest.mark.parametrize(
    ("code", "kind"), [("InternalError", TransientError), ("AccessDenied", S3Error)]
)
def test_s3_delete_many_with_a_key_refused_raises_by_what_a_caller_does_about_it(
    code: str, kind: type[Exception]
) -> None:
    with pytest.raises(kind, match=f"1 refused, first k1: {code}"):
        ObjectStore(_Refusing(code)).delete_many("b", ["k1", "k2"])
