"""What a person watching a run sees: a line of progress, its chains, and the summary."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from worker.checkpoint import Checkpoint, RunStatus
from worker.clock import SYSTEM_CLOCK
from worker.store import RunRecord, RunStore
from worker.summary import crawl_summary, run_cost, run_status, source_url

EXIT_OK = 0
EXIT_CODES = {"failed_tasks": 3, "failed": 4, "cancelled": 5, "superseded": 6, "unfinished": 7}
"""What a followed run means for the shell; 1 and 2 are the CLI's own (AWS, usage)."""
BAR_WIDTH = 30
CHAIN_BAR_WIDTH = 20
CHAIN_LINES = 16
"""Up to this many chains, one bar each; past it, a histogram and the stragglers."""
DEFAULT_STALL_AFTER_MS = 120_000
"""The function's default `BATON_STALL_AFTER_MS`, for runs whose record predates it."""


@dataclass(frozen=True)
class RunView:
    """A run as its chains' checkpoints say it is (one checkpoint for a one-chain run)."""

    record: RunRecord
    chains: list[Checkpoint]
    at_ms: int

    @property
    def finished(self) -> bool:
        return all(cp.finished for cp in self.chains)

    @property
    def status(self) -> RunStatus:
        return run_status(self.chains)[0] if self.finished else RunStatus.RUNNING

    @property
    def reason(self) -> str | None:
        return run_status(self.chains)[1] if self.finished else None

    @property
    def ok(self) -> int:
        return sum(cp.ok for cp in self.chains)

    @property
    def failed(self) -> int:
        return sum(cp.failed for cp in self.chains)

    @property
    def done(self) -> int:
        return self.ok + self.failed

    @property
    def listing(self) -> dict[str, Any] | None:
        """A prefix run's lister state (keys listed so far, done or not); None for a list."""
        return next((cp.listing for cp in self.chains if cp.listing is not None), None)

    @property
    def listing_done(self) -> bool:
        return self.listing is None or bool(self.listing["done"])

    @property
    def total(self) -> int:
        """Tasks in the run: a prefix run's grows as its listing goes on."""
        listing = self.listing
        if self.record.crawl is not None:
            return sum(cp.total for cp in self.chains)
        return int(listing["listed"]) if listing is not None else self.record.total

    @property
    def todo(self) -> int:
        return self.total - self.record.start_position

    @property
    def legs(self) -> int:
        return sum(cp.leg + 1 for cp in self.chains)

    @property
    def level(self) -> int:
        return sum(cp.level for cp in self.chains if not cp.finished)

    @property
    def elapsed_s(self) -> float:
        started = min((cp.started_ms for cp in self.chains if cp.started_ms), default=0)
        start = started or self.record.created_ms
        end = max(cp.finished_ms for cp in self.chains) if self.finished else self.at_ms
        return max(0.0, (end - start) / 1000)

    @property
    def rate(self) -> float:
        return self.done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def stalled_chains(self) -> list[Checkpoint]:
        """Chains nothing will move on until the sweep (or a resume) does."""
        stall_after = int(self.record.config.get("stall_after_ms", DEFAULT_STALL_AFTER_MS))
        return [cp for cp in self.chains if cp.stalled(self.at_ms, stall_after)]

    @property
    def stalled(self) -> bool:
        live = [cp for cp in self.chains if not cp.finished]
        return bool(live) and len(self.stalled_chains) == len(live)

    @property
    def idle_s(self) -> float:
        moved = max(max(cp.heartbeat_ms, cp.handed_off_ms) for cp in self.chains)
        return max(0.0, (self.at_ms - moved) / 1000)

    @property
    def state(self) -> str:
        return "stalled" if self.stalled else str(self.status)

    @property
    def eta_s(self) -> float | None:
        if self.finished or self.stalled or self.rate <= 0 or not self.listing_done:
            return None  # a prefix run still listing has no known end
        if self.record.crawl is not None:
            return None  # nor has a crawl: its log grows with every page
        return (self.todo - self.done) / self.rate

    @property
    def position(self) -> int:
        """A progress mark that only moves forward: rows written so far."""
        return self.done

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.record.run_id,
            "status": str(self.status),
            "stalled": self.stalled,
            "reason": self.reason,
            "source": source_url(self.record),
            "done": self.done,
            "total": self.total,
            "listing_done": self.listing_done,
            "ok": self.ok,
            "failed": self.failed,
            "legs": self.legs,
            "chains": self.record.chains,
            "ranges": len(self.chains),
            "chains_finished": sum(cp.finished for cp in self.chains),
            "rate_per_s": round(self.rate, 2),
            "concurrency": self.level or None,
            "eta_s": None if self.eta_s is None else round(self.eta_s, 1),
            "elapsed_s": round(self.elapsed_s, 1),
            "sweeps": sum(cp.sweeps for cp in self.chains),
            "cost": self.cost,
            "per_chain": [_chain_dict(cp) for cp in self.chains],
            "crawl": None if self.record.crawl is None else crawl_summary(self.chains, self.record),
        }

    @property
    def cost(self) -> dict[str, Any]:
        """What the legs recorded so far, priced (the summary's cost section, so far)."""
        return run_cost(self.chains, self.record)


