"""Task lists: a JSON array or JSONL of URL strings or objects with a `url`.

A bad entry does not sink the run: it becomes a task that carries its own
error and is reported as failed in the results. Only a list that cannot be read
as a list at all (or is empty) fails the run.

A list is read whole (`parse_task_list`) or, when it is too large for that, in
one streaming pass (`index_jsonl`) that keeps only a sparse index, from which
`JsonlIndex.window` parses any range later. Both run every line through the
same code (`_task_lines`, `_line_entry`, `_to_task`), so a task has the same
index and the same error either way.
"""

from __future__ import annotations

import json
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

from worker.exceptions import TaskListError

MAX_TASK_BYTES = 64 * 1024
"""A single task larger than this is refused (a URL is a few hundred bytes)."""
BOM = b"\xef\xbb\xbf"
"""A UTF-8 byte order mark; skipped when it opens the list (byte 0)."""
_TOO_DEEP = "it nests arrays or objects too deeply to parse"
"""json.loads raises RecursionError (not ValueError) past the interpreter's recursion limit."""
_ID_PARTS = 1024
"""Id hashes are split this many ways so finding repeats needs only a small dict at a time."""


RESULT_FIELDS = (
    "index",
    "url",
    "id",
    "final_url",
    "status",
    "content_type",
    "title",
    "description",
    "canonical",
    "h1",
    "links",
    "links_count",
    "text_length",
    "bytes",
    "attempts",
    "elapsed_ms",
    "error",
)
"""Every result row has these keys, in this order, each null when unknown."""


@dataclass(frozen=True)
class Task:
    index: int
    url: str | None
    id: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    """Why this entry is not a valid task; the processor never sees it."""

    def result_base(self) -> dict[str, Any]:
        """A row with every field of RESULT_FIELDS, unknown ones null, so rows share one schema."""
        base: dict[str, Any] = dict.fromkeys(RESULT_FIELDS)
        base.update(index=self.index, url=self.url, id=self.id)
        return base


def parse_task_list(body: bytes) -> list[Task]:
    """Parse a whole task list, deciding JSON array vs JSONL by the first byte."""
    skip = len(BOM) if body.startswith(BOM) else 0
    content = body[skip:] if skip else body
    stripped = content.lstrip()
    if not stripped:
        raise TaskListError("task list is empty: expected a JSON array or JSONL lines")
    if stripped.startswith(b"{"):
        _reject_whole_object(stripped)
    entries = _parse_array(stripped) if stripped.startswith(b"[") else _parse_jsonl(content, skip)
    tasks = _mark_duplicate_ids([_to_task(i, raw) for i, raw in enumerate(entries)])
    if not tasks:
        raise TaskListError("task list has no tasks")
    return tasks


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
        for number, _, line, length in _task_lines(chunks, self.offsets[point], first_number):
            if start <= index < stop:
                task = _to_task(index, _line_entry(number, line, length))
                tasks.append(self._unless_duplicate(task))
            index += 1
        return tasks

    def _unless_duplicate(self, task: Task) -> Task:
        at = bisect_left(self.dup_later, task.index)
        if at == len(self.dup_later) or self.dup_later[at] != task.index:
            return task
        return _duplicate(task, self.dup_first[at])


