"""Cutting a stream of bytes into task lines, exactly as `bytes.splitlines` cuts the whole.

Shared by the whole-list parser and the one-pass indexer, so a task has the same
line (and the same error) either way, whatever size the chunks of the stream are.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import chain

from worker.exceptions import TaskListError
from worker.tasks.model import MAX_TASK_BYTES

BOM = b"\xef\xbb\xbf"
"""A UTF-8 byte order mark; skipped when it opens the list (byte 0)."""


def task_lines(
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


def open_jsonl(chunks: Iterable[bytes]) -> tuple[int, Iterator[bytes]]:
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
