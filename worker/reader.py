"""Reading one object of a prefix run: streamed in ranged GETs, pinned to its ETag, retried.

A processor gets a reader from its context (`ctx.open(task.s3_object)`) and
iterates it, or calls `read(n)`, and never holds more than a piece of the
object: each range of `chunk_bytes` is one `GetObject(Range=..., IfMatch=etag)`
read in pieces, so an object far larger than the function's memory is fine.

Pinned: every GET asks for the listed ETag, so an object rewritten after the
listing raises `ObjectChangedError` (the task's row says so), never new bytes.
Retried: a GET that fails transiently, or a stream that breaks mid-range, is
tried again from the byte reached, with the one read policy below, bounded by
attempts and by the task's deadline; out of time, it raises `OutOfTimeError`,
which defers the task to the next leg.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from worker.clock import SYSTEM_CLOCK, Clock
from worker.exceptions import (
    InputChangedError,
    ObjectChangedError,
    OutOfTimeError,
    TransientError,
)
from worker.s3 import ObjectNotFoundError, ObjectStore, chunks
from worker.tasks import S3Object

CHUNK_BYTES = 8 * 1024 * 1024
"""One ranged GET: large enough that request overhead is small, small enough to retry."""
PIECE_BYTES = 256 * 1024
"""What one iteration yields: the most a reader holds at once, beside the caller's own."""
READ_ATTEMPTS = 4
"""Tries per range (a broken stream resumes where it broke)."""
READ_BACKOFF_S = 0.2


class ObjectReader:
    """A pinned, streaming view of one object; iterate it for pieces, or `read(n)`."""

    def __init__(
        self,
        s3: ObjectStore,
        obj: S3Object,
        *,
        deadline: float,
        clock: Clock = SYSTEM_CLOCK,
        chunk_bytes: int = CHUNK_BYTES,
        piece_bytes: int = PIECE_BYTES,
        attempts: int = READ_ATTEMPTS,
    ) -> None:
        self.s3 = s3
        self.obj = obj
        self.deadline = deadline
        self.clock = clock
        self.chunk_bytes = max(1, chunk_bytes)
        self.piece_bytes = max(1, min(piece_bytes, self.chunk_bytes))
        self.attempts = attempts
        self.bytes_read = 0
        self.requests = 0
        self._pieces: Iterator[bytes] | None = None
        self._left = b""

    def __iter__(self) -> Iterator[bytes]:
        """The object's bytes in order, a piece at a time, each range one pinned GET."""
        what = self.obj.url
        if self.obj.size == 0:
            body, _ = self._retrying(self._open, None)
            for _ in chunks(body, what, self.piece_bytes):
                pass  # a zero-byte object: the GET only proves it is still that version
            return
        offset = 0
        broken = 0
        while offset < self.obj.size:
            self._check_time()
            last = min(self.obj.size, offset + self.chunk_bytes) - 1
            body, _ = self._retrying(self._open, f"bytes={offset}-{last}")
            try:
                for piece in chunks(body, what, self.piece_bytes):
                    offset += len(piece)
                    self.bytes_read += len(piece)
                    yield piece
                    self._check_time()
            except TransientError:
                broken += 1
                if broken >= self.attempts:
                    raise
                continue  # the next GET resumes at `offset`

    def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes (all that is left when negative), like a file's `read`."""
        if self._pieces is None:
            self._pieces = iter(self)
        out = bytearray(self._left)
        self._left = b""
        while size < 0 or len(out) < size:
            piece = next(self._pieces, None)
            if piece is None:
                break
            out += piece
        if size >= 0 and len(out) > size:
            self._left = bytes(out[size:])
            del out[size:]
        return bytes(out)

    def _open(self, byte_range: str | None) -> tuple[BinaryIO, int]:
        self.requests += 1
        try:
            return self.s3.open(
                self.obj.bucket, self.obj.key, if_match=self.obj.etag, byte_range=byte_range
            )
        except ObjectNotFoundError as exc:
            raise ObjectChangedError(
                f"gone: {self.obj.url} was deleted after it was listed"
            ) from exc
        except InputChangedError as exc:
            raise ObjectChangedError(
                f"changed: {self.obj.url} is no longer the version listed "
                f"(ETag {self.obj.etag}); it was not read"
            ) from exc

    def _retrying(
        self, fn: Callable[[str | None], tuple[BinaryIO, int]], byte_range: str | None
    ) -> tuple[BinaryIO, int]:
        backoff = wait_exponential_jitter(multiplier=READ_BACKOFF_S, max=2.0, jitter=READ_BACKOFF_S)

        def wait(state: RetryCallState) -> float:
            delay: float = backoff(state)
            if self.clock.monotonic() + delay >= self.deadline:
                exc = state.outcome.exception() if state.outcome else None
                raise OutOfTimeError(
                    f"reading {self.obj.url}: {exc} (no time left to retry)", tried=True
                )
            return delay

        retrying = Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait,
            retry=retry_if_exception_type(TransientError),
            sleep=self.clock.sleep,
            reraise=True,
        )
        result: Any = retrying(fn, byte_range)
        return result  # type: ignore[no-any-return]

    def _check_time(self) -> None:
        if self.clock.monotonic() >= self.deadline:
            raise OutOfTimeError(
                f"reading {self.obj.url}: out of time after {self.bytes_read} bytes",
                tried=self.bytes_read > 0,
            )
