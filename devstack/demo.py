"""`make demo` and `baton local`: a real run on the embedded local stack, shown as it happens.

The run is the production code path end to end: an upload to the S3 emulator
fires an ObjectCreated notification, the local Lambda runtime invokes
`handler.handler` in a warm worker process with a real deadline, and each leg
hands off with its own `lambda.invoke(InvocationType="Event")` over HTTP. This
module only watches: it reads the checkpoint from S3 and the legs' JSON log
lines from the containers' log file.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import boto3

from devstack.lambda_runtime import FunctionConfig, log_record
from devstack.site import LatencyProfile, PageKind, Site, SiteConfig
from devstack.stack import EmbeddedStack
from worker.exceptions import BatonError
from worker.names import FUNCTION_NAME, RESULTS_PREFIX
from worker.progress import chain_lines, exit_code, load_view, progress_line, summary_lines
from worker.start import CHAINS_METADATA
from worker.store import RunStore

WORK_DIR = Path(".baton-local")


@dataclass(frozen=True)
class LocalRun:
    """How the embedded stack runs the function for a local run."""

    timeout_s: float = 4.0
    allow_loopback: bool = True
    concurrency: int = 4
    margin_ms: int = 800
    max_wait_s: float = 600.0
    chains: int = 1

    def function(self, bucket: str) -> FunctionConfig:
        environment = {
            "BATON_BUCKET": bucket,
            "BATON_CONCURRENCY": str(self.concurrency),
            "BATON_MARGIN_MS": str(self.margin_ms),
            "BATON_REQUEST_TIMEOUT_S": "2",
            "BATON_LEASE_SLACK_MS": "500",
            "BATON_STALL_AFTER_MS": str(int(self.timeout_s * 2000)),
            "BATON_METRICS": "false",
            "BATON_LOG_FORMAT": "json",
        }
        if self.allow_loopback:
            environment["BATON_ALLOW_NETS"] = "127.0.0.0/8"
        return FunctionConfig(
            name=FUNCTION_NAME,
            timeout_s=self.timeout_s,
            memory_mb=1024,
            environment=environment,
            max_concurrency=4 + self.chains,
            max_retries=2,
            retry_delay_s=0.5,
            recursive_loop="Allow",
        )


@dataclass
class LegLog:
    """Follows the containers' log file and keeps the legs' structured lines."""

    path: Path
    offset: int = 0
    legs: list[dict[str, Any]] = field(default_factory=list)

    def poll(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            data = handle.read()
        complete = data.rfind(b"\n") + 1
        self.offset += complete
        new = []
        for raw in data[:complete].decode("utf-8", "replace").splitlines():
            _, line = log_record(raw)
            if line is not None and line.get("event") == "leg":
                new.append(line)
        self.legs.extend(new)
        return new


def run_demo(
    pages: int = 300, timeout_s: float = 4.0, chains: int = 1, out: TextIO = sys.stdout
) -> int:
    """Serve a sample site, upload its URLs as a task list, and watch the run."""
    config = SiteConfig(
        pages=pages,
        seed=1,
        page_bytes=(15_000, 60_000),
        slow_share=0.04,
        slow_delay_s=0.8,
        broken_share=0.05,
        retry_after_s=0,
        latency=LatencyProfile(median_s=0.15, sigma=0.6, max_s=1.0),
    )
    with Site(config) as site:
        _say(
            out,
            f"site    {site.base_url}  {pages} pages "
            f"({len(site.slow_pages())} slow, "
            f"{pages - len(site.pages_of(PageKind.OK))} broken)",
        )
        tasks = b"".join(json.dumps(url).encode() + b"\n" for url in site.urls())
        local = LocalRun(timeout_s=timeout_s, chains=chains)
        status, _ = _run(tasks, "tasks/demo.jsonl", local, out)
    # The site breaks some pages on purpose: their failed tasks are the demo working.
    return exit_code(status, failed_tasks=0)


def run_remote_demo(
    endpoint_url: str,
    bucket: str,
    pages: int = 300,
    site_host: str = "host.docker.internal",
    out: TextIO = sys.stdout,
) -> int:
    """The demo against an already deployed stack (LocalStack): same site, upload and watch.

    The site listens on all interfaces so the function's container can reach it as
    `site_host`; the function must have been deployed with BATON_ALLOW_NETS covering it.
    """
    config = SiteConfig(
        pages=pages,
        seed=1,
        slow_share=0.04,
        broken_share=0.05,
        retry_after_s=0,
        latency=LatencyProfile(median_s=0.15, sigma=0.6, max_s=1.0),
    )
    with Site(config, host="0.0.0.0") as site:
        port = site.base_url.rsplit(":", 1)[1]
        urls = [url.replace(f"0.0.0.0:{port}", f"{site_host}:{port}") for url in site.urls()]
        tasks = b"".join(json.dumps(url).encode() + b"\n" for url in urls)
        s3 = boto3.client("s3", endpoint_url=endpoint_url)
        key = "tasks/demo.jsonl"
        etag = s3.put_object(Bucket=bucket, Key=key, Body=tasks)["ETag"]
        _say(out, f"uploaded s3://{bucket}/{key} to {endpoint_url}; the site is {urls[0]} ...")
        store = RunStore.over(s3, bucket, RESULTS_PREFIX)
        deadline = time.monotonic() + 120
        while not (runs := store.runs_for_source(key, etag)):
            if time.monotonic() > deadline:
                _say(out, "no run started within 120 s: is the S3 notification deployed?")
                return 1
            time.sleep(0.5)
        _say(out, f"run {runs[-1]}\n")
        status = _watch(store, runs[-1], None, 3600, out)
        summary = store.load_summary(runs[-1]) or {}
        for line in summary_lines(summary):
            _say(out, line)
    return exit_code(status, int(summary.get("failed", 0)))


def run_local(
    name: str,
    tasks: bytes,
    timeout_s: float = 5.0,
    allow_loopback: bool = False,
    out: TextIO = sys.stdout,
) -> int:
    """Run the user's own task list (the bytes of file `name`) on the embedded stack."""
    key = f"tasks/{name}" if name.endswith((".json", ".jsonl")) else f"tasks/{name}.jsonl"
    local = LocalRun(timeout_s=timeout_s, allow_loopback=allow_loopback, concurrency=8)
    return exit_code(*_run(tasks, key, local, out))


