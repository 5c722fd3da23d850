"""Throughput: pages/s of a many-leg baton run against a plain crawler, side by side.

Both fetch the same pages from the same loopback site (`devstack.site`, realistic
page sizes and lognormal latency), at the same concurrency, one after the other in
the same process tree (crawler, baton, crawler again; the crawler's rate is the mean
of its two rounds, so a steady drift in the machine's speed cancels out):

- the **baseline** (`bench.baseline_crawler`) in a subprocess of its own: one pool
  over the whole list, no S3, no legs;
- **baton** on the embedded stack: the list is uploaded under `tasks/`, the S3
  notification starts leg 0, and the chain runs with a short invocation timeout so
  it has many legs, writing its results and checkpoints to the S3 emulator.

The site's latency is seeded by (path, hit number) and its hit counts are reset
between the two, so both see the same delays. Each side's rate is pages divided by
its working time: first request to last row for the baseline, the run's
`started_ms` to `finished_ms` (first claim to final checkpoint) for baton. The
end-to-end rate (process start, or the upload, to the end) is reported beside it.

The baton run's log lines (legs, batches, REPORT lines) are kept in a `BatonRun`,
which `bench.budget` and `bench.hop_overhead` read too.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

from devstack.lambda_runtime import FunctionConfig, log_record
from devstack.s3server import S3Call
from devstack.site import LatencyProfile, Site, SiteConfig
from devstack.stack import EmbeddedStack
from worker.checkpoint import TERMINAL
from worker.exceptions import RunNotFoundError
from worker.store import RunStore

REPO_ROOT = Path(__file__).resolve().parents[1]
TASKS_KEY = "tasks/bench-throughput.jsonl"
FUNCTION = "baton-worker"

_BATCH = re.compile(r"^run \S+ leg (\d+): batch (\d+)-(\d+) done in (\d+) ms")
_REPORT = re.compile(
    r"REPORT RequestId: (\S+)\tDuration: ([\d.]+) ms\t.*?Max Memory Used: (\d+) MB"
    r"(?:\tInit Duration: ([\d.]+) ms)?"
)


@dataclass(frozen=True)
class ThroughputConfig:
    pages: int = 5000
    concurrency: int = 8
    """BATON_CONCURRENCY and the baseline's thread count: pinned, so both sides run the
    same threads (baton's default is the autoscaler; `bench.versus` runs that)."""
    timeout_s: float = 10.0
    """The function's timeout: short, so the run has many legs."""
    memory_mb: int = 1024
    margin_ms: int | None = None
    """BATON_MARGIN_MS; None keeps the production default (2,000 ms)."""
    latency_median_ms: float = 75.0
    latency_sigma: float = 0.5
    latency_max_ms: float = 1000.0
    page_bytes: tuple[int, int] = (20_000, 80_000)
    seed: int = 6
    baseline_rounds: int = 2
    """The crawler runs before baton and again after it; its rate is the mean."""
    max_wait_s: float = 600.0

    def site(self) -> SiteConfig:
        return SiteConfig(
            pages=self.pages,
            seed=self.seed,
            page_bytes=self.page_bytes,
            latency=LatencyProfile(
                median_s=self.latency_median_ms / 1000,
                sigma=self.latency_sigma,
                max_s=self.latency_max_ms / 1000,
            ),
        )

    def function(self, bucket: str) -> FunctionConfig:
        environment = {
            "BATON_BUCKET": bucket,
            "BATON_CONCURRENCY": str(self.concurrency),
            "BATON_ALLOW_NETS": "127.0.0.0/8",
            "BATON_LOG_FORMAT": "json",
        }
        if self.margin_ms is not None:
            environment["BATON_MARGIN_MS"] = str(self.margin_ms)
        return FunctionConfig(
            name=FUNCTION,
            timeout_s=self.timeout_s,
            memory_mb=self.memory_mb,
            environment=environment,
            max_retries=2,
            retry_delay_s=0.5,
            recursive_loop="Allow",
        )


@dataclass(frozen=True)
class Batch:
    request_id: str
    container: str
    leg: int
    start: int
    end: int
    ms: float
    """`batch_ms`: wall time since the leg's previous commit line (or since the leg's
    start, for its first), so a leg's commit intervals tile it."""
    logged_s: float
    """Epoch seconds of the log line: after the results PUT and the checkpoint CAS."""
    concurrency: int | None = None
    """The autoscaler's level at the commit, if the line says (`"concurrency"`)."""
    failed: int | None = None
    cpu_use: float | None = None
    """The autoscaler's last CPU reading (of the share), if the line says (`"cpu_use"`)."""
    tasks: int | None = None
    """Rows the commit wrote (its range's and any holes'), if the line says (`"tasks"`)."""


@dataclass
class BatonRun:
    """One baton run on the embedded stack, and everything its containers logged."""

    config: dict[str, Any]
    run_id: str
    status: str
    summary: dict[str, Any]
    upload_s: float
    started_s: float
    finished_s: float
    legs: list[dict[str, Any]]
    batches: list[Batch]
    reports: dict[str, dict[str, Any]]
    records: list[dict[str, Any]]
    stats: dict[str, Any]
    container_cpu_s: float
    host_cpu_s: float
    """CPU of this process meanwhile: the S3 emulator, the Lambda API and the site."""
    rows: int
    duplicate_rows: int
    missing_rows: int
    row_task_ms: dict[int, float] = field(default_factory=dict)
    """Per results object (by its first index): the sum of its rows' elapsed_ms."""
    task_latencies_ms: list[float] = field(default_factory=list)
    """Every row's elapsed_ms, in task order (what `bench.budget` replays)."""
    s3_requests: dict[str, int] = field(default_factory=dict)
    """Requests the worker made to S3 during the run, by billing tier."""
    log_bytes: int = 0
    """Size of the containers' log (what CloudWatch Logs would ingest)."""
    container_peak_mb: float = 0.0
    """Highest VmHWM of the live containers at the end (REPORT's figure is ru_maxrss,
    which a process started from this one inherits: it starts at this process's peak)."""
    links: int = 0
    """Links found over all rows (`links_count`): that every crawler extracted the same."""
    sample: dict[str, Any] | None = None
    """Task 0's row: title, description, h1 and its number of links."""

    @property
    def duration_s(self) -> float:
        return self.finished_s - self.started_s

    def batches_by_leg(self) -> dict[int, list[Batch]]:
        legs: dict[int, list[Batch]] = {}
        for batch in sorted(self.batches, key=lambda b: b.logged_s):
            legs.setdefault(batch.leg, []).append(batch)
        return legs


def run_baseline(site: Site, config: ThroughputConfig, workdir: Path) -> dict[str, Any]:
    """The plain crawler in a subprocess of its own (its own GIL, as a container has)."""
    tasks = workdir / "baseline-tasks.jsonl"
    tasks.write_bytes(_task_list(site.urls()))
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    host = time.process_time()
    started = time.monotonic()
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.baseline_crawler",
            "--tasks",
            str(tasks),
            "--concurrency",
            str(config.concurrency),
            "--allow-nets",
            "127.0.0.0/8",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
        timeout=config.max_wait_s,
    )
    e2e = time.monotonic() - started
    result: dict[str, Any] = json.loads(completed.stdout)
    result["e2e_s"] = round(e2e, 3)
    result["e2e_pages_per_s"] = round(result["pages"] / e2e, 2)
    result["host_cpu_s"] = round(time.process_time() - host, 3)
    result["process_cpu_s"] = round(_children_cpu() - _cpu(children), 3)
    return result


