"""The sparse index of a JSONL list too large to hold, and its persisted form.

One streaming pass keeps the byte offset of every `stride`-th task line; any
window of tasks is then one ranged read, parsed by the same code as a whole list.

Persisted format (version 1), integers little-endian:

    header   "BATONIDX", u16 version, u16 etag length, u32 stride, u64 list size,
             u64 task count, u64 offsets, u64 blank-line changes, u64 duplicate ids
    etag     UTF-8
    arrays   u64 offsets, blank_points, blank_counts, dup_later, dup_first
    crc32    u32 of everything before it
"""

from __future__ import annotations

import struct
import sys
import zlib
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from worker.exceptions import TaskListError
from worker.tasks.lines import open_jsonl, task_lines
from worker.tasks.model import MAX_TASK_BYTES, Task
from worker.tasks.parse import (
    Unparsable,
    duplicate,
    line_entry,
    reject_spanning_value,
    to_task,
    whole_object_error,
)

INDEX_VERSION = 1
_MAGIC = b"BATONIDX"
_HEADER = struct.Struct("<8sHHIQQQQQ")
_CRC = struct.Struct("<I")
_ID_PARTS = 1024
"""Id hashes are split this many ways so finding repeats needs only a small dict at a time."""


@dataclass(frozen=True)
class JsonlIndex:
    """What one pass over a JSONL list keeps: where every `stride`-th task's line starts.

    Line numbers (for error messages) are not stored per point: a task's line is
    its index + 1 + the blank lines before it, and that count changes rarely, so
    only its changes are kept (`blank_points`, `blank_counts`).
    """

    size: int
    count: int
    stride: int
    offsets: array[int]
    """Byte offset of the line of task `i * stride`."""
    blank_points: array[int]
    blank_counts: array[int]
    """From point `blank_points[j]` on, `blank_counts[j]` blank lines precede the point."""
    dup_later: array[int]
    """Tasks whose id repeats an earlier task's, ascending; `dup_first` holds the earlier one."""
    dup_first: array[int]

    def byte_range(self, start: int, stop: int) -> tuple[int, int]:
        """First and last byte (inclusive) of the lines that hold tasks [start, stop)."""
        end_point = -(-stop // self.stride)
        end = self.offsets[end_point] if end_point < len(self.offsets) else self.size
        return self.offsets[start // self.stride], end - 1

    def window(self, chunks: Iterable[bytes], start: int, stop: int) -> list[Task]:
        """Tasks [start, stop) from a stream that begins at `byte_range(start, stop)[0]`."""
        point = start // self.stride
        index = point * self.stride
        at = bisect_right(self.blank_points, point)
        first_number = index + 1 + (self.blank_counts[at - 1] if at else 0)
        tasks = []
        for number, _, line, length in task_lines(chunks, self.offsets[point], first_number):
            if start <= index < stop:
                task = to_task(index, line_entry(number, line, length))
                tasks.append(self._unless_duplicate(task))
            index += 1
        return tasks

    def _unless_duplicate(self, task: Task) -> Task:
        at = bisect_left(self.dup_later, task.index)
        if at == len(self.dup_later) or self.dup_later[at] != task.index:
            return task
        return duplicate(task, self.dup_first[at])


def index_jsonl(chunks: Iterable[bytes], size: int, stride: int) -> JsonlIndex:
    """Index a JSONL list in one pass, holding one chunk (and one line) at a time.

    The list-level checks of `parse_task_list` are made too, so a list fails here
    exactly when it would fail whole, with one addition: a first line that opens a
    JSON value it does not close (a pretty-printed object) fails the list, since
    its other lines would each parse as a task of their own.
    """
    skip, stream = open_jsonl(chunks)
    offsets: array[int] = array("Q")
    blank_points: array[int] = array("Q")
    blank_counts: array[int] = array("Q")
    ids = _IdHashes()
    count = 0
    first: Any = None
    parsed = False
    for number, offset, line, length in task_lines(stream, skip, 1):
        if count % stride == 0:
            offsets.append(offset)
            blanks = number - 1 - count
            if blanks != (blank_counts[-1] if blank_counts else 0):
                blank_points.append(count // stride)
                blank_counts.append(blanks)
        if not parsed or b'"id"' in line or b"\\u" in line:
            # Only lines that may hold an id (a key can hide behind \u escapes) are parsed.
            entry = line_entry(number, line, length)
            if count == 0:
                first = entry
                reject_spanning_value(line[:length] if length <= MAX_TASK_BYTES else b"")
            parsed = parsed or not isinstance(entry, Unparsable)
            task = to_task(count, entry)
            if task.id is not None and task.error is None:
                ids.add(task.id, count)
        count += 1
    if count == 0:
        raise TaskListError("task list is empty: expected a JSON array or JSONL lines")
    if isinstance(first, Unparsable) and not parsed:
        raise TaskListError(f"task list is neither a JSON array nor JSONL: {first.reason}")
    if count == 1 and isinstance(first, dict) and "url" not in first:
        raise whole_object_error(first)
    later, earlier = ids.repeats()
    return JsonlIndex(size, count, stride, offsets, blank_points, blank_counts, later, earlier)


class _IdHashes:
    """Finds repeated ids in 12 bytes per task with an id, however long the ids are.

    Ids are compared by their 64-bit hash: two different ids collide with odds of
    about n**2 / 2**65 (3e-6 for ten million ids), a price paid for not holding
    the ids themselves.
    """

    def __init__(self) -> None:
        self._hashes: list[array[int]] = [array("Q") for _ in range(_ID_PARTS)]
        self._indices: list[array[int]] = [array("I") for _ in range(_ID_PARTS)]

    def add(self, task_id: str, index: int) -> None:
        digest = hash(task_id) & 0xFFFF_FFFF_FFFF_FFFF
        part = digest % _ID_PARTS
        self._hashes[part].append(digest)
        self._indices[part].append(index)

    def repeats(self) -> tuple[array[int], array[int]]:
        """(later task, first task with the same id) pairs, by later task."""
        found: list[tuple[int, int]] = []
        for part in range(_ID_PARTS):
            first_seen: dict[int, int] = {}
            for digest, index in zip(self._hashes[part], self._indices[part], strict=True):
                first = first_seen.setdefault(digest, index)
                if first != index:
                    found.append((index, first))
            self._hashes[part], self._indices[part] = array("Q"), array("I")
        found.sort()
        return array("Q", [later for later, _ in found]), array("Q", [first for _, first in found])


def encode_index(etag: str, index: JsonlIndex) -> bytes:
    tag = etag.encode()
    header = _HEADER.pack(
        _MAGIC,
        INDEX_VERSION,
        len(tag),
        index.stride,
        index.size,
        index.count,
        len(index.offsets),
        len(index.blank_points),
        len(index.dup_later),
    )
    arrays = (
        index.offsets,
        index.blank_points,
        index.blank_counts,
        index.dup_later,
        index.dup_first,
    )
    data = b"".join([header, tag, *(_little_endian(values) for values in arrays)])
    return data + _CRC.pack(zlib.crc32(data))


def decode_index(data: bytes) -> tuple[str, JsonlIndex]:
    """(etag, index) from `encode_index`'s bytes; ValueError for anything else."""
    if len(data) < _HEADER.size + _CRC.size:
        raise ValueError(f"{len(data)} bytes is too short for an index")
    magic, version, tag_len, stride, size, count, points, blanks, dups = _HEADER.unpack_from(data)
    if magic != _MAGIC:
        raise ValueError("not a baton task list index")
    if version != INDEX_VERSION:
        raise ValueError(f"index format version {version}, expected {INDEX_VERSION}")
    if _CRC.unpack_from(data, len(data) - _CRC.size)[0] != zlib.crc32(memoryview(data)[:-4]):
        raise ValueError("index checksum does not match")
    if len(data) != _HEADER.size + tag_len + 8 * (points + 2 * blanks + 2 * dups) + _CRC.size:
        raise ValueError("index length does not match its header")
    at = _HEADER.size + tag_len
    arrays = []
    for n in (points, blanks, blanks, dups, dups):
        arrays.append(_from_little_endian(data[at : at + 8 * n]))
        at += 8 * n
    index = JsonlIndex(size, count, stride, *arrays)
    offsets = index.offsets
    if stride < 1 or points != -(-count // stride) or points < 1 or offsets[-1] >= size:
        raise ValueError("index offsets do not fit its task count and size")
    if any(a >= b for a, b in pairwise(offsets)):
        raise ValueError("index offsets are not increasing")
    return data[_HEADER.size : _HEADER.size + tag_len].decode(), index


def _little_endian(values: array[int]) -> bytes:
    if sys.byteorder == "little":
        return values.tobytes()
    swapped = array("Q", values)
    swapped.byteswap()
    return swapped.tobytes()


def _from_little_endian(data: bytes) -> array[int]:
    values = array("Q")
    values.frombytes(data)
    if sys.byteorder != "little":
        values.byteswap()
    return values
