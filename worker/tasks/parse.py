"""Task lists: a JSON array or JSONL of URL strings or objects with a `url`.

A bad entry does not sink the run: it becomes a task that carries its own
error and is reported as failed in the results. Only a list that cannot be read
as a list at all (or is empty) fails the run. Every line, whole list or indexed
window, goes through `line_entry` and `to_task`.
"""

from __future__ import annotations

import json
from typing import Any

from worker.exceptions import TaskListError
from worker.tasks.lines import BOM, task_lines
from worker.tasks.model import MAX_TASK_BYTES, Task

_TOO_DEEP = "it nests arrays or objects too deeply to parse"
"""json.loads raises RecursionError (not ValueError) past the interpreter's recursion limit."""


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
    tasks = _mark_duplicate_ids([to_task(i, raw) for i, raw in enumerate(entries)])
    if not tasks:
        raise TaskListError("task list has no tasks")
    return tasks


class Unparsable:
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
        line_entry(number, line, length)
        for number, _, line, length in task_lines((body,), offset, 1)
    ]
    if entries and all(isinstance(e, Unparsable) for e in entries):
        first = entries[0]
        assert isinstance(first, Unparsable)
        raise TaskListError(f"task list is neither a JSON array nor JSONL: {first.reason}")
    return entries


def line_entry(number: int, line: bytes, length: int) -> Any:
    if length > MAX_TASK_BYTES:
        return Unparsable(f"line {number} is {length} bytes (max {MAX_TASK_BYTES})")
    try:
        return json.loads(line[:length])
    except (ValueError, UnicodeDecodeError) as exc:
        return Unparsable(f"line {number} is not valid JSON: {exc}")
    except RecursionError:
        return Unparsable(f"line {number} is not valid JSON: {_TOO_DEEP}")


def reject_spanning_value(content: bytes) -> None:
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
        raise whole_object_error(value)


def whole_object_error(value: dict[str, Any]) -> TaskListError:
    return TaskListError(
        f"task list is a JSON object with keys {sorted(value)[:5]}: "
        "expected a JSON array or JSONL lines"
    )


def to_task(index: int, raw: Any) -> Task:
    if isinstance(raw, Unparsable):
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
            out.append(duplicate(task, first_seen[task.id]))
        else:
            first_seen[task.id] = task.index
            out.append(task)
    return out


def duplicate(task: Task, first: int) -> Task:
    reason = f"duplicate id {task.id!r}, first used by task {first}"
    return Task(task.index, task.url, task.id, task.options, error=reason)


def _kind(raw: Any) -> str:
    return "null" if raw is None else type(raw).__name__
