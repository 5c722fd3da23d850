"""Prefix runs: every object under a prefix is a task, listed in legs and worked as it lands.

A prefix run's chain `0000` is its *lister*. Each of its legs lists pages
(`ListObjectsV2`, `StartAfter` = the last key listed, kept in its checkpoint)
and, for every block of up to `Settings.segment_pages` pages, in this order:

1. writes a **segment**, `{run}/listing/{first:010d}-{token}.jsonl`, one line per
   object kept (key, size, ETag, last-modified); `token` is the writing leg's
   owner (hashed), so a lister that lost its lease never overwrites the winner's;
2. CASes its checkpoint: the new `StartAfter`, the count listed, and the segment
   as *pending* (`first`, `count`, key, ETag);
3. creates the segment's **work chain** (`s{first:010d}`, range `[first,
   first+count)`) with `IfNoneMatch="*"` and invokes its leg 0 while fewer than
   `chains` work chains are live; otherwise it marks the chain *queued*
   (`{run}/queue/{chain}`) for a work chain that finishes, the lister's next
   block, or the sweep to start;
4. CASes the pending list empty.

A lister that dies after 1 lists the block again (the orphan segment is never
referenced); after 2, its next leg creates the pending chains (as
`ensure_split_ranges` does for steals); after 3, the chain exists, and the
sweep resumes it if its invoke was lost. The lister's chain is `done` only
when the listing is exhausted and every segment's chain exists, so the
completion check (done markers before chains) still sees every chain.

Pinned input: objects last modified after the run was created are left out
(S3 keeps whole seconds, so an object written in the very second the run
started may fall either way), and each task reads its object with
`IfMatch=<listed ETag>` (`worker.reader`), so a changed object fails its task.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, overload

from cache import ObjectCache
from worker.checkpoint import Checkpoint
from worker.config import BUILTIN_PROCESSORS, MAX_PRESIGN_S
from worker.exceptions import ConflictError, RunNotFoundError
from worker.s3 import Listed, ObjectStore
from worker.store import RunRecord, RunStore
from worker.tasks import S3Object, Task

log = logging.getLogger(__name__)

LISTER = "0000"
"""The lister's chain id."""
SPEC_SUFFIX = ".prefix.json"
"""An upload under tasks/ with this suffix is a prefix spec, not a task list."""
SPEC_FIELDS = {"prefix", "suffix", "processor", "presign_s"}
MAX_SPEC_BYTES = 64 * 1024
_KIND = "worker.listing"


@dataclass(frozen=True)
class PrefixSource:
    """What a prefix run lists and does: one schema for a spec and the manual payload."""

    prefix: str
    suffix: str | None = None
    processor: str | None = None
    """`presign` or `sha256`; None: BATON_PROCESSOR (or `presign` if it is the page fetcher)."""
    presign_s: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def digest(self) -> str:
        """Pins a manual prefix run's identity the way an ETag pins a list's."""
        text = json.dumps(self.as_dict(), sort_keys=True)
        return f'"prefix-{hashlib.sha256(text.encode()).hexdigest()[:24]}"'


def parse_prefix_source(value: Any, what: str) -> PrefixSource:
    """Validate a spec (or the payload's `prefix` object) strictly; ValueError says why."""
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be a JSON object, got {type(value).__name__}")
    unknown = value.keys() - SPEC_FIELDS
    if unknown:
        raise ValueError(
            f"{what} has unknown fields {sorted(unknown)} (allowed: {sorted(SPEC_FIELDS)})"
        )
    prefix = value.get("prefix")
    if not isinstance(prefix, str) or not prefix:
        raise ValueError(f"{what}: 'prefix' must be a non-empty string, got {prefix!r}")
    suffix = value.get("suffix")
    if suffix is not None and (not isinstance(suffix, str) or not suffix):
        raise ValueError(f"{what}: 'suffix' must be a non-empty string, got {suffix!r}")
    processor = value.get("processor")
    if processor is not None and processor not in BUILTIN_PROCESSORS:
        raise ValueError(
            f"{what}: 'processor' must be one of {sorted(BUILTIN_PROCESSORS)}, got {processor!r}"
        )
    presign_s = value.get("presign_s")
    if presign_s is not None and (
        isinstance(presign_s, bool)
        or not isinstance(presign_s, int)
        or not 1 <= presign_s <= MAX_PRESIGN_S
    ):
        raise ValueError(
            f"{what}: 'presign_s' must be a whole number of seconds from 1 to {MAX_PRESIGN_S} "
            f"(SigV4 presigned URLs live at most 7 days), got {presign_s!r}"
        )
    return PrefixSource(prefix, suffix, processor, presign_s)