def index_jsonl(chunks: Iterable[bytes], size: int, stride: int) -> JsonlIndex:
    """Index a JSONL list in one pass, holding one chunk (and one line) at a time.

    The list-level checks of `parse_task_list` are made too, so a list fails here
    exactly when it would fail whole, with one addition: a first line that opens a
    JSON value it does not close (a pretty-printed object) fails the list, since
    its other lines would each parse as a task of their own.
    """
    skip, stream = _open_jsonl(chunks)
    offsets: array[int] = array("Q")
    blank_points: array[int] = array("Q")
    blank_counts: array[int] = array("Q")
    ids = _IdHashes()
    count = 0
    first: Any = None
    parsed = False
    for number, offset, line, length in _task_lines(stream, skip, 1):
        if count % stride == 0:
            offsets.append(offset)
            blanks = number - 1 - count
            if blanks != (blank_counts[-1] if blank_counts else 0):
                blank_points.append(count // stride)
                blank_counts.append(blanks)
        if not parsed or b'"id"' in line or b"\\u" in line:
            # Only lines that may hold an id (a key can hide behind \u escapes) are parsed.
            entry = _line_entry(number, line, length)
            if count == 0:
                first = entry
                _reject_spanning_value(line[:length] if length <= MAX_TASK_BYTES else b"")
            parsed = parsed or not isinstance(entry, _Unparsable)
            task = _to_task(count, entry)
            if task.id is not None and task.error is None:
                ids.add(task.id, count)
        count += 1
    if count == 0:
        raise TaskListError("task list is empty: expected a JSON array or JSONL lines")
    if isinstance(first, _Unparsable) and not parsed:
        raise TaskListError(f"task list is neither a JSON array nor JSONL: {first.reason}")
    if count == 1 and isinstance(first, dict) and "url" not in first:
        raise _whole_object_error(first)
    later, earlier = ids.repeats()
    return JsonlIndex(size, count, stride, offsets, blank_points, blank_counts, later, earlier)


class _Unparsable:
    def __init__(self, reason: str) -> None:
        self.reason = reason


def _parse_array(body: bytes) -> list[Any]:
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise TaskListError(f"task list is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise TaskListError(f"task list is not valid JSON: {_TOO_DEEP}") from exc
    if not isinstance(value, list):
        raise TaskListError(f"task list must be a JSON array, got {type(value).__name__}")
    return value


def _parse_jsonl(body: bytes, offset: int) -> list[Any]:
    entries = [
        _line_entry(number, line, length)
        for number, _, line, length in _task_lines((body,), offset, 1)
    ]
    if entries and all(isinstance(e, _Unparsable) for e in entries):
        first = entries[0]
        assert isinstance(first, _Unparsable)
        raise TaskListError(f"task list is neither a JSON array nor JSONL: {first.reason}")
    return entries


def _task_lines(
    chunks: Iterable[bytes], offset: int, number: int
) -> Iterator[tuple[int, int, bytes, int]]:
    """Yield (line number, byte offset, line, length) for every non-blank line.

    `line` may still hold (part of) its line break, `length` excludes it; a line
    longer than MAX_TASK_BYTES comes with its bytes dropped (`b""`), so a hostile
    list cannot make a window or a pass hold more than a chunk and one line.
    """
    lines = _Lines(offset, number)
    for chunk in chunks:
        yield from lines.feed(chunk)
    yield from lines.finish()


class _Lines:
    """Cuts a stream into lines exactly where `bytes.splitlines` cuts the whole.

    That is at LF, CRLF and a lone CR, wherever the chunks happen to end.
    """

    def __init__(self, offset: int, number: int) -> None:
        self.pos = offset
        """Offset of the next byte not yet part of a line or of the tail."""
        self.number = number
        self.tail = b""
        """The unfinished last line, kept while it is short enough to be a task."""
        self.tail_at = offset
        self.tail_len = 0
        self.tail_blank = True
        self.after_cr = False
        """The last chunk ended in CR: an LF opening the next one belongs to it."""

    def feed(self, chunk: bytes) -> list[tuple[int, int, bytes, int]]:
        if self.after_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]
            self.pos += 1
        self.after_cr = False
        out: list[tuple[int, int, bytes, int]] = []
        if self.tail_len > MAX_TASK_BYTES:
            chunk = self._extend_long_line(chunk, out)
        elif self.tail:
            chunk, self.pos, self.tail, self.tail_len = self.tail + chunk, self.tail_at, b"", 0
        if chunk:
            self._split(chunk, out)
        return out

    def finish(self) -> list[tuple[int, int, bytes, int]]:
        if self.tail_len and not self.tail_blank:
            return [(self.number, self.tail_at, self.tail, self.tail_len)]
        return []

    def _split(self, chunk: bytes, out: list[tuple[int, int, bytes, int]]) -> None:
        parts = chunk.splitlines(keepends=True)
        last = parts[-1]
        unfinished = not last.endswith((b"\n", b"\r"))
        if unfinished:
            parts.pop()
        pos, number = self.pos, self.number
        for part in parts:
            if not part.isspace():
                out.append((number, pos, part, len(part) - (2 if part.endswith(b"\r\n") else 1)))
            number += 1
            pos += len(part)
        self.pos, self.number = pos, number
        if not unfinished:
            self.after_cr = last.endswith(b"\r")
            return
        self.tail_at, self.tail_len, self.tail_blank = pos, len(last), last.isspace()
        if self.tail_len <= MAX_TASK_BYTES:
            self.tail = last
        else:
            self.pos += self.tail_len

    def _extend_long_line(self, chunk: bytes, out: list[tuple[int, int, bytes, int]]) -> bytes:
        """Count the chunk's share of a line too long to keep; return what follows it."""
        ends = [at for at in (chunk.find(b"\n"), chunk.find(b"\r")) if at >= 0]
        end = min(ends) if ends else len(chunk)
        piece = chunk[:end]
        self.tail_len += end
        self.tail_blank = self.tail_blank and (not piece or piece.isspace())
        if not ends:
            self.pos += end
            return b""
        if not self.tail_blank:
            out.append((self.number, self.tail_at, b"", self.tail_len))
        self.number += 1
        taken = end + (2 if chunk.startswith(b"\r\n", end) else 1)
        self.after_cr = taken == len(chunk) and chunk.endswith(b"\r")
        self.pos += taken
        self.tail_len, self.tail_blank = 0, True
        return chunk[taken:]


def _line_entry(number: int, line: bytes, length: int) -> Any:
    if length > MAX_TASK_BYTES:
        return _Unparsable(f"line {number} is {length} bytes (max {MAX_TASK_BYTES})")
    try:
        return json.loads(line[:length])
    except (ValueError, UnicodeDecodeError) as exc:
        return _Unparsable(f"line {number} is not valid JSON: {exc}")
    except RecursionError:
        return _Unparsable(f"line {number} is not valid JSON: {_TOO_DEEP}")


def _open_jsonl(chunks: Iterable[bytes]) -> tuple[int, Iterator[bytes]]:
    """Skip a leading BOM; the stream refuses a JSON array, which has no lines to index."""
    rest = iter(chunks)
    head = b""
    for chunk in rest:
        head += chunk
        if len(head) >= len(BOM):
            break
    skip = len(BOM) if head.startswith(BOM) else 0
    return skip, _refuse_array(chain((head[skip:],), rest))


def _refuse_array(chunks: Iterator[bytes]) -> Iterator[bytes]:
    sniffing = True
    for chunk in chunks:
        if sniffing and (start := chunk.lstrip()):
            sniffing = False
            if start.startswith(b"["):
                raise TaskListError(
                    "task list is a JSON array too large to read whole: write it as JSONL, "
                    "one task per line (jq -c '.[]' list.json > list.jsonl), "
                    "or raise BATON_INDEX_THRESHOLD_BYTES"
                )
        yield chunk


def _reject_spanning_value(content: bytes) -> None:
    """A first line that opens an object it does not close is a pretty-printed document."""
    if not content.lstrip().startswith(b"{"):
        return
    try:
        json.loads(content)
    except json.JSONDecodeError as exc:
        if exc.pos >= len(content.rstrip()):
            raise TaskListError(
                "task list starts with a JSON object spread over several lines: "
                "JSONL needs one task per line"
            ) from exc
    except (ValueError, UnicodeDecodeError, RecursionError):
        return


def _reject_whole_object(body: bytes) -> None:
    """A JSON object that is not a task (say {"urls": [...]}) is a mistake, not tasks."""
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return
    if isinstance(value, dict) and "url" not in value:
        raise _whole_object_error(value)


def _whole_object_error(value: dict[str, Any]) -> TaskListError:
    return TaskListError(
        f"task list is a JSON object with keys {sorted(value)[:5]}: "
        "expected a JSON array or JSONL lines"
    )


def _to_task(index: int, raw: Any) -> Task:
    if isinstance(raw, _Unparsable):
        return Task(index, None, error=raw.reason)
    if isinstance(raw, str):
        return _with_url(index, raw, None, {})
    if isinstance(raw, dict):
        url = raw.get("url")
        if not isinstance(url, str):
            return Task(index, None, error="task object needs a string 'url'")
        task_id = raw.get("id")
        if task_id is not None and not isinstance(task_id, str | int):
            return Task(index, url, error="task 'id' must be a string or an integer")
        options = {k: v for k, v in raw.items() if k not in ("url", "id")}
        return _with_url(index, url, None if task_id is None else str(task_id), options)
    return Task(index, None, error=f"task must be a URL string or an object, got {_kind(raw)}")


def _with_url(index: int, url: str, task_id: str | None, options: dict[str, Any]) -> Task:
    url = url.strip()
    if not url:
        return Task(index, url, task_id, options, error="task URL is empty")
    if len(url) > 8192:
        return Task(index, url[:200], task_id, options, error="task URL is longer than 8192 chars")
    return Task(index, url, task_id, options)


def _mark_duplicate_ids(tasks: list[Task]) -> list[Task]:
    first_seen: dict[str, int] = {}
    out: list[Task] = []
    for task in tasks:
        if task.id is None or task.error is not None:
            out.append(task)
        elif task.id in first_seen:
            out.append(_duplicate(task, first_seen[task.id]))
        else:
            first_seen[task.id] = task.index
            out.append(task)
    return out


def _duplicate(task: Task, first: int) -> Task:
    reason = f"duplicate id {task.id!r}, first used by task {first}"
    return Task(task.index, task.url, task.id, task.options, error=reason)


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


def _kind(raw: Any) -> str:
    return "null" if raw is None else type(raw).__name__