def run_baton(site: Site, config: ThroughputConfig, workdir: Path) -> BatonRun:
    """Upload the site's URLs as a task list and follow the chain to its summary."""
    return run_chain(
        _task_list(site.urls()),
        config.pages,
        config.function,
        workdir,
        max_wait_s=config.max_wait_s,
        config=config,
    )


def run_chain(
    body: bytes,
    pages: int,
    function: Callable[[str], FunctionConfig],
    workdir: Path,
    *,
    max_wait_s: float,
    config: Any,
) -> BatonRun:
    """Upload `body` as a task list on a fresh embedded stack and follow the chain to its end.

    `function(bucket)` is the function as deployed; `config` (a dataclass) is recorded.
    """
    log_path = workdir / "containers.log"
    log_path.unlink(missing_ok=True)
    bucket = f"baton-bench-{time.time_ns() % 10**12}"
    served = S3Tally()
    stack = EmbeddedStack(
        function(bucket), bucket=bucket, log_file=log_path, s3_fault_hook=served.count
    )
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    host = time.process_time()
    with stack:
        s3 = stack.s3_client()
        ours = S3Tally()
        s3.meta.events.register("before-call.s3", ours.count_call)
        try:
            store = RunStore.over(s3, bucket, "runs/")
            served.reset()
            upload_s = time.time()
            etag = s3.put_object(Bucket=bucket, Key=TASKS_KEY, Body=body)["ETag"]
            run_id = _wait_for_run(store, etag, max_wait_s)
            status = _wait_for_end(store, run_id, max_wait_s)
            summary = _wait_for_summary(store, run_id)
            stack.runtime.wait_idle(30)
            peaks = container_peaks_mb()
            s3_requests = served.minus(ours)
            checkpoint = store.load_checkpoint(run_id).checkpoint
            results = _check_results(store, run_id, pages)
            records = [asdict(r) for r in stack.runtime.records(FUNCTION)]
            stats = asdict(stack.runtime.stats(FUNCTION))
        finally:
            s3.close()
    host_cpu = time.process_time() - host
    container_cpu = _children_cpu() - _cpu(children)
    legs, batches, reports = parse_container_log(log_path)
    log_bytes = log_path.stat().st_size if log_path.exists() else 0
    return BatonRun(
        config=asdict(config),
        run_id=run_id,
        status=status,
        summary=summary,
        upload_s=upload_s,
        started_s=checkpoint.started_ms / 1000,
        finished_s=checkpoint.finished_ms / 1000,
        legs=[leg for leg in legs if leg.get("run_id") == run_id],
        batches=batches,
        reports=reports,
        records=records,
        stats=stats,
        container_cpu_s=round(container_cpu, 3),
        host_cpu_s=round(host_cpu, 3),
        rows=results.rows,
        duplicate_rows=results.duplicates,
        missing_rows=results.missing,
        row_task_ms=results.task_ms,
        task_latencies_ms=results.latencies,
        s3_requests=s3_requests,
        log_bytes=log_bytes,
        container_peak_mb=max(peaks, default=0.0),
        links=results.links,
        sample=results.sample,
    )


