"""Task lists: a JSON array or JSONL of URL strings or objects with a `url`.

A bad entry does not sink the run: it becomes a task that carries its own
error and is reported as failed in the results. Only a list that cannot be read
as a list at all (or is empty) fails the run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from worker.exceptions import TaskListError

MAX_TASK_BYTES = 64 * 1024
"""A single task larger than this is refused (a URL is a few hundred bytes)."""


@dataclass(frozen=True)
class Task:
    index: int
    url: str | None
    id: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    """Why this entry is not a valid task; the processor never sees it."""

    def result_base(self) -> dict[str, Any]:
        base: dict[str, Any] = {"index": self.index, "url": self.url}
        if self.id is not None:
            base["id"] = self.id
        return base


def parse_task_list(body: bytes) -> list[Task]:
    """Parse a whole task list, deciding JSON array vs JSONL by the first byte."""
    stripped = body.lstrip()
    if stripped.startswith(b"\xef\xbb\xbf"):
        stripped = stripped[3:].lstrip()
    if not stripped:
        raise TaskListError("task list is empty: expected a JSON array or JSONL lines")
    if stripped.startswith(b"{"):
        _reject_whole_object(stripped)
    entries = _parse_array(stripped) if stripped.startswith(b"[") else _parse_jsonl(stripped)
    tasks = _mark_duplicate_ids([_to_task(i, raw) for i, raw in enumerate(entries)])
    if not tasks:
        raise TaskListError("task list has no tasks")
    return tasks


class _Unparsable:
    def __init__(self, reason: str) -> None:
        self.reason = reason


def _parse_array(body: bytes) -> list[Any]:
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise TaskListError(f"task list is not valid JSON: {exc}") from exc
    if not isinstance(value, list):
        raise TaskListError(f"task list must be a JSON array, got {type(value).__name__}")
    return value


def _parse_jsonl(body: bytes) -> list[Any]:
    entries: list[Any] = []
    for number, line in enumerate(body.splitlines(), start=1):
        if not line.strip():
            continue
        if len(line) > MAX_TASK_BYTES:
            entries.append(
                _Unparsable(f"line {number} is {len(line)} bytes (max {MAX_TASK_BYTES})")
            )
            continue
        try:
            entries.append(json.loads(line))
        except (ValueError, UnicodeDecodeError) as exc:
            entries.append(_Unparsable(f"line {number} is not valid JSON: {exc}"))
    if entries and all(isinstance(e, _Unparsable) for e in entries):
        first = entries[0]
        assert isinstance(first, _Unparsable)
        raise TaskListError(f"task list is neither a JSON array nor JSONL: {first.reason}")
    return entries


def _reject_whole_object(body: bytes) -> None:
    """A JSON object that is not a task (say {"urls": [...]}) is a mistake, not tasks."""
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return
    if isinstance(value, dict) and "url" not in value:
        raise TaskListError(
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
            reason = f"duplicate id {task.id!r}, first used by task {first_seen[task.id]}"
            out.append(Task(task.index, task.url, task.id, task.options, error=reason))
        else:
            first_seen[task.id] = task.index
            out.append(task)
    return out


def _kind(raw: Any) -> str:
    return "null" if raw is None else type(raw).__name__
