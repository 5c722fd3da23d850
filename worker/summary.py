"""What a run reports: failures tallied by kind (bounded), and the closing summary.

One tally serves the leg (as batches land) and the resume's rewind (recounting
what is kept), so both cap kinds and samples the same way.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from worker.checkpoint import Checkpoint, RunStatus
from worker.cost import cost_section, pricing_config
from worker.listing import total_listed
from worker.prices import architecture
from worker.store import RunRecord, RunStore
from worker.usage import Usage

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


RUN_STATUS_ORDER = (RunStatus.FAILED, RunStatus.SUPERSEDED, RunStatus.CANCELLED, RunStatus.DONE)
"""A run of several chains ends as its worst chain did."""


def run_status(chains: list[Checkpoint]) -> tuple[RunStatus, str | None]:
    """The run's status and reason, from its finished chains."""
    for status in RUN_STATUS_ORDER:
        ended = [cp for cp in chains if cp.status is status]
        if ended:
            return status, next((cp.reason for cp in ended if cp.reason), None)
    return RunStatus.RUNNING, None


def summarize(
    chains: list[Checkpoint], record: RunRecord, store: RunStore, *, architecture: str = ""
) -> dict[str, Any]:
    """The run's summary over all its chains (one checkpoint for a one-chain run)."""
    status, reason = run_status(chains)
    kinds: dict[str, int] = {}
    samples: list[dict[str, Any]] = []
    for cp in chains:
        for kind, count in cp.failure_kinds.items():
            if kind in kinds or len(kinds) < MAX_FAILURE_KINDS:
                kinds[kind] = kinds.get(kind, 0) + count
        samples.extend(cp.failure_samples[: MAX_FAILURE_SAMPLES - len(samples)])
    ok = sum(cp.ok for cp in chains)
    failed = sum(cp.failed for cp in chains)
    started = min((cp.started_ms for cp in chains if cp.started_ms), default=record.created_ms)
    finished = max(cp.finished_ms for cp in chains)
    leg_ms = sum(cp.leg_ms_total for cp in chains)
    task_ms = sum(cp.task_ms_total for cp in chains)
    listed = total_listed(chains)
    extra: dict[str, Any] = {}
    if record.crawl is not None:
        listed = sum(cp.total for cp in chains)
        extra["crawl"] = crawl_summary(chains, record)
    if record.listing is not None:
        lister = next((cp.listing for cp in chains if cp.listing is not None), None) or {}
        extra["listing"] = {
            "prefix": record.listing["prefix"],
            "suffix": record.listing.get("suffix"),
            "processor": record.listing.get("processor"),
            "listed": listed,
            "pages": lister.get("pages", 0),
            "segments": lister.get("segments", 0),
            "left_out_newer": lister.get("too_new", 0),
        }
    return {
        "run_id": record.run_id,
        "status": status,
        "reason": reason,
        "source": source_url(record),
        "etag": record.etag,
        "total": record.total if listed is None else listed,
        "start_position": record.start_position,
        "processed": ok + failed,
        "ok": ok,
        "failed": failed,
        "failure_kinds": kinds,
        "failure_samples": samples,
        "chains": record.chains,
        "ranges": len(chains),
        "legs": sum(cp.leg + 1 for cp in chains),
        "sweeps": sum(cp.sweeps for cp in chains),
        "started_ms": started,
        "finished_ms": finished,
        "duration_s": round(max(0, finished - started) / 1000, 3),
        "task_time_share": round(min(1.0, task_ms / leg_ms), 4) if leg_ms else None,
        "cost": run_cost(chains, record, architecture),
        "results": f"s3://{record.bucket}/{store.run_prefix(record.run_id)}results/",
        **extra,
    }


def crawl_summary(chains: list[Checkpoint], record: RunRecord, top: int = 20) -> dict[str, Any]:
    """Pages by depth, by status and by host (the top ones), over every chain."""
    depths: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    hosts: Counter[str] = Counter()
    for cp in chains:
        state = cp.frontier or {}
        depths.update(state.get("depths", {}))
        statuses.update(state.get("statuses", {}))
        hosts.update(state.get("hosts", {}))
    spec = record.crawl or {}
    return {
        "seeds": spec.get("seeds", []),
        "pages": sum(cp.total for cp in chains),
        "depth_reached": max(int((cp.frontier or {}).get("depth", 0)) for cp in chains),
        "max_depth": spec.get("max_depth"),
        "max_pages": spec.get("max_pages"),
        "by_depth": dict(sorted(depths.items(), key=lambda kv: int(kv[0]))),
        "by_status": dict(statuses.most_common()),
        "hosts": len(hosts) - ("(other)" in hosts),
        "top_hosts": dict(hosts.most_common(top)),
    }


def run_cost(chains: list[Checkpoint], record: RunRecord, arch: str = "") -> dict[str, Any]:
    """The cost section: every chain's usage, priced as the run was started.

    A run started before cost metering (its run.json pins no prices) is priced on
    `arch` (the BATON_ARCHITECTURE setting, else this machine's) at today's prices, and
    marked `"metered": "partial"`: its legs before the deploy recorded nothing."""
    total = Usage()
    for cp in chains:
        total += Usage.of(cp.usage)
    memory = total.mb_ms // total.billed_ms if total.billed_ms else 0
    pricing = record.config.get("pricing")
    if pricing is not None:
        return {**cost_section(total, pricing, memory), "metered": "full"}
    pricing = pricing_config(architecture(arch), {})
    return {**cost_section(total, pricing, memory), "metered": "partial"}


def source_url(record: RunRecord) -> str:
    """What the run works on: its task list, or the prefix it lists."""
    if record.listing is not None:
        return f"s3://{record.bucket}/{record.listing['prefix']}"
    return f"s3://{record.bucket}/{record.key}"


def task_time_share(cp: Checkpoint) -> float | None:
    """Share of leg time spent on tasks; at most 1 (a killed leg's time is never counted)."""
    if not cp.leg_ms_total:
        return None
    return round(min(1.0, cp.task_ms_total / cp.leg_ms_total), 4)