def measure(
    config: ThroughputConfig, workdir: Path | None = None
) -> tuple[dict[str, Any], BatonRun]:
    """Crawler, baton, crawler again, against one site; returns (figures, the baton run)."""
    with tempfile.TemporaryDirectory(prefix="baton-bench-") as tmp:
        work = workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        with Site(config.site()) as site:
            for index in range(config.pages):  # render every page before either side runs
                site.page(index)
            site.reset_hits()
            baselines = [run_baseline(site, config, work)]
            site.reset_hits()
            run = run_baton(site, config, work)
            fetched = sum(site.hits.values())
            for _ in range(config.baseline_rounds - 1):
                site.reset_hits()
                baselines.append(run_baseline(site, config, work))
    return summarize(config, combine(baselines), run, fetched), run


def combine(baselines: list[dict[str, Any]]) -> dict[str, Any]:
    """The crawler's rounds (before and after baton, so drift cancels): means, and each rate."""
    combined = dict(baselines[0])
    for key, value in baselines[0].items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            mean = sum(float(b[key]) for b in baselines) / len(baselines)
            combined[key] = round(mean, 3) if isinstance(value, float) else round(mean)
    combined["rounds_pages_per_s"] = [b["pages_per_s"] for b in baselines]
    return combined


def summarize(
    config: ThroughputConfig, baseline: dict[str, Any], run: BatonRun, fetched: int
) -> dict[str, Any]:
    processed = int(run.summary.get("processed") or 0)
    baton_rate = processed / run.duration_s if run.duration_s > 0 else 0.0
    e2e_s = run.finished_s - run.upload_s
    batch_ms = sum(b.ms for b in run.batches)
    row_ms = sum(run.row_task_ms.values())
    fill = row_ms / (config.concurrency * batch_ms) if batch_ms else 0.0
    handed = [leg for leg in run.legs if leg.get("exit") == "handed_off"]
    return {
        "config": asdict(config),
        "throughput_ratio": round(baton_rate / baseline["pages_per_s"], 4)
        if baseline["pages_per_s"]
        else None,
        "throughput_ratio_e2e": round((processed / e2e_s) / baseline["e2e_pages_per_s"], 4)
        if e2e_s > 0 and baseline["e2e_pages_per_s"]
        else None,
        "baseline": baseline,
        "baton": {
            "status": run.status,
            "pages": processed,
            "ok": run.summary.get("ok"),
            "failed": run.summary.get("failed"),
            "duration_s": round(run.duration_s, 3),
            "pages_per_s": round(baton_rate, 2),
            "e2e_s": round(e2e_s, 3),
            "e2e_pages_per_s": round(processed / e2e_s, 2) if e2e_s > 0 else None,
            "legs": len(run.legs),
            "legs_handed_off": len(handed),
            "batches": len(run.batches),
            "tasks_per_batch_median": int(
                statistics.median(b.end - b.start + 1 for b in run.batches)
            )
            if run.batches
            else None,
            "batch_ms_median": round(statistics.median(b.ms for b in run.batches), 1)
            if run.batches
            else None,
            "fill": round(fill, 4),
            "cold_starts": run.stats.get("cold_starts"),
            "warm_starts": run.stats.get("warm_starts"),
            "timeouts": run.stats.get("timeouts"),
            "retries": run.stats.get("retries"),
            "container_cpu_s": run.container_cpu_s,
            "cpu_ms_per_page": round(run.container_cpu_s * 1000 / processed, 3)
            if processed
            else None,
            "host_cpu_s": run.host_cpu_s,
            "max_memory_used_mb": round(run.container_peak_mb, 1) or None,
            "report_max_memory_mb": max(
                (r["max_memory_mb"] for r in run.reports.values()), default=None
            ),
            "s3_requests": run.s3_requests,
            "results_rows": run.rows,
            "duplicate_rows": run.duplicate_rows,
            "missing_rows": run.missing_rows,
        },
        "time_breakdown_s": time_breakdown(run),
        "site_requests": fetched,
    }


