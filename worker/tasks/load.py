"""Task lists of any size behind one small interface, loaded by `load_task_list`.

A list up to `Settings.index_threshold_bytes` is read whole into a `list[Task]`,
as it always was. A larger JSONL list is never held: one streaming pass
(GetObject IfMatch=etag, in 1 MiB chunks) builds a `JsonlIndex`, the byte offset
of every 64th task (125 KB per million tasks), and each window the leg asks for
is then one ranged GET pinned to the same ETag, so a changed list still ends the
run as superseded. The container cache keeps the index the way it kept the list
(a warm leg revalidates with IfNoneMatch), and the index is also persisted at
`{results_prefix}_index/{digest}.idx`, so a cold container in a later leg reads
it instead of scanning the list again. A larger JSON array is refused: it has no
lines to index, and `jq -c '.[]'` turns it into JSONL.

The persisted format is `worker.tasks.index`'s.
"""

from __future__ import annotations

import hashlib
import logging
import time
from contextlib import closing
from dataclasses import dataclass
from typing import Protocol, overload

from cache import ObjectCache
from worker.config import Settings
from worker.exceptions import BatonError, TaskListError
from worker.s3 import ObjectNotFoundError, ObjectStore, chunks
from worker.tasks.index import JsonlIndex, decode_index, encode_index, index_jsonl
from worker.tasks.model import Task
from worker.tasks.parse import parse_task_list

INDEX_STRIDE = 64
"""A window reads at most 2 * (stride - 1) lines it does not need; 64 keeps that near 10 KB."""
_KIND = "worker.tasks"
"""The cache slot of task lists, whichever form they take."""

log = logging.getLogger(__name__)


class TaskList(Protocol):
    """What a leg needs of its tasks; a `list[Task]` is one, `IndexedTaskList` the other."""

    def __len__(self) -> int: ...

    @overload
    def __getitem__(self, item: int) -> Task: ...

    @overload
    def __getitem__(self, item: slice) -> list[Task]: ...


def load_task_list(
    cache: ObjectCache, s3: ObjectStore, bucket: str, key: str, etag: str, *, settings: Settings
) -> tuple[TaskList, bool]:
    """The task list at exactly `etag`, and whether the container cache already held it.

    Raises InputChangedError (the list is no longer that version), TaskListError
    (missing or unreadable) and TransientError. So do the windows of an indexed
    list, read later.
    """
    value, hit = cache.load(
        (bucket, key, _KIND),
        etag,
        revalidate=lambda: s3.unchanged(bucket, key, etag),
        build=lambda: _read(s3, bucket, key, etag, settings),
    )
    if isinstance(value, JsonlIndex):
        return IndexedTaskList(s3, bucket, key, etag, value), hit
    return value, hit


@dataclass(frozen=True)
class IndexedTaskList:
    """A JSONL list that stays in S3: each window is one ranged GET, pinned to the ETag."""

    s3: ObjectStore
    bucket: str
    key: str
    etag: str
    index: JsonlIndex

    def __len__(self) -> int:
        return self.index.count

    @overload
    def __getitem__(self, item: int) -> Task: ...

    @overload
    def __getitem__(self, item: slice) -> list[Task]: ...

    def __getitem__(self, item: int | slice) -> Task | list[Task]:
        count = self.index.count
        if isinstance(item, slice):
            start, stop, step = item.indices(count)
            if step != 1:
                raise ValueError("an indexed task list is read in windows: the step must be 1")
            return self._window(start, stop) if start < stop else []
        at = item + count if item < 0 else item
        if not 0 <= at < count:
            raise IndexError(f"task {item} is out of range ({count} tasks)")
        return self._window(at, at + 1)[0]

    def _window(self, start: int, stop: int) -> list[Task]:
        first, last = self.index.byte_range(start, stop)
        body, _ = self.s3.open(
            self.bucket, self.key, if_match=self.etag, byte_range=f"bytes={first}-{last}"
        )
        tasks = self.index.window(chunks(body, f"s3://{self.bucket}/{self.key}"), start, stop)
        if len(tasks) != stop - start:
            raise TaskListError(
                f"the index of s3://{self.bucket}/{self.key} does not match it: "
                f"read {len(tasks)} tasks at {start}, expected {stop - start}"
            )
        return tasks


def index_key(results_prefix: str, bucket: str, key: str, etag: str) -> str:
    """Where the index of one version of a list is persisted (never under the tasks prefix)."""
    digest = hashlib.sha256(f"{bucket}\n{key}\n{etag}".encode()).hexdigest()[:32]
    return f"{results_prefix}_index/{digest}.idx"


def _read(
    s3: ObjectStore, bucket: str, key: str, etag: str, settings: Settings
) -> tuple[list[Task] | JsonlIndex, int]:
    """One GET decides: a small list is read whole, a large one is indexed (or its index read)."""
    what = f"s3://{bucket}/{key}"
    try:
        body, size = s3.open(bucket, key, if_match=etag)
    except ObjectNotFoundError as exc:
        raise TaskListError(f"task list {what} does not exist") from exc
    with closing(body):
        if size <= settings.index_threshold_bytes:
            return parse_task_list(b"".join(chunks(body, what))), size
        where = index_key(settings.results_prefix, bucket, key, etag)
        stored = _load_index(s3, bucket, where, etag, size)
        if stored is not None:
            return stored
        started = time.monotonic()
        index = index_jsonl(chunks(body, what), size, INDEX_STRIDE)
    data = encode_index(etag, index)
    log.info(
        "indexed %s: %s tasks, %s bytes, in %.0f ms; index %s bytes",
        what,
        index.count,
        size,
        (time.monotonic() - started) * 1000,
        len(data),
    )
    try:
        s3.put(bucket, where, data, content_type="application/octet-stream")
    except BatonError as exc:
        log.warning("could not persist the index s3://%s/%s: %s", bucket, where, exc)
    return index, size


def _load_index(
    s3: ObjectStore, bucket: str, where: str, etag: str, size: int
) -> tuple[JsonlIndex, int] | None:
    """The persisted index of exactly this version, or None (absent, unreadable, stale)."""
    try:
        data = s3.get(bucket, where).body
    except ObjectNotFoundError:
        return None
    except BatonError as exc:
        log.warning("could not read the index s3://%s/%s: %s", bucket, where, exc)
        return None
    try:
        stored_etag, index = decode_index(data)
        if (stored_etag, index.size) != (etag, size):
            raise ValueError(f"it indexes version {stored_etag} of {index.size} bytes")
    except ValueError as exc:
        log.warning("ignoring the index s3://%s/%s: %s", bucket, where, exc)
        return None
    return index, len(data)
