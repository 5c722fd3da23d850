"""A crawl chain's frontier log as this container knows it: segments, the seen-set, growth.

The log is append-only and lives in S3 (`frontier/{chain}/{first}.jsonl`, with the
segment's URL hashes beside it in `seen/{chain}/{first}.bin`); a task's index is its
offset in the log plus the chain's base. The checkpoint's `end` says how much of it
counts: a segment at or past `end` was written by a leg that died before its CAS
and is written over by the next append there. So a container appends to its copy
only after the CAS that counted the segment, and a cold container rebuilds the
seen-set from the small hash objects, fetching a segment's URLs only when a task in
it is needed.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, overload

from worker.crawl.frontier import Entry, decode_segment, encode_segment
from worker.crawl.seen import SeenSet, url_hash
from worker.exceptions import TaskListError
from worker.store import RunStore
from worker.tasks import Task

DECODED_SEGMENTS = 8
"""Decoded segments kept at once: a leg reads its log forward, a few segments at a time."""


@dataclass
class _Segment:
    first: int
    count: int
    body: bytes | None = None
    """Encoded entries; None until a task in the segment is needed (a cold container)."""


@dataclass(frozen=True)
class OthersCount:
    """How many pages a crawl's other chains had at `at` (monotonic s), and when to count
    them again."""

    at: float
    pages: int
    mine: int
    """This chain's own pages then (the run's pace is both)."""
    again_at: float


@dataclass
class ChainLog:
    """One crawl chain's log and seen-set, cached per container across its legs."""

    run_id: str
    chain: str
    base: int
    seen: SeenSet = field(default_factory=SeenSet)
    segments: list[_Segment] = field(default_factory=list)
    _firsts: list[int] = field(default_factory=list)
    _decoded: dict[int, list[Entry]] = field(default_factory=dict)
    _released: int = 0
    """Segments before this one hold no URLs in memory (`release_below`)."""
    others: OthersCount | None = None
    """The run's other chains' pages when last counted: kept across legs, since counting
    reads every other chain's checkpoint."""

    @property
    def end(self) -> int:
        last = self.segments[-1] if self.segments else None
        return last.first + last.count if last else self.base

    def sync(self, store: RunStore, end: int, io: Executor) -> None:
        """Catch up with the log in S3 up to `end` (the checkpoint's), reading only the
        seen-set objects of segments this container has not seen."""
        if end < self.end:
            raise TaskListError(
                f"crawl chain {self.chain} of {self.run_id}: this container knows the log to "
                f"{self.end}, the checkpoint says {end}"
            )
        if end == self.end:
            return
        after = self.segments[-1].first if self.segments else -1
        firsts = [f for f in store.frontier_firsts(self.run_id, self.chain, after) if f < end]
        bodies = list(
            io.map(lambda f: store.read_bytes(store.seen_key(self.run_id, self.chain, f)), firsts)
        )
        for first, body in zip(firsts, bodies, strict=True):
            if first != self.end:
                raise TaskListError(
                    f"crawl chain {self.chain} of {self.run_id}: a segment at {first} "
                    f"where the log ends at {self.end}"
                )
            self.seen.extend_from(body)
            self._add(_Segment(first, len(body) // 8))
        if self.end != end:
            raise TaskListError(
                f"crawl chain {self.chain} of {self.run_id}: the log in S3 ends at {self.end}, "
                f"the checkpoint says {end}"
            )

    def release_below(self, index: int) -> None:
        """Forget the URLs of segments wholly below `index` (every task in them has its
        row): a long crawl holds only its frontier's URLs, and its seen-set, in memory."""
        while self._released < len(self.segments):
            segment = self.segments[self._released]
            if segment.first + segment.count > index:
                return
            segment.body = None
            self._decoded.pop(segment.first, None)
            self._released += 1

    def appended(self, first: int, entries: Sequence[Entry], body: bytes) -> None:
        """A segment this leg wrote and a CAS counted."""
        for entry in entries:
            self.seen.add(url_hash(entry.url))
        self._add(_Segment(first, len(entries), body))
        self._decoded[first] = list(entries)

    def entry(self, store: RunStore, index: int) -> Entry:
        number = bisect.bisect_right(self._firsts, index) - 1
        if number < 0 or index >= self.end:
            raise IndexError(f"task {index} is not in crawl chain {self.chain}'s log")
        segment = self.segments[number]
        return self._entries(store, segment)[index - segment.first]

    def _entries(self, store: RunStore, segment: _Segment) -> list[Entry]:
        found = self._decoded.get(segment.first)
        if found is not None:
            return found
        if segment.body is None:
            segment.body = store.read_bytes(
                store.frontier_key(self.run_id, self.chain, segment.first)
            )
        entries = decode_segment(segment.body)
        if len(entries) != segment.count:
            raise TaskListError(
                f"crawl segment {segment.first} of chain {self.chain} has {len(entries)} "
                f"entries, its seen-set {segment.count}"
            )
        if len(self._decoded) >= DECODED_SEGMENTS:
            self._decoded.pop(next(iter(self._decoded)))
        self._decoded[segment.first] = entries
        return entries

    def _add(self, segment: _Segment) -> None:
        if segment.count:
            self.segments.append(segment)
            self._firsts.append(segment.first)


def new_segment(entries: Sequence[Entry]) -> tuple[bytes, bytes]:
    """The segment's body and its seen-set object."""
    return encode_segment(entries), SeenSet.encode(url_hash(e.url) for e in entries)


class FrontierTasks:
    """The log as the leg's task list: global index in, a Task out (the crawl's user
    agent rides along in its headers)."""

    def __init__(self, log: ChainLog, store: RunStore, make: Callable[[int, Entry], Task]) -> None:
        self.log = log
        self.store = store
        self.make = make

    def __len__(self) -> int:
        return self.log.end

    @overload
    def __getitem__(self, item: int) -> Task: ...

    @overload
    def __getitem__(self, item: slice) -> list[Task]: ...

    def __getitem__(self, item: int | slice) -> Task | list[Task]:
        if isinstance(item, slice):
            start = max(self.log.base, item.start or 0)
            stop = self.log.end if item.stop is None else min(item.stop, self.log.end)
            return [self[i] for i in range(start, stop)]
        return self.make(item, self.log.entry(self.store, item))


def empty_frontier() -> dict[str, Any]:
    return {"seeded": False, "pauses": {}, "depth": 0, "depths": {}, "statuses": {}, "hosts": {}}
