"""Keep parsed S3 objects across warm invocations, pinned to an ETag.

A warm leg asks S3 only "is it still this version?" (`IfNoneMatch=<etag>`, a 304
is a hit) instead of downloading and parsing the task list again. The cache is
the one deliberate piece of module-level state: it lives as long as the Lambda
container does, and `clear_caches()` resets it for tests. A value need not be
the parsed body: `load` keeps whatever its builder made (a large list's index).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from botocore.exceptions import ClientError

from worker.exceptions import InputChangedError, TaskListError, TransientError
from worker.s3errors import is_not_found, is_not_modified, is_precondition_failed, is_transient

T = TypeVar("T")


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    bytes_downloaded: int = 0


@dataclass
class _Entry:
    etag: str
    value: Any
    size: int


@dataclass
class ObjectCache:
    """An LRU of parsed objects keyed by (bucket, key, parser), each pinned to one ETag."""

    max_entries: int = 4
    stats: CacheStats = field(default_factory=CacheStats)
    _entries: OrderedDict[tuple[str, str, str], _Entry] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(
        self, s3: Any, bucket: str, key: str, etag: str, parse: Callable[[bytes], T]
    ) -> tuple[T, bool]:
        """Return (value, hit) for the object at exactly `etag`, downloaded whole and parsed.

        Raises InputChangedError when the object is no longer that version, so a
        run never mixes two versions of its input.
        """

        def download() -> tuple[T, int]:
            response = pinned_get(s3, bucket, key, etag)
            body: bytes = response["Body"].read()
            return parse(body), len(body)

        kind = f"{parse.__module__}.{parse.__qualname__}"
        return self.load(s3, bucket, key, etag, kind=kind, build=download)

    def load(
        self,
        s3: Any,
        bucket: str,
        key: str,
        etag: str,
        *,
        kind: str,
        build: Callable[[], tuple[T, int]],
    ) -> tuple[T, bool]:
        """Like `get`, for a value that `build` reads for itself (streamed, ranged, elsewhere).

        `build` returns the value and the bytes it downloaded; a warm call only
        revalidates the object with `IfNoneMatch=etag`, whatever `build` would read.
        """
        slot = (bucket, key, kind)
        with self._lock:
            entry = self._entries.get(slot)
        if entry is not None and entry.etag == etag:
            _revalidate(s3, bucket, key, etag)
            with self._lock:
                if slot in self._entries:
                    self._entries.move_to_end(slot)
                self.stats.hits += 1
            return entry.value, True
        value, size = build()
        with self._lock:
            self.stats.misses += 1
            self.stats.bytes_downloaded += size
            self._entries[slot] = _Entry(etag=etag, value=value, size=size)
            self._entries.move_to_end(slot)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return value, False

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.stats = CacheStats()


def pinned_get(s3: Any, bucket: str, key: str, etag: str, byte_range: str | None = None) -> Any:
    """GetObject at exactly `etag` (optionally a `Range`); a changed object is InputChangedError."""
    params = {"Bucket": bucket, "Key": key, "IfMatch": etag}
    if byte_range is not None:
        params["Range"] = byte_range
    try:
        return s3.get_object(**params)
    except ClientError as exc:
        raise _convert(exc, bucket, key, etag) from exc


def _revalidate(s3: Any, bucket: str, key: str, etag: str) -> None:
    """A 304 to `IfNoneMatch=etag` means the object is still that version."""
    try:
        response = s3.get_object(Bucket=bucket, Key=key, IfNoneMatch=etag)
    except ClientError as exc:
        if is_not_modified(exc):
            return
        raise _convert(exc, bucket, key, etag) from exc
    response["Body"].close()
    raise InputChangedError(
        f"s3://{bucket}/{key} changed: pinned {etag}, now {response.get('ETag')}"
    )


def _convert(exc: ClientError, bucket: str, key: str, etag: str) -> Exception:
    if is_precondition_failed(exc):
        return InputChangedError(f"s3://{bucket}/{key} is no longer version {etag}")
    if is_not_found(exc):
        return TaskListError(f"task list s3://{bucket}/{key} does not exist")
    if is_transient(exc):
        return TransientError(f"S3 GET s3://{bucket}/{key} failed: {exc}")
    return exc


_CACHE = ObjectCache()


def object_cache() -> ObjectCache:
    return _CACHE


def clear_caches() -> None:
    _CACHE.clear()