def _run(tasks: bytes, key: str, local: LocalRun, out: TextIO) -> tuple[str, int]:
    """Upload the list, watch its run; (final status, failed tasks)."""
    WORK_DIR.mkdir(exist_ok=True)
    log_path = WORK_DIR / "containers.log"
    log_path.unlink(missing_ok=True)
    bucket = f"baton-local-{int(time.time())}"
    stack = EmbeddedStack(
        local.function(bucket),
        bucket=bucket,
        log_file=log_path,
        sweep_interval_s=max(2.0, local.timeout_s),
    )
    with stack:
        fn = stack.function
        _say(out, f"S3      {stack.s3_endpoint_url}  bucket {bucket}")
        _say(
            out,
            f"Lambda  {stack.lambda_endpoint_url}  function {fn.name} "
            f"(timeout {fn.timeout_s:g} s, {fn.max_retries} async retries, "
            f"RecursiveLoop {fn.recursive_loop})",
        )
        _say(out, f"logs    {log_path}  (each container's output, JSON lines)")
        s3 = stack.s3_client()
        try:
            metadata = {CHAINS_METADATA: str(local.chains)} if local.chains > 1 else {}
            etag = s3.put_object(Bucket=bucket, Key=key, Body=tasks, Metadata=metadata)["ETag"]
            across = f" in {local.chains} chains" if local.chains > 1 else ""
            _say(
                out,
                f"\nuploaded s3://{bucket}/{key} ({len(tasks):,} bytes): "
                f"S3 ObjectCreated -> baton-worker{across}",
            )
            store = RunStore.over(s3, bucket, RESULTS_PREFIX)
            run_id = _wait_for_run(store, key, etag, stack, local.max_wait_s)
            if run_id is None:
                _say(out, "no run started: see the log above and " + str(log_path))
                return "unfinished", 0
            _say(out, f"run {run_id}\n")
            status = _watch(store, run_id, LegLog(log_path), local.max_wait_s, out)
            failed = _report(stack, store, run_id, out)
        finally:
            s3.close()
    return status, failed


