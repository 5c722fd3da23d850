"""Keep parsed S3 objects across warm invocations, pinned to an ETag.

A warm leg asks S3 only "is it still this version?" (`IfNoneMatch=<etag>`, a 304
is a hit) instead of downloading and parsing the task list again. The cache is
the one deliberate piece of module-level state: it lives as long as the Lambda
container does, and `clear_caches()` resets it for tests.

It knows nothing of S3 itself: the caller passes how to revalidate (raising if
the object changed) and how to build the value (a parsed list, a large list's
index), so the runtime's one S3 boundary stays the only code that talks to S3.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, TypeVar

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
    """An LRU of values keyed by a slot (bucket, key, kind), each pinned to one ETag."""

    max_entries: int = 4
    stats: CacheStats = field(default_factory=CacheStats)
    _entries: OrderedDict[Hashable, _Entry] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def load(
        self,
        slot: Hashable,
        etag: str,
        *,
        revalidate: Callable[[], None],
        build: Callable[[], tuple[T, int]],
    ) -> tuple[T, bool]:
        """(value, hit) for the object at exactly `etag`.

        A cached value of that ETag costs one `revalidate()` (which raises when
        the object is no longer that version); otherwise `build()` returns the
        value and the bytes it downloaded.
        """
        with self._lock:
            entry = self._entries.get(slot)
        if entry is not None and entry.etag == etag:
            revalidate()
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


_CACHE = ObjectCache()


def object_cache() -> ObjectCache:
    return _CACHE


def clear_caches() -> None:
    _CACHE.clear()
