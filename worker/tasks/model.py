"""A task and its result row: what every way of reading a list produces."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MAX_TASK_BYTES = 64 * 1024
"""A single task larger than this is refused (a URL is a few hundred bytes)."""

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
class S3Object:
    """One object of a prefix run, as the listing saw it: the task's pinned input.

    A processor reads it through `ctx.open(obj)`, which asks for exactly `etag`,
    so an object rewritten since it was listed is refused, never read anew.
    """

    bucket: str
    key: str
    size: int
    etag: str
    last_modified: str
    """ISO 8601, UTC, as ListObjectsV2 gave it (one-second resolution)."""

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass(frozen=True)
class Task:
    index: int
    url: str | None
    id: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    """Why this entry is not a valid task; the processor never sees it."""
    s3_object: S3Object | None = None
    """The object this task is about (prefix runs); `url` is then its s3:// URL."""

    def result_base(self) -> dict[str, Any]:
        """A row with every field of RESULT_FIELDS, unknown ones null, so rows share one schema."""
        base: dict[str, Any] = dict.fromkeys(RESULT_FIELDS)
        base.update(index=self.index, url=self.url, id=self.id)
        return base
