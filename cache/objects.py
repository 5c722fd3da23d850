"""Keep parsed S3 objects across warm invocations, pinned to an ETag.

A warm leg asks S3 only "is it still this version?" (`IfNoneMatch=<etag>`, a 304
is a hit) instead of downloading and parsing the task list again. The cache is
the one deliberate piece of module-level state: it lives as long as the Lambda
container does, and `clear_caches()` resets it for tests.
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
        """Return (value, hit) for the object at exactly `etag`.

        Raises InputChangedError when the object is no longer that version, so a
        run never mixes two versions of its input.
        """
        slot = (bucket, key, f"{parse.__module__}.{parse.__qualname__}")
        with self._lock:
            entry = self._entries.get(slot)
        if entry is not None and entry.etag == etag:
            try:
                response = s3.get_object(Bucket=bucket, Key=key, IfNoneMatch=etag)
            except ClientError as exc:
                if is_not_modified(exc):
                    with self._lock:
                        self._entries.move_to_end(slot)
                        self.stats.hits += 1
                    return entry.value, True
                raise _convert(exc, bucket, key, etag) from exc
            response["Body"].close()
            raise InputChangedError(
                f"s3://{bucket}/{key} changed: pinned {etag}, now {response.get('ETag')}"
            )
        try:
            response = s3.get_object(Bucket=bucket, Key=key, IfMatch=etag)
            body: bytes = response["Body"].read()
        except ClientError as exc:
            raise _convert(exc, bucket, key, etag) from exc
        value = parse(body)
        with self._lock:
            self.stats.misses += 1
            self.stats.bytes_downloaded += len(body)
            self._entries[slot] = _Entry(etag=etag, value=value, size=len(body))
            self._entries.move_to_end(slot)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return value, False

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.stats = CacheStats()


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