def time_breakdown(run: BatonRun) -> dict[str, float]:
    """Where the run's wall time went, from the commit lines (seconds, summing to the run).

    The keys keep their batch-era names. `tasks_busy` is thread-time in tasks /
    concurrency (what a perfectly packed pool needs); `batch_idle` is the rest of the
    legs' time from start to last commit: each leg's fixed start (claim, list
    revalidation), new starts held back while a commit's S3 calls run, the plan running
    dry, and the drain at a leg's end, when no task starts and the last ones finish.
    `batch_boundaries` (gaps between commit intervals) is about zero by construction.
    """
    by_leg = run.batches_by_leg()
    if not by_leg:
        return {}
    concurrency = int(run.config["concurrency"])
    batch_s = sum(b.ms for b in run.batches) / 1000
    busy_s = sum(run.row_task_ms.values()) / 1000 / concurrency
    inside = hops = 0.0
    legs = sorted(by_leg)
    for leg in legs:
        batches = by_leg[leg]
        inside += sum(
            nxt.logged_s - nxt.ms / 1000 - prev.logged_s for prev, nxt in pairwise(batches)
        )
        if leg + 1 in by_leg:
            first = by_leg[leg + 1][0]
            hops += first.logged_s - first.ms / 1000 - batches[-1].logged_s
    first = by_leg[legs[0]][0]
    head = first.logged_s - first.ms / 1000 - run.started_s
    tail = run.finished_s - by_leg[legs[-1]][-1].logged_s
    return {
        "run": round(run.duration_s, 3),
        "tasks_busy": round(busy_s, 3),
        "batch_idle": round(batch_s - busy_s, 3),
        "batch_boundaries": round(inside, 3),
        "leg_hops": round(hops, 3),
        "first_batch_wait": round(head, 3),
        "after_last_batch": round(tail, 3),
    }


