"""The container cache: a 304 is a hit, a new version is refused, not mixed in."""

from __future__ import annotations

from typing import Any

import pytest

from cache import ObjectCache
from worker.exceptions import InputChangedError, TaskListError


def parse(body: bytes) -> bytes:
    return body.upper()


def test_cache_first_read_is_a_miss_that_downloads(s3: Any, bucket: str) -> None:
    etag = s3.put_object(Bucket=bucket, Key="k", Body=b"abc")["ETag"]
    cache = ObjectCache()
    assert cache.get(s3, bucket, "k", etag, parse) == (b"ABC", False)
    assert (cache.stats.misses, cache.stats.bytes_downloaded) == (1, 3)


def test_cache_warm_read_revalidates_with_a_304_hit(s3: Any, bucket: str) -> None:
    etag = s3.put_object(Bucket=bucket, Key="k", Body=b"abc")["ETag"]
    cache = ObjectCache()
    cache.get(s3, bucket, "k", etag, parse)
    calls: list[dict[str, Any]] = []
    s3.meta.events.register("before-call.s3.GetObject", lambda params, **_: calls.append(params))
    assert cache.get(s3, bucket, "k", etag, parse) == (b"ABC", True)
    assert calls[0]["headers"]["If-None-Match"] == etag
    assert (cache.stats.hits, cache.stats.bytes_downloaded) == (1, 3)


def test_cache_changed_object_is_refused_on_a_warm_read(s3: Any, bucket: str) -> None:
    etag = s3.put_object(Bucket=bucket, Key="k", Body=b"abc")["ETag"]
    cache = ObjectCache()
    cache.get(s3, bucket, "k", etag, parse)
    s3.put_object(Bucket=bucket, Key="k", Body=b"new")
    with pytest.raises(InputChangedError, match="changed"):
        cache.get(s3, bucket, "k", etag, parse)


def test_cache_changed_object_is_refused_on_a_cold_read(s3: Any, bucket: str) -> None:
    etag = s3.put_object(Bucket=bucket, Key="k", Body=b"abc")["ETag"]
    s3.put_object(Bucket=bucket, Key="k", Body=b"new")
    with pytest.raises(InputChangedError, match="no longer version"):
        ObjectCache().get(s3, bucket, "k", etag, parse)


def test_cache_missing_object_is_a_task_list_error(s3: Any, bucket: str) -> None:
    with pytest.raises(TaskListError, match="does not exist"):
        ObjectCache().get(s3, bucket, "missing", '"x"', parse)


def test_cache_evicts_the_least_recently_used_entry(s3: Any, bucket: str) -> None:
    cache = ObjectCache(max_entries=1)
    first = s3.put_object(Bucket=bucket, Key="a", Body=b"a")["ETag"]
    second = s3.put_object(Bucket=bucket, Key="b", Body=b"b")["ETag"]
    cache.get(s3, bucket, "a", first, parse)
    cache.get(s3, bucket, "b", second, parse)
    assert cache.get(s3, bucket, "a", first, parse)[1] is False