def parse_spec(body: bytes, key: str) -> PrefixSource:
    """A `NAME.prefix.json` upload; ValueError says what is wrong with it."""
    if len(body) > MAX_SPEC_BYTES:
        raise ValueError(f"prefix spec {key} is {len(body)} bytes; at most {MAX_SPEC_BYTES}")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"prefix spec {key} is not JSON: {exc}") from None
    return parse_prefix_source(data, f"prefix spec {key}")


def refuse_loops(prefix: str, tasks_prefix: str, results_prefix: str) -> None:
    """A prefix run may not list baton's own keys: its run state, or the tasks it starts from."""
    for own, why in ((results_prefix, "its own run state"), (tasks_prefix, "the task uploads")):
        if prefix.startswith(own) or own.startswith(prefix):
            raise ValueError(
                f"prefix {prefix!r} overlaps {own!r}, where baton keeps {why}: "
                "list a prefix outside it (a run would otherwise read what runs write)"
            )


# segments
def segment_chain(first: int) -> str:
    """The work chain of the segment whose first task index is `first`."""
    return f"s{first:010d}"


def segment_key(store: RunStore, run_id: str, first: int, owner: str) -> str:
    token = hashlib.sha256(owner.encode()).hexdigest()[:12]
    return f"{store.run_prefix(run_id)}listing/{first:010d}-{token}.jsonl"