def parse_container_log(
    path: Path,
) -> tuple[list[dict[str, Any]], list[Batch], dict[str, dict[str, Any]]]:
    """The legs' JSON lines, the batch lines and the REPORT lines of the containers' log."""
    legs: list[dict[str, Any]] = []
    batches: list[Batch] = []
    reports: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return legs, batches, reports
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        container, line = log_record(raw)
        if line is not None:
            if line.get("event") == "leg":
                legs.append(line | {"container": container})
                continue
            batch = _batch(line, container)
            if batch is not None:
                batches.append(batch)
        elif (report := _REPORT.search(raw)) is not None:
            request_id, duration, memory, init = report.groups()
            reports[request_id] = {
                "duration_ms": float(duration),
                "max_memory_mb": int(memory),
                "init_ms": float(init) if init else None,
                "container": container,
            }
    legs.sort(key=lambda leg: (leg.get("leg", 0), leg.get("time", 0)))
    return legs, batches, reports


# helpers


def _batch(line: dict[str, Any], container: str) -> Batch | None:
    """A batch line: the structured fields (`"event": "batch"`) or, failing that, the message."""
    request_id = str(line.get("request_id", ""))
    if line.get("event") == "batch":
        level = line.get("concurrency")
        return Batch(
            request_id=request_id,
            container=container,
            leg=int(line["leg"]),
            start=int(line["start"]),
            end=int(line["end"]),
            ms=float(line["batch_ms"]),
            logged_s=float(line["time"]),
            concurrency=int(level) if isinstance(level, int | float) else None,
            failed=int(line["failed"]) if isinstance(line.get("failed"), int) else None,
            cpu_use=float(use) if isinstance(use := line.get("cpu_use"), int | float) else None,
            tasks=int(line["tasks"]) if isinstance(line.get("tasks"), int) else None,
        )
    match = _BATCH.match(str(line.get("message", "")))
    if match is None:
        return None
    leg, start, end, ms = (int(g) for g in match.groups())
    return Batch(request_id, container, leg, start, end, float(ms), float(line["time"]))


def _task_list(urls: list[str]) -> bytes:
    return b"".join(json.dumps(url).encode() + b"\n" for url in urls)


def _wait_for_run(store: RunStore, etag: str, max_wait_s: float) -> str:
    deadline = time.monotonic() + max_wait_s
    while time.monotonic() < deadline:
        runs = store.runs_for_source(TASKS_KEY, etag)
        if runs:
            return runs[-1]
        time.sleep(0.05)
    raise TimeoutError(f"no run started within {max_wait_s:.0f} s of the upload")


def _wait_for_end(store: RunStore, run_id: str, max_wait_s: float) -> str:
    deadline = time.monotonic() + max_wait_s
    while time.monotonic() < deadline:
        try:
            status = store.load_checkpoint(run_id).checkpoint.status
        except RunNotFoundError:  # the run is listed a moment before its checkpoint exists
            status = None
        if status in TERMINAL:
            return str(status)
        time.sleep(0.25)
    raise TimeoutError(f"run {run_id} did not finish within {max_wait_s:.0f} s")


