"""Per-task work: the default fetch-and-extract processor, and plugging in others.

A processor is `fn(task, ctx) -> dict`. Whatever it returns is merged into the
task's result row; whatever it raises becomes that task's `error`, except
`OutOfTimeError`, which defers the task to the next leg. It never takes the
leg down.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from worker.clock import SYSTEM_CLOCK, Clock
from worker.config import BUILTIN_PROCESSORS, DEFAULT_PRESIGN_EXPIRES_S
from worker.exceptions import ConfigError, ObjectChangedError, OutOfTimeError
from worker.extract import extract, without_userinfo
from worker.fetch import Fetcher, FetchError, TryAgain
from worker.reader import CHUNK_BYTES, ObjectReader
from worker.s3 import ObjectStore
from worker.tasks import S3Object, Task

HTML_TYPES = ("text/html", "application/xhtml+xml")


@dataclass(frozen=True)
class TaskContext:
    fetcher: Fetcher
    deadline: float
    """`clock.monotonic()` by which the task must return."""
    clock: Clock = SYSTEM_CLOCK
    s3: ObjectStore | None = None
    """The run's S3 (prefix runs): what `open` reads through."""
    presign_s: int = DEFAULT_PRESIGN_EXPIRES_S
    """How long `presign`'s URLs live (the run's `presign_s`, else BATON_PRESIGN_S)."""
    signer: ObjectStore | None = None
    """Signs presigned URLs; the function's own credentials unless a signing role is set."""

    def time_left(self) -> float:
        return self.deadline - self.clock.monotonic()

    def open(self, obj: S3Object, *, chunk_bytes: int = CHUNK_BYTES) -> ObjectReader:
        """A streaming, ranged, retried reader of exactly the listed version of `obj`."""
        if self.s3 is None:
            raise ConfigError("this task context has no S3 client to read objects with")
        return ObjectReader(
            self.s3, obj, deadline=self.deadline, clock=self.clock, chunk_bytes=chunk_bytes
        )

    def presign(self, obj: S3Object, expires_s: int | None = None) -> str:
        """A GET URL of `obj` that works without credentials until it expires."""
        signer = self.signer or self.s3
        if signer is None:
            raise ConfigError("this task context has no S3 client to sign URLs with")
        return signer.presign(obj.bucket, obj.key, expires_s or self.presign_s)


Processor = Callable[[Task, TaskContext], dict[str, Any]]


def process(task: Task, ctx: TaskContext) -> dict[str, Any]:
    """The default processor: fetch the URL and extract the page.

    It returns only what it learnt; `run_one` lays it over `task.result_base()`,
    which holds every field of the row.
    """
    assert task.url is not None
    started = ctx.clock.monotonic()
    headers = task.options.get("headers")
    moved = task.options.get("moved_to")
    row: dict[str, Any] = {}
    try:
        page = ctx.fetcher.fetch(
            moved or task.url,
            ctx.deadline,
            headers if isinstance(headers, dict) else None,
            hops=int(task.options.get("hops", 0)),
            tries=int(task.options.get("tries", 0)),
            same_host=bool(task.options.get("same_host")),
        )
    except FetchError as exc:
        row["error"] = str(exc)
        row["attempts"] = exc.attempts
        row["elapsed_ms"] = round((ctx.clock.monotonic() - started) * 1000, 1)
        return row
    content_type = page.content_type.split(";", 1)[0].strip().lower()
    row.update(
        final_url=without_userinfo(page.final_url),
        status=page.status,
        content_type=content_type,
        bytes=len(page.body),
        attempts=page.attempts,
    )
    if page.status >= 400:
        row["error"] = f"HTTP {page.status}"
    elif content_type and content_type not in HTML_TYPES:
        row["error"] = f"not HTML: {content_type}"
    else:
        try:
            row.update(extract(page.body, page.final_url, page.content_type))
        except Exception as exc:  # a hostile page must cost one task, not the leg
            row["error"] = f"extraction failed: {type(exc).__name__}: {exc}"
    row["elapsed_ms"] = round((ctx.clock.monotonic() - started) * 1000, 1)
    return row


def load_processor(spec: str) -> Processor:
    """Import `module:function` (or a built-in's name: `presign`, `sha256`), failing at
    cold start with a clear message."""
    spec = BUILTIN_PROCESSORS.get(spec, spec)
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"processor {spec!r}: cannot import {module_name!r}: {exc}") from exc
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ConfigError(f"processor {spec!r}: {module_name} has no callable {attr!r}")
    processor: Processor = fn
    return processor


@dataclass(frozen=True)
class Outcome:
    """One task's result row, or why it must wait for the next leg."""

    row: dict[str, Any] | None
    deferred: OutOfTimeError | None
    elapsed_ms: float
    left_ms: float = 0.0
    """Time the task had left before the batch's deadline when it started."""
    again: TryAgain | None = None
    """A crawl's request to make again in its host's turn: a redirect to another host, or
    an answer to retry (row and deferral both None)."""


def run_tasks(
    tasks: list[Task], processor: Processor, ctx: TaskContext, pool: ThreadPoolExecutor
) -> list[Outcome]:
    """Run a batch concurrently; outcomes come back in task order, one per task."""
    return list(pool.map(lambda task: run_one(task, processor, ctx), tasks))


def run_one(task: Task, processor: Processor, ctx: TaskContext) -> Outcome:
    """One task: its row, or why it is deferred; never an exception."""
    started = ctx.clock.monotonic()
    left_ms = ctx.time_left() * 1000
    row = task.result_base()
    if task.error is not None:
        row["error"] = task.error
        return Outcome(row, None, 0.0, left_ms)
    try:
        produced = processor(task, ctx)
    except OutOfTimeError as exc:
        return Outcome(None, exc, _ms_since(ctx.clock, started), left_ms)
    except TryAgain as again:
        return Outcome(None, None, _ms_since(ctx.clock, started), left_ms, again)
    except ObjectChangedError as exc:  # listed, then rewritten or deleted: never read anew
        row["error"] = str(exc)
    except Exception as exc:
        row["error"] = f"processor raised {type(exc).__name__}: {exc}"
    else:
        if isinstance(produced, dict):
            row.update({k: v for k, v in produced.items() if k != "index"})
        else:
            row["error"] = f"processor returned {type(produced).__name__}, not a dict"
    elapsed_ms = _ms_since(ctx.clock, started)
    if row["elapsed_ms"] is None:
        row["elapsed_ms"] = round(elapsed_ms, 1)
    return Outcome(row, None, elapsed_ms)


def _ms_since(clock: Clock, started: float) -> float:
    return (clock.monotonic() - started) * 1000