def encode_segment(objects: list[Listed]) -> bytes:
    return b"".join(
        json.dumps(
            {"key": o.key, "size": o.size, "etag": o.etag, "last_modified": o.last_modified},
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()
        + b"\n"
        for o in objects
    )


def decode_segment(body: bytes, bucket: str, first: int) -> list[Task]:
    tasks = []
    for offset, line in enumerate(body.splitlines()):
        entry = json.loads(line)
        obj = S3Object(bucket, entry["key"], entry["size"], entry["etag"], entry["last_modified"])
        tasks.append(Task(first + offset, obj.url, entry["key"], s3_object=obj))
    return tasks


@dataclass(frozen=True)
class SegmentTasks:
    """The tasks of one segment, indexed by global task index (a chain's range and every
    range stolen from it lie inside one segment)."""

    first: int
    tasks: list[Task]

    def __len__(self) -> int:
        return self.first + len(self.tasks)

    @overload
    def __getitem__(self, item: int) -> Task: ...

    @overload
    def __getitem__(self, item: slice) -> list[Task]: ...

    def __getitem__(self, item: int | slice) -> Task | list[Task]:
        if isinstance(item, slice):
            start = max(0, (item.start or 0) - self.first)
            stop = None if item.stop is None else max(0, item.stop - self.first)
            return self.tasks[start:stop]
        if not self.first <= item < len(self):
            raise IndexError(f"task {item} is not in the segment at {self.first}")
        return self.tasks[item - self.first]


def load_segment(
    cache: ObjectCache, s3: ObjectStore, bucket: str, segment: dict[str, Any]
) -> tuple[SegmentTasks, bool]:
    """A segment's tasks, cached per container (segments never change: each key is written
    once, by the leg whose token it carries)."""
    key, etag, first = segment["key"], segment["etag"], int(segment["first"])

    def build() -> tuple[SegmentTasks, int]:
        body = s3.get(bucket, key, if_match=etag).body
        return SegmentTasks(first, decode_segment(body, bucket, first)), len(body)

    return cache.load((bucket, key, _KIND), etag, revalidate=lambda: None, build=build)


# listing
@dataclass(frozen=True)
class Block:
    objects: list[Listed]
    after: str
    exhausted: bool
    pages: int
    too_new: int


def list_block(
    s3: ObjectStore,
    bucket: str,
    listing: dict[str, Any],
    after: str,
    *,
    page_size: int,
    max_pages: int,
    can_go: Callable[[], bool],
) -> Block:
    """Up to `max_pages` pages after `after`: the objects the run keeps, and where it got to.

    Kept: keys with the suffix (if any), not folder markers (keys ending in "/"),
    last modified no later than the run's creation.
    """
    suffix = listing.get("suffix")
    cutoff_ms = int(listing["cutoff_ms"])
    kept: list[Listed] = []
    pages = too_new = 0
    truncated = True
    while truncated and pages < max_pages and (pages == 0 or can_go()):
        page = s3.list_page(
            bucket, listing["prefix"], start_after=after or None, max_keys=page_size
        )
        pages += 1
        truncated = page.truncated and bool(page.objects)
        for obj in page.objects:
            after = obj.key
            if obj.key.endswith("/") or (suffix and not obj.key.endswith(suffix)):
                continue
            if modified_ms(obj.last_modified) > cutoff_ms:
                too_new += 1
                continue
            kept.append(obj)
    return Block(kept, after, not truncated, pages, too_new)


def modified_ms(iso: str) -> int:
    if not iso:
        return 0
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def lister_checkpoint(record: RunRecord, at_ms: int) -> Checkpoint:
    return Checkpoint(
        run_id=record.run_id,
        total=0,
        position=0,
        chain=LISTER,
        start=0,
        end=0,
        handed_off_ms=at_ms,
        heartbeat_ms=at_ms,
        listing=new_listing(),
    )


def new_listing() -> dict[str, Any]:
    return {"after": "", "listed": 0, "done": False, "pending": [], "segments": 0, "pages": 0}


def segment_checkpoint(record: RunRecord, segment: dict[str, Any], at_ms: int) -> Checkpoint:
    first, count = int(segment["first"]), int(segment["count"])
    return Checkpoint(
        run_id=record.run_id,
        total=first + count,
        position=first,
        chain=segment_chain(first),
        start=first,
        end=first + count,
        handed_off_ms=at_ms,
        heartbeat_ms=at_ms,
        segment=segment,
    )


# the queue of work chains waiting for a free slot
@dataclass(frozen=True)
class Chains:
    """Where a prefix run's work chains stand, from three listings (no checkpoint reads)."""

    live: int
    queued: list[str]


def chain_state(store: RunStore, run_id: str) -> Chains:
    """Work chains running or about to (not done, not queued), and the queued ones.

    A queue marker is deleted before its chain is started, so a count taken in
    between sees the chain as running: the count errs towards fewer invokes.
    """
    queued = store.queued_chains(run_id)
    done = store.done_chains(run_id)
    chains = set(store.chain_ids(run_id)) - {LISTER}
    return Chains(len(chains - done - set(queued)), queued)


def dequeue(store: RunStore, run_id: str, chains: list[str], at_ms: int) -> list[Checkpoint]:
    """Take `chains` off the queue; the ones that still need a leg invoked (never started).

    The CAS on `handed_off_ms` makes one of several dequeuers the one that invokes,
    and starts the chain's stall clock now.
    """
    started = []
    for chain in chains:
        store.unqueue(run_id, chain)
        try:
            current = store.load_checkpoint(run_id, chain)
        except RunNotFoundError:
            continue  # a placement that died before creating it; the lister's next leg does
        cp = current.checkpoint
        if not waiting(cp):
            continue
        try:
            store.swap(current, cp.evolve(handed_off_ms=at_ms, heartbeat_ms=at_ms))
        except ConflictError:
            continue
        started.append(cp)
    return started


def waiting(cp: Checkpoint) -> bool:
    """A chain created and never claimed: one a queue may hold."""
    return not cp.finished and cp.leg == 0 and cp.owner is None and not cp.started_ms


def total_listed(chains: list[Checkpoint]) -> int | None:
    """The task count of a prefix run (the lister's count so far), None for a list run."""
    for cp in chains:
        if cp.listing is not None:
            return int(cp.listing["listed"])
    return None