def _wait_for_summary(store: RunStore, run_id: str, wait_s: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        summary = store.load_summary(run_id)
        if summary is not None:
            return summary
        time.sleep(0.1)
    raise TimeoutError(f"run {run_id} ended without a summary")


@dataclass
class _Results:
    rows: int = 0
    duplicates: int = 0
    missing: int = 0
    task_ms: dict[int, float] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    links: int = 0
    sample: dict[str, Any] | None = None


def _check_results(store: RunStore, run_id: str, total: int) -> _Results:
    """Every index exactly once, over the range objects and the objects of holes (a hole's
    row is in the latter only)? Also each task's elapsed_ms, and their sum per object."""
    seen: set[int] = set()
    found = _Results()
    by_index: dict[int, float] = {}
    objects = [*store.result_keys(run_id), *store.hole_keys(run_id)]
    for start, _, key in objects:
        batch = store.read_rows(key)
        found.rows += len(batch)
        task_ms = sum(float(row.get("elapsed_ms") or 0.0) for row in batch)
        found.task_ms[start] = found.task_ms.get(start, 0.0) + task_ms
        for row in batch:
            index = int(row["index"])
            found.duplicates += index in seen
            seen.add(index)
            by_index[index] = float(row.get("elapsed_ms") or 0.0)
            found.links += int(row.get("links_count") or 0)
            if index == 0:
                found.sample = {
                    "title": row.get("title"),
                    "description": row.get("description"),
                    "h1": row.get("h1"),
                    "links": row.get("links_count"),
                }
    found.missing = total - len(seen & set(range(total)))
    found.latencies = [by_index[i] for i in sorted(by_index)]
    return found


class S3Tally:
    """S3 requests by billing tier: PUT/COPY/POST/LIST, GET/HEAD (and free DELETEs).

    As the S3 emulator's fault hook it counts what the server saw (and never injects
    a fault); as a boto3 `before-call` handler it counts a client's own calls, so the
    bench's polling can be taken out of the server's count.
    """

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self.counts = {}

    def count(self, call: S3Call) -> None:
        if not call.bucket:
            tier = "other"
        elif call.method in ("GET", "HEAD") and call.key:
            tier = "get"
        elif call.method == "GET":
            tier = "list"
        elif call.method in ("PUT", "POST"):
            tier = "put"
        elif call.method == "DELETE":
            tier = "delete"
        else:
            tier = "other"
        self._add(tier)

    def count_call(self, model: Any, **_: Any) -> None:
        name = str(model.name)
        if name in ("GetObject", "HeadObject"):
            tier = "get"
        elif name.startswith("List"):
            tier = "list"
        elif name.startswith("Delete"):
            tier = "delete"
        elif name.startswith(("Put", "Copy", "Create", "Complete", "Upload")):
            tier = "put"
        else:
            tier = "other"
        self._add(tier)

    def minus(self, other: S3Tally) -> dict[str, int]:
        with self._lock:
            mine = dict(self.counts)
        return {tier: mine.get(tier, 0) - other.counts.get(tier, 0) for tier in sorted(mine)}

    def _add(self, tier: str) -> None:
        with self._lock:
            self.counts[tier] = self.counts.get(tier, 0) + 1


def container_peaks_mb() -> list[float]:
    """VmHWM of this process's live Lambda containers (children running _container_main)."""
    me = str(os.getpid())
    peaks: list[float] = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            status = (proc / "status").read_text()
            if b"_container_main" not in (proc / "cmdline").read_bytes():
                continue
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields.get("PPid", "").strip() == me and "VmHWM" in fields:
            peaks.append(int(fields["VmHWM"].split()[0]) / 1024)
    return peaks


def _cpu(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


def _children_cpu() -> float:
    return _cpu(resource.getrusage(resource.RUSAGE_CHILDREN))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.throughput", description=__doc__)
    parser.add_argument("--pages", type=int, default=ThroughputConfig.pages)
    parser.add_argument("--timeout", type=float, default=ThroughputConfig.timeout_s)
    parser.add_argument("--concurrency", type=int, default=ThroughputConfig.concurrency)
    parser.add_argument("--latency-ms", type=float, default=ThroughputConfig.latency_median_ms)
    parser.add_argument("--margin-ms", type=int, default=None)
    args = parser.parse_args(argv)
    config = ThroughputConfig(
        pages=args.pages,
        timeout_s=args.timeout,
        concurrency=args.concurrency,
        latency_median_ms=args.latency_ms,
        margin_ms=args.margin_ms,
    )
    figures, _ = measure(config)
    json.dump(figures, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