def view(record: RunRecord, chains: list[Checkpoint], at_ms: int | None = None) -> RunView:
    return RunView(record, chains, SYSTEM_CLOCK.now_ms() if at_ms is None else at_ms)


def load_view(store: RunStore, run_id: str) -> RunView:
    """The run's record and every chain's checkpoint, read now."""
    return view(store.load_run(run_id), store.load_chains(run_id))


def progress_line(v: RunView) -> str:
    share = v.done / v.todo if v.todo else (1.0 if v.listing_done else 0.0)
    bar = _bar(share, BAR_WIDTH)
    if v.stalled:
        tail = f"  no progress for {duration(v.idle_s)}: the sweep resumes it"
    else:
        tail = "" if v.eta_s is None else f"  ETA {duration(v.eta_s)}"
    level = f"  x{v.level}" if v.level and not v.finished else ""
    chains = ""
    if v.record.chains > 1 or v.listing is not None:
        chains = f" chains {sum(cp.finished for cp in v.chains)}/{len(v.chains)}"
    todo = f"{v.todo}" if v.listing_done else f"{v.todo} listed so far"
    return (
        f"{v.record.run_id}  {v.state:<10}{chains} legs {v.legs:<3} [{bar}] "
        f"{v.done}/{todo} {share:4.0%}  {v.rate:6.1f} tasks/s{level}  "
        f"failed {v.failed}{tail}"
    )


def chain_lines(v: RunView) -> list[str]:
    """A bar per chain (or, for many chains, a histogram of how far they are and the
    chains with the most left): where a straggler shows, and what stealing did."""
    crawl = [crawl_line(v)] if v.record.crawl is not None else []
    if len(v.chains) <= 1:
        return crawl
    if len(v.chains) <= CHAIN_LINES:
        return crawl + [_chain_line(cp) for cp in v.chains]
    work = [cp for cp in v.chains if cp.listing is None]
    buckets = Counter(min(9, int(_share(cp) * 10)) for cp in work)
    lines = [_chain_line(cp) for cp in v.chains if cp.listing is not None]
    lines += [
        f"  {bucket * 10:>3}-{bucket * 10 + 9:>3}%  {'#' * buckets[bucket]} {buckets[bucket]}"
        for bucket in range(10)
        if buckets[bucket]
    ]
    left = sorted(work, key=lambda cp: cp.range_end - cp.position, reverse=True)[:3]
    lines.extend(f"  most left: {_chain_line(cp).strip()}" for cp in left if not cp.finished)
    return crawl + lines


