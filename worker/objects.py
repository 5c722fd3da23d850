"""Built-in processors of objects, for prefix runs: `presign` and `sha256`.

Select one by name in a prefix spec (`"processor": "sha256"`), in the manual
payload's prefix object, or with `BATON_PROCESSOR=sha256`. Each gets the
object as `task.s3_object` and returns what is merged into the task's row.
"""

from __future__ import annotations

import hashlib
from typing import Any

from worker.processor import TaskContext
from worker.tasks import Task


def presign(task: Task, ctx: TaskContext) -> dict[str, Any]:
    """A presigned GET URL of the object (no read: the URL serves what is there when used;
    the row's `etag` lets the receiver check it is the version listed)."""
    obj = _object(task)
    return {
        "presigned_url": ctx.presign(obj),
        "expires_s": ctx.presign_s,
        "key": obj.key,
        "size": obj.size,
        "etag": obj.etag,
    }


def sha256(task: Task, ctx: TaskContext) -> dict[str, Any]:
    """The SHA-256 of the object's bytes, streamed through the pinned reader."""
    obj = _object(task)
    digest = hashlib.sha256()
    reader = ctx.open(obj)
    for piece in reader:
        digest.update(piece)
    return {
        "sha256": digest.hexdigest(),
        "bytes": reader.bytes_read,
        "key": obj.key,
        "size": obj.size,
        "etag": obj.etag,
        "requests": reader.requests,
    }


def _object(task: Task) -> Any:
    if task.s3_object is None:
        raise ValueError("this processor works on objects: start a prefix run")
    return task.s3_object


INLINE: frozenset[object] = frozenset({presign})
"""Processors the leg runs in its own thread as it starts them: CPU-only and a fraction of
a millisecond (signing a URL), where a pool hand-off would cost several times the work."""