def _wait_for_run(
    store: RunStore, key: str, etag: str, stack: EmbeddedStack, max_wait_s: float
) -> str | None:
    deadline = time.monotonic() + max_wait_s
    while time.monotonic() < deadline:
        runs = store.runs_for_source(key, etag)
        if runs:
            return runs[-1]
        if stack.runtime.wait_idle(0.2) and not store.runs_for_source(key, etag):
            time.sleep(0.2)
            if not store.runs_for_source(key, etag):
                return None
    return None


def _watch(
    store: RunStore, run_id: str, legs: LegLog | None, max_wait_s: float, out: TextIO
) -> str:
    tty = out.isatty()
    chained = store.load_run(run_id).chains > 1
    deadline = time.monotonic() + max_wait_s
    last_line = ""
    last_print = 0.0
    while time.monotonic() < deadline:
        for leg in legs.poll() if legs else []:
            if tty:
                out.write("\r\x1b[K")
            _say(out, _leg_line(leg, chained))
            last_line = ""
        try:
            v = load_view(store, run_id)
        except BatonError:
            time.sleep(0.2)
            continue
        line = progress_line(v)
        if tty:
            out.write("\r" + line + "\x1b[K")
            out.flush()
        elif line != last_line and time.monotonic() - last_print > 1.0:
            _say(out, line)
            last_line, last_print = line, time.monotonic()
        if v.finished and store.load_summary(run_id) is not None:
            time.sleep(0.3)
            for leg in legs.poll() if legs else []:
                if tty:
                    out.write("\r\x1b[K")
                _say(out, _leg_line(leg, chained))
            if tty:
                out.write("\r" + line + "\x1b[K\n")
            else:
                _say(out, line)
            return str(v.status)
        time.sleep(0.2)
    _say(out, f"\ngave up watching after {max_wait_s:.0f} s")
    return "unfinished"


def _leg_line(leg: dict[str, Any], chained: bool) -> str:
    cache = {True: "task list: 304 hit", False: "task list: downloaded", None: ""}[
        leg.get("cache_hit")
    ]
    where = f"chain {leg.get('chain')} leg {leg['leg']:>2}" if chained else f"leg {leg['leg']:>2}"
    return (
        f"  {where}  {leg['exit']:<14} {leg['start_position']:>5} -> "
        f"{leg['position']:<5} {leg['processed']:>4} tasks in {leg['batches']:>2} batches  "
        f"{leg['elapsed_ms'] / 1000:5.1f} s  {leg.get('remaining_ms', 0):>5} ms left  {cache}"
    )


def _report(stack: EmbeddedStack, store: RunStore, run_id: str, out: TextIO) -> int:
    """The summary for a person; returns the count of failed tasks."""
    summary = store.load_summary(run_id) or {}
    stats = stack.runtime.stats(stack.function.name)
    _say(out, "")
    for line in summary_lines(summary)[:-1]:
        _say(out, line)
    _say(
        out,
        f"containers: {stats.cold_starts} cold starts, {stats.warm_starts} warm reuses, "
        f"{stats.timeouts} timeouts, {stats.retries} retries",
    )
    final = load_view(store, run_id)
    if len(final.chains) > 1:
        stolen = len(final.chains) - final.record.chains
        _say(out, f"chains ({stolen} ranges stolen from stragglers):" if stolen else "chains:")
        for line in chain_lines(final):
            _say(out, line)
    notices = [n for n in stack.notices(wait_s=2) if n.get("detail", {}).get("run_id") == run_id]
    for notice in notices:
        _say(
            out,
            f"notice: EventBridge {notice.get('detail-type')!r} "
            f"(status {notice['detail'].get('status')}) delivered to the stack's queue",
        )
    results = WORK_DIR / f"{run_id}.results.jsonl"
    with results.open("wb") as handle:
        for row in store.rows(run_id):
            handle.write(json.dumps(row, ensure_ascii=False).encode() + b"\n")
    _say(
        out,
        f"results: s3://{store.bucket}/runs/{run_id}/results/ "
        f"(copied to {results}); summary: runs/{run_id}/summary.json",
    )
    return int(summary.get("failed", 0))


def _say(out: TextIO, text: str) -> None:
    out.write(text + "\n")
    out.flush()
