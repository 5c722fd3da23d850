"""What a run reports: failures tallied by kind (bounded), and the closing summary.

One tally serves the leg (as batches land) and the resume's rewind (recounting
what is kept), so both cap kinds and samples the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from worker.checkpoint import Checkpoint
from worker.store import RunRecord, RunStore

MAX_FAILURE_SAMPLES = 20
MAX_FAILURE_KINDS = 50


def failure_kind(error: str) -> str:
    """Group errors for the summary: 'HTTP 404', 'blocked', 'ConnectionError', ..."""
    head = error.split(":", 1)[0].strip()
    return head[:60] or "error"


def tally_failures(
    kinds: dict[str, int], samples: list[dict[str, Any]], rows: Iterable[dict[str, Any]]
) -> int:
    """Add the failed rows to `kinds` and `samples` (in place, capped); return how many."""
    failed = 0
    for row in rows:
        error = row.get("error")
        if not error:
            continue
        failed += 1
        kind = failure_kind(str(error))
        if kind in kinds or len(kinds) < MAX_FAILURE_KINDS:
            kinds[kind] = kinds.get(kind, 0) + 1
        if len(samples) < MAX_FAILURE_SAMPLES:
            samples.append({"index": row["index"], "url": row.get("url"), "error": error})
    return failed


def summarize(cp: Checkpoint, record: RunRecord, store: RunStore) -> dict[str, Any]:
    duration_ms = max(0, cp.finished_ms - (cp.started_ms or record.created_ms))
    return {
        "run_id": cp.run_id,
        "status": cp.status,
        "reason": cp.reason,
        "source": f"s3://{record.bucket}/{record.key}",
        "etag": record.etag,
        "total": cp.total,
        "start_position": record.start_position,
        "processed": cp.ok + cp.failed,
        "ok": cp.ok,
        "failed": cp.failed,
        "failure_kinds": cp.failure_kinds,
        "failure_samples": cp.failure_samples,
        "legs": cp.leg + 1,
        "sweeps": cp.sweeps,
        "started_ms": cp.started_ms,
        "finished_ms": cp.finished_ms,
        "duration_s": round(duration_ms / 1000, 3),
        "task_time_share": task_time_share(cp),
        "results": f"s3://{record.bucket}/{store.run_prefix(cp.run_id)}results/",
    }


def task_time_share(cp: Checkpoint) -> float | None:
    """Share of leg time spent on tasks; at most 1 (a killed leg's time is never counted)."""
    if not cp.leg_ms_total:
        return None
    return round(min(1.0, cp.task_ms_total / cp.leg_ms_total), 4)
