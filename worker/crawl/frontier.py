"""The frontier log's segments: what each task of a crawl is, as written to S3.

A segment is the new links one batch found, written once as JSONL (one compact
object a line: `u` URL, `d` depth, `f` the page it was found on or null, `k`
the kind when it is not a page), named by the log offset of its first entry.
Decoding is strict: a segment is run state baton wrote itself, so a line it
cannot read means the run's log is damaged, and the run fails saying where.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from worker.crawl.urls import host_of
from worker.exceptions import TaskListError

KINDS = frozenset({"page", "sitemap"})
"""A page task fetches a page and follows its links; a sitemap task's links are its URLs."""
_NAME = re.compile(r"(\d{10})\.jsonl")
_KEYS = frozenset({"u", "d", "f", "k"})


@dataclass(frozen=True)
class Entry:
    url: str
    depth: int
    found_on: str | None
    """None for seeds, and for what a sitemap seeded."""
    kind: str = "page"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"an entry's kind is one of {sorted(KINDS)}, got {self.kind!r}")


def encode_segment(entries: Sequence[Entry]) -> bytes:
    return b"".join(_line(e) for e in entries)


def _line(entry: Entry) -> bytes:
    row: dict[str, Any] = {"u": entry.url, "d": entry.depth, "f": entry.found_on}
    if entry.kind != "page":
        row["k"] = entry.kind
    return json.dumps(row, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def decode_segment(body: bytes, what: str = "frontier segment") -> list[Entry]:
    """Every entry of a segment; TaskListError names the first line it cannot read."""
    lines = body.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    return [_entry(line, number, what) for number, line in enumerate(lines, 1)]


def _entry(line: bytes, number: int, what: str) -> Entry:
    try:
        row = json.loads(line)
    except ValueError as exc:
        raise TaskListError(f"{what} line {number} is not JSON: {exc}") from None
    if not isinstance(row, dict) or not {"u", "d", "f"} <= row.keys() <= _KEYS:
        raise TaskListError(f"{what} line {number} is not an entry (u, d, f, k?): {_short(line)}")
    url, depth, found_on, kind = row["u"], row["d"], row["f"], row.get("k", "page")
    if (
        not isinstance(url, str)
        or not url
        or isinstance(depth, bool)
        or not isinstance(depth, int)
        or depth < 0
        or not (found_on is None or isinstance(found_on, str))
        or kind not in KINDS
    ):
        raise TaskListError(f"{what} line {number} has a field of the wrong kind: {_short(line)}")
    return Entry(url, depth, found_on, kind)


def _short(line: bytes, limit: int = 200) -> str:
    text = line.decode("utf-8", "replace")
    return text if len(text) <= limit else text[:limit] + "..."


def interleave_by_host(entries: Sequence[Entry]) -> list[Entry]:
    """Round-robin across hosts (in order of first appearance), stable within a host.

    A page links mostly to its own host; spread out, one host's run of links does
    not fill a batch that its per-host cap and delay would then hold back.
    """
    by_host: dict[str, list[Entry]] = {}
    for entry in entries:
        by_host.setdefault(host_of(entry.url), []).append(entry)
    queues = list(by_host.values())
    out: list[Entry] = []
    for turn in range(max(map(len, queues), default=0)):
        out.extend(queue[turn] for queue in queues if turn < len(queue))
    return out


def segment_name(first: int) -> str:
    """Ten digits, so names sort as offsets do (offsets stay below MAX_PAGES_LIMIT)."""
    if not 0 <= first < 10**10:
        raise ValueError(f"a segment's first offset is 0 to {10**10 - 1}, got {first}")
    return f"{first:010d}.jsonl"


def first_of(name: str) -> int:
    """The first offset of a segment by its name (not its full key)."""
    match = _NAME.fullmatch(name)
    if match is None:
        raise ValueError(f"{name!r} is not a frontier segment name (like 0000000000.jsonl)")
    return int(match.group(1))
