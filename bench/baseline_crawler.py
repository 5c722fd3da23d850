"""The plain crawler baton's throughput is a ratio against: one process, no S3, no legs.

It runs the worker's own per-task code path (`worker.processor.run_tasks` with the
configured processor, the same `Fetcher`, policy and thread count as a container
builds from `Settings`) over the whole list as one batch, so no batch barrier, no
checkpoint and no hand-off ever stalls it, and serialises each row as baton does.
What baton loses against it is what legs, batches and S3 state cost.

    python -m bench.baseline_crawler --tasks urls.jsonl --concurrency 8 --allow-nets 127.0.0.0/8

prints one JSON object (pages, elapsed_s, pages_per_s, cpu_ms_per_page, ...).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from worker.config import Settings
from worker.fetch import Fetcher, FetchPolicy
from worker.netguard import NetPolicy
from worker.processor import TaskContext, load_processor, run_tasks
from worker.tasks import Task, parse_task_list

NO_DEADLINE_S = 24 * 3600.0
"""A plain crawler has no leg deadline; requests are still capped by the request timeout."""


@dataclass(frozen=True)
class CrawlResult:
    pages: int
    ok: int
    failed: int
    elapsed_s: float
    """First request to last row serialised (process start and list parsing excluded)."""
    pages_per_s: float
    task_ms_total: float
    """Sum of the rows' elapsed_ms: thread-time spent inside tasks."""
    fill: float
    """task_ms_total / (concurrency * elapsed): how busy the threads were."""
    cpu_s: float
    cpu_ms_per_page: float
    bytes: int
    peak_rss_mb: float
    concurrency: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def fetch_policy(settings: Settings) -> FetchPolicy:
    """The policy `worker.container.Container.create` builds from the same settings."""
    return FetchPolicy(
        attempts=settings.fetch_attempts,
        request_timeout_s=settings.request_timeout_s,
        max_bytes=settings.max_page_bytes,
        max_redirects=settings.max_redirects,
        user_agent=settings.user_agent,
    )


def crawl(tasks: list[Task], settings: Settings, out: Path | None = None) -> CrawlResult:
    """Work every task at `settings.concurrency`, writing JSONL rows to `out` if given."""
    concurrency = settings.concurrency
    fetcher = Fetcher(
        fetch_policy(settings), NetPolicy.from_cidrs(settings.allow_nets), pool_size=concurrency
    )
    processor = load_processor(settings.processor)
    try:
        with ThreadPoolExecutor(concurrency, thread_name_prefix="task") as pool:
            cpu_started = time.process_time()
            started = time.monotonic()
            rows = _rows(
                run_tasks(tasks, processor, TaskContext(fetcher, started + NO_DEADLINE_S), pool)
            )
            body = b"".join(
                json.dumps(row, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
                for row in rows
            )
            elapsed = time.monotonic() - started
            cpu = time.process_time() - cpu_started
    finally:
        fetcher.close()
    if out is not None:
        out.write_bytes(body)
    failed = sum(1 for row in rows if row.get("error"))
    task_ms = sum(float(row.get("elapsed_ms") or 0.0) for row in rows)
    return CrawlResult(
        pages=len(rows),
        ok=len(rows) - failed,
        failed=failed,
        elapsed_s=round(elapsed, 3),
        pages_per_s=round(len(rows) / elapsed, 2) if elapsed > 0 else 0.0,
        task_ms_total=round(task_ms, 1),
        fill=round(task_ms / (concurrency * elapsed * 1000), 4) if elapsed > 0 else 0.0,
        cpu_s=round(cpu, 3),
        cpu_ms_per_page=round(cpu * 1000 / len(rows), 3) if rows else 0.0,
        bytes=sum(int(row.get("bytes") or 0) for row in rows),
        peak_rss_mb=round(peak_rss_mb(), 1),
        concurrency=concurrency,
    )


def _rows(outcomes: list[Any]) -> list[dict[str, Any]]:
    """Result rows from run_tasks, whether it returns rows or `Outcome(row, deferred, ...)`."""
    rows: list[dict[str, Any]] = []
    for outcome in outcomes:
        row = outcome if isinstance(outcome, dict) else getattr(outcome, "row", None)
        if row is None:  # deferred: with no leg deadline this means the task ran out of time
            row = {"error": f"deferred: {getattr(outcome, 'deferred', None)}"}
        rows.append(row)
    return rows


def peak_rss_mb() -> float:
    """This process's high-water RSS (VmHWM): ru_maxrss would start at the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.baseline_crawler", description=__doc__)
    parser.add_argument("--tasks", type=Path, required=True, help="a JSON array or JSONL list")
    parser.add_argument("--concurrency", type=int, default=Settings.concurrency)
    parser.add_argument("--allow-nets", default="", help="CIDRs, comma-separated")
    parser.add_argument("--out", type=Path, help="write the result rows here (JSONL)")
    args = parser.parse_args(argv)
    settings = Settings(
        concurrency=args.concurrency,
        allow_nets=tuple(c.strip() for c in args.allow_nets.split(",") if c.strip()),
    )
    tasks = parse_task_list(args.tasks.read_bytes())
    result = crawl(tasks, settings, args.out)
    json.dump(result.as_dict(), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
