"""Prefix worlds: a run that lists every object under a prefix, in a fraction of the seeds.

A prefix world seeds objects under `data/` before the start (a few with multipart-looking
ETags, `"<md5>-<parts>"`, as S3 gives objects uploaded in parts), starts the run with the
manual payload `{"bucket", "prefix": {"prefix", "processor"}, "chains"}`, and writes
more objects under the prefix at random moments afterwards: the run must leave out every
one last modified after its cutoff (S3's `LastModified` has whole seconds; the sim's
listing floors it as S3 does), and list every one before it exactly once. Small pages and
segments make the lister work in many blocks, so the S3 layer's kills land between its
steps: after a segment PUT, after the CAS that records it as pending, between a queue
marker and the work chain's checkpoint, before the invoke.

What is drawn here comes from the world's own `prefix` stream, so the other worlds (and
the seeds pinned in test_sim.py) are as they were.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.sim.s3 import MemoryS3
from worker import objects
from worker.listing import PrefixSource
from worker.processor import Processor, TaskContext
from worker.store import RunStore
from worker.tasks import Task

PREFIX = "data/"
SHARE = 0.08
"""Of the worlds: about one in twelve (each costs about what a fanned-out world does)."""


@dataclass(frozen=True)
class PrefixPlan:
    objects: int
    late: int
    """Objects written under the prefix after the start, at random moments."""
    processor: str
    multipart: frozenset[int]
    """Indices of the seeded objects given a multipart-looking ETag."""
    page_size: int
    segment_pages: int

    @property
    def source(self) -> PrefixSource:
        return PrefixSource(PREFIX, processor=self.processor)

    def payload(self, bucket: str, chains: int) -> dict[str, Any]:
        return {"bucket": bucket, "prefix": self.source.as_dict(), "chains": chains}


def draw(rng: random.Random, tasks: int) -> PrefixPlan | None:
    """A prefix world's plan, or None for a task-list world."""
    if rng.random() >= SHARE:
        return None
    count = max(1, tasks)
    multipart = frozenset(i for i in range(count) if rng.random() < 0.2)
    return PrefixPlan(
        objects=count,
        late=rng.randint(1, 6),
        processor=rng.choice(("presign", "sha256")),
        multipart=multipart,
        page_size=rng.randint(2, 7),
        segment_pages=rng.randint(1, 3),
    )


def object_key(i: int) -> str:
    return f"{PREFIX}k{i:04d}.bin"


def late_key(rng: random.Random) -> str:
    """Between the seeded keys (so the lister may be before or past it when it lands)."""
    return f"{PREFIX}k{rng.randrange(10_000):04d}.late"


def body_of(key: str) -> bytes:
    return (key.encode() + b"\n") * (len(key) % 5 + 1)


def seed(s3: MemoryS3, bucket: str, plan: PrefixPlan) -> None:
    """The objects the run must list, written before it starts."""
    for i in range(plan.objects):
        key = object_key(i)
        s3.put_object(Bucket=bucket, Key=key, Body=body_of(key))
        if i in plan.multipart:
            stored = s3._objects[bucket][key]
            stored.etag = f'"{hashlib.md5(key.encode()).hexdigest()}-{i % 9 + 2}"'
    s3.put_object(Bucket=bucket, Key="other/k0000.bin", Body=b"outside the prefix")


def processors(on_start: Callable[[Task], None]) -> dict[str, Processor]:
    """The built-in processors, telling the oracle of every attempt as SimProcessor does."""

    def told(fn: Processor) -> Processor:
        def run(task: Task, ctx: TaskContext) -> dict[str, Any]:
            on_start(task)
            return fn(task, ctx)

        return run

    return {"presign": told(objects.presign), "sha256": told(objects.sha256)}


def expected_keys(s3: MemoryS3, bucket: str, cutoff_ms: int) -> set[str]:
    """The keys under the prefix last modified (in S3's whole seconds) by the cutoff."""
    return {
        key
        for key in s3.keys(bucket, PREFIX)
        if not key.endswith("/")
        and (s3._objects[bucket][key].modified_ms // 1000) * 1000 <= cutoff_ms
    }


def check_run(
    s3: MemoryS3, store: RunStore, run_id: str, plan: PrefixPlan
) -> list[tuple[str, str]]:
    """(category, message) for what a prefix run got wrong: a key twice, a key too new, a key
    missing from a finished run, a wrong digest, presigned.jsonl unlike the results."""
    record = store.load_run(run_id)
    listing = record.listing or {}
    cutoff = int(listing.get("cutoff_ms", 0))
    expected = expected_keys(s3, store.bucket, cutoff)
    rows = list(store.rows(run_id))
    out: list[tuple[str, str]] = []
    seen = Counter(str(row["id"]) for row in rows)
    twice = sorted(k for k, n in seen.items() if n > 1)
    if twice:
        out.append(("duplicated", f"{run_id}: keys in the results twice: {twice[:10]}"))
    too_new = sorted(seen.keys() - expected)
    if too_new:
        modified = {
            k: s3._objects[store.bucket][k].modified_ms
            for k in too_new[:3]
            if k in s3._objects[store.bucket]
        }
        out.append(
            ("prefix", f"{run_id}: keys past the cutoff {cutoff} in the results: {modified}")
        )
    summary = store.load_summary(run_id)
    if summary is not None and summary["status"] == "done":
        missing = sorted(expected - seen.keys())
        if missing:
            out.append(("lost", f"{run_id}: keys listed by the cutoff missing: {missing[:10]}"))
    for row in rows:
        error = str(row.get("error") or "")
        if error.startswith(("changed", "gone")):  # no listed object ever changes here
            out.append(("prefix", f"{run_id}: {row['id']} failed: {error}"))
            break
        if error:
            continue  # a task struck out by its legs' deaths (S3 kills inside its reads)
        if plan.processor == "sha256":
            body = s3.body(store.bucket, str(row["id"])) or b""
            if row.get("sha256") != hashlib.sha256(body).hexdigest():
                out.append(("prefix", f"{run_id}: {row['id']}'s sha256 is wrong"))
                break
        if row.get("etag") != s3._objects[store.bucket][str(row["id"])].etag:
            out.append(("prefix", f"{run_id}: {row['id']}'s etag is not the object's"))
            break
    if summary is not None:
        out += _presigned(s3, store, run_id, rows, plan)
    return out


def _presigned(
    s3: MemoryS3, store: RunStore, run_id: str, rows: list[dict[str, Any]], plan: PrefixPlan
) -> list[tuple[str, str]]:
    body = s3.body(store.bucket, store.presigned_key(run_id))
    if plan.processor != "presign":
        return []
    if body is None:
        return [("manifest", f"{run_id} finished without presigned.jsonl")]
    lines = [json.loads(line) for line in body.splitlines()]
    wanted = [
        (row["key"], row["presigned_url"], row["etag"])
        for row in sorted(rows, key=lambda r: int(r["index"]))
        if not row.get("error")
    ]
    if [(line["key"], line["url"], line["etag"]) for line in lines] != wanted:
        return [
            ("manifest", f"{run_id}: presigned.jsonl has {len(lines)} lines unlike the results")
        ]
    return []