def crawl_line(v: RunView) -> str:
    """A crawl's own progress: its log grows, so the bar above is of pages found so far."""
    found = crawl_summary(v.chains, v.record)
    return (
        f"  crawl: {v.done} pages crawled, {v.total - v.done} in the frontier, depth "
        f"{found['depth_reached']}/{found['max_depth']}, {found['hosts']} hosts, "
        f"{found['pages']}/{found['max_pages']} pages found"
    )


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """A finished run for a person: outcome, failures by kind, legs and time, where results are."""
    kinds = Counter(summary.get("failure_kinds") or {})
    failures = ", ".join(f"{kind} x{count}" for kind, count in kinds.most_common(5))
    reason = f" ({summary['reason']})" if summary.get("reason") else ""
    chains = summary.get("chains", 1)
    across = f" across {chains} chains ({summary.get('ranges')} ranges)" if chains > 1 else ""
    lines = [
        f"{summary.get('status', '?')}{reason}: {summary.get('processed', 0)} tasks, "
        f"{summary.get('ok', 0)} ok, {summary.get('failed', 0)} failed"
        f"{' (' + failures + ')' if failures else ''}",
        f"legs {summary.get('legs')}{across}, {summary.get('duration_s')} s, "
        f"time on tasks {100 * (summary.get('task_time_share') or 0):.0f}% of leg time",
    ]
    if "blocked" in kinds:
        lines.append(
            f"{kinds['blocked']} tasks were refused by the address guard: allow private "
            "targets with BATON_ALLOW_NETS on the function (or --allow-loopback for baton local)"
        )
    crawl = summary.get("crawl")
    if crawl:
        depths = ", ".join(f"{d}: {n}" for d, n in crawl["by_depth"].items())
        lines.append(
            f"crawl: {crawl['pages']} pages from {crawl['hosts']} hosts, depth reached "
            f"{crawl['depth_reached']} of {crawl['max_depth']} (pages by depth {depths})"
        )
    if summary.get("cost"):
        lines.append(cost_line(summary["cost"]))
    lines.append(f"results: {summary.get('results')}")
    return lines


def cost_line(cost: dict[str, Any], so_far: bool = False) -> str:
    """Dollars on Lambda and S3, and what the same tasks would cost elsewhere."""
    lam, s3 = cost["lambda"], cost["s3_requests"]
    alt = cost["alternatives"]
    return (
        f"cost{' so far' if so_far else ''}: ${cost['usd_total']:.6f} on Lambda "
        f"{lam['architecture']} ({lam['requests']} requests, {lam['gb_s']} GB-s) and S3 "
        f"({sum(s3.values())} requests); the same tasks on Step Functions Distributed Map "
        f"${alt['step_functions_standard']['usd']:.6f} standard, "
        f"${alt['step_functions_express']['usd']:.6f} express; on Lambda durable functions "
        f"${alt['lambda_durable_functions']['usd']:.6f}"
        + (
            " (partly metered: legs run before the upgrade recorded nothing)"
            if cost.get("metered") == "partial"
            else ""
        )
    )


def exit_code(status: str, failed_tasks: int) -> int:
    """The one rule: 0 only for a run that is done with no failed task."""
    if status == "done":
        return EXIT_CODES["failed_tasks"] if failed_tasks else EXIT_OK
    return EXIT_CODES.get(status, EXIT_CODES["unfinished"])


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _share(cp: Checkpoint) -> float:
    size = cp.range_end - cp.start
    return 1.0 if size <= 0 else (cp.position - cp.start) / size


def _bar(share: float, width: int) -> str:
    filled = round(min(1.0, max(0.0, share)) * width)
    return "#" * filled + "." * (width - filled)


def _chain_line(cp: Checkpoint) -> str:
    if cp.listing is not None:
        state = "listed" if cp.listing["done"] else "listing"
        return (
            f"  {cp.chain:<10} {cp.status:<9} leg {cp.leg:<3} {state} {cp.listing['listed']} keys "
            f"in {cp.listing['segments']} segments ({cp.listing['pages']} pages)"
        )
    holes = f" +{len(cp.holes)} holes" if cp.holes else ""
    split = f" gave {len(cp.splits)}" if cp.splits else ""
    return (
        f"  {cp.chain:<10} {cp.status:<9} leg {cp.leg:<3} [{_bar(_share(cp), CHAIN_BAR_WIDTH)}] "
        f"{cp.position}/{cp.range_end}{holes}{split}"
    )


def _chain_dict(cp: Checkpoint) -> dict[str, Any]:
    return {
        "chain": cp.chain,
        "status": str(cp.status),
        "leg": cp.leg,
        "start": cp.start,
        "position": cp.position,
        "end": cp.range_end,
        "holes": len(cp.holes),
        "ok": cp.ok,
        "failed": cp.failed,
        "concurrency": cp.level or None,
        "splits": len(cp.splits),
    }
