"""Task list scaling: time and memory of a leg's load, whole list vs sparse index.

A JSONL list of N tasks (`{"url", "id"}` objects, ~65 bytes a line) is uploaded
to moto's S3 server on loopback, so every byte crosses a socket. Each case runs
in a fresh subprocess (`--child`), which loads the list with
`worker.tasks.load_task_list` and then reads one window of 25 tasks (a batch)
from the middle:

- `cold`: the first leg of a run in a new container: empty cache, no persisted
  index (the indexed mode scans the list and persists the index);
- `cold+idx`: a later leg in a new container: the persisted index is read;
- `warm`: a later leg in the same container, with the ETag cache: a 304;
- `warm-nocache`: the same, with the cache emptied first (as if there were none).

`whole` reads and parses the list at once (BATON_INDEX_THRESHOLD_BYTES above its
size); `indexed` forces the index (threshold 0). Every case runs twice: once for
time and peak RSS (the process's high-water mark, and its rise during the load),
once under tracemalloc for the peak of Python allocations during the load and
what stays allocated after it. moto's server copies the whole object to answer
a ranged GET, so a window's time is shown beside a bare ranged GET of the same
bytes (`range ms`): the difference is baton's; real S3 does not slow down so.

    python -m bench.tasklist_scaling [--quick] [--huge]
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

from cache import ObjectCache
from worker.config import Settings
from worker.s3 import ObjectStore
from worker.tasks import IndexedTaskList, index_key, load_task_list

RESULTS = Path(__file__).resolve().parent / "results" / "tasklist_scaling.json"
BUCKET = "baton-bench"
RESULTS_PREFIX = "runs/"
WINDOW = 25
PHASES = {"whole": ("cold", "warm", "warm-nocache"), "indexed": ("cold", "cold+idx", "warm")}
WHOLE_MAX_TASKS = 1_000_000
"""Above this the whole mode needs several GB; the indexed mode alone is measured."""
MiB = 1024 * 1024


def client(endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    )


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """One case, in this (fresh) process; returns its figures."""
    s3 = client(spec["endpoint"])
    threshold = 0 if spec["mode"] == "indexed" else 1 << 62
    settings = Settings(index_threshold_bytes=threshold, results_prefix=RESULTS_PREFIX)
    key, etag, middle = spec["key"], spec["etag"], spec["tasks"] // 2
    cache = ObjectCache()
    if spec["phase"].startswith("warm"):
        tasks, _ = load_task_list(cache, ObjectStore(s3), BUCKET, key, etag, settings=settings)
        tasks[middle : middle + WINDOW]
        del tasks
        if spec["phase"] == "warm-nocache":
            cache = ObjectCache()
    gets: list[int | None] = []
    s3.meta.events.register(
        "after-call.s3.GetObject",
        lambda parsed, **_: gets.append(parsed.get("ContentLength")),
    )
    bytes_before = cache.stats.bytes_downloaded
    gc.collect()
    rss_before = peak_rss_mb()
    if spec["trace"]:
        tracemalloc.start()
    started = time.perf_counter()
    tasks, hit = load_task_list(cache, ObjectStore(s3), BUCKET, key, etag, settings=settings)
    loaded = time.perf_counter()
    window = tasks[middle : middle + WINDOW]
    done = time.perf_counter()
    figures: dict[str, Any] = {
        "hit": hit,
        "tasks": len(tasks),
        "load_ms": (loaded - started) * 1000,
        "window_ms": (done - loaded) * 1000,
        "gets": len(gets),
        "load_bytes": cache.stats.bytes_downloaded - bytes_before,
        "window_bytes": gets[-1] if spec["mode"] == "indexed" else 0,
        "rss_before_mb": rss_before,
        "rss_peak_mb": peak_rss_mb(),
    }
    if spec["trace"]:
        _, peak = tracemalloc.get_traced_memory()
        gc.collect()
        figures["py_peak_mb"] = peak / MiB
        figures["py_retained_mb"] = tracemalloc.get_traced_memory()[0] / MiB
        tracemalloc.stop()
    assert [t.index for t in window] == list(range(middle, middle + WINDOW))
    if isinstance(tasks, IndexedTaskList):
        first, last = tasks.index.byte_range(middle, middle + WINDOW)
        started = time.perf_counter()
        s3.get_object(Bucket=BUCKET, Key=key, IfMatch=etag, Range=f"bytes={first}-{last}")[
            "Body"
        ].read()
        figures["range_get_ms"] = (time.perf_counter() - started) * 1000
    return figures


def peak_rss_mb() -> float:
    """This process's own high-water RSS (VmHWM).

    Not `getrusage().ru_maxrss`: Linux carries that over fork and exec, so a child
    of the (large) benchmark process starts with the parent's peak.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_case(s3: Any, spec: dict[str, Any], index: str) -> dict[str, Any]:
    """Time and RSS from one fresh process, Python allocations from another."""
    out: dict[str, Any] = {}
    for trace in (False, True):
        if spec["phase"] == "cold":
            s3.delete_object(Bucket=BUCKET, Key=index)
        line = (
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "bench.tasklist_scaling",
                    "--child",
                    json.dumps(spec | {"trace": trace}),
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        figures = json.loads(line)
        if trace:
            out["py_peak_mb"] = figures["py_peak_mb"]
            out["py_retained_mb"] = figures["py_retained_mb"]
        else:
            out.update(figures)
    return out


def upload(s3: Any, key: str, count: int) -> tuple[str, int]:
    """Write the list to a temporary file (10M tasks is ~700 MB) and upload it."""
    with tempfile.TemporaryFile() as spool:
        for start in range(0, count, 100_000):
            spool.write(
                "".join(
                    f'{{"url": "https://example.com/page/{i}", "id": "task-{i}"}}\n'
                    for i in range(start, min(count, start + 100_000))
                ).encode()
            )
        spool.seek(0)
        s3.upload_fileobj(spool, BUCKET, key)
    head = s3.head_object(Bucket=BUCKET, Key=key)
    return str(head["ETag"]), int(head["ContentLength"])


def measure(sizes: list[int]) -> dict[str, Any]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    s3 = client(endpoint)
    s3.create_bucket(Bucket=BUCKET)
    rows = []
    try:
        for count in sizes:
            key = f"tasks/bench-{count}.jsonl"
            started = time.perf_counter()
            etag, size = upload(s3, key, count)
            print(
                f"uploaded {count:,} tasks ({size / MiB:.1f} MiB) in "
                f"{time.perf_counter() - started:.1f} s",
                file=sys.stderr,
            )
            where = index_key(RESULTS_PREFIX, BUCKET, key, etag)
            for mode, phases in PHASES.items():
                if mode == "whole" and count > WHOLE_MAX_TASKS:
                    continue
                for phase in phases:
                    spec = {
                        "endpoint": endpoint,
                        "key": key,
                        "etag": etag,
                        "tasks": count,
                        "mode": mode,
                        "phase": phase,
                    }
                    figures = run_case(s3, spec, where)
                    row = {"tasks": count, "list_mib": size / MiB, "mode": mode, "phase": phase}
                    rows.append(row | figures)
                    print(_line(rows[-1]), file=sys.stderr)
            index_bytes = int(s3.head_object(Bucket=BUCKET, Key=where)["ContentLength"])
            for row in rows:
                if row["tasks"] == count:
                    row["index_bytes"] = index_bytes
            s3.delete_object(Bucket=BUCKET, Key=key)
    finally:
        server.stop()
    huge = [row["rss_peak_mb"] for row in rows if row["tasks"] == 10_000_000]
    figures: dict[str, Any] = {"python": sys.version.split()[0], "window_tasks": WINDOW}
    if huge:
        figures["peak_rss_mb_10m"] = max(huge)
    return figures | {"rows": rows}


HEADER = (
    f"{'tasks':>10} {'list MiB':>9} {'mode':>8} {'phase':>13} {'load ms':>9} {'window ms':>9} "
    f"{'range ms':>8} "
    f"{'GETs':>4} {'load MiB':>9} {'RSS MiB':>8} {'RSS +MiB':>9} {'py peak':>8} {'py kept':>8}"
)


def _line(row: dict[str, Any]) -> str:
    return (
        f"{row['tasks']:>10,} {row['list_mib']:>9.1f} {row['mode']:>8} {row['phase']:>13} "
        f"{row['load_ms']:>9.1f} {row['window_ms']:>9.1f} {row.get('range_get_ms', 0.0):>8.1f} "
        f"{row['gets']:>4} "
        f"{row['load_bytes'] / MiB:>9.2f} {row['rss_peak_mb']:>8.1f} "
        f"{row['rss_peak_mb'] - row['rss_before_mb']:>9.1f} "
        f"{row['py_peak_mb']:>8.1f} {row['py_retained_mb']:>8.2f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.tasklist_scaling",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="1k and 100k tasks only")
    parser.add_argument("--huge", action="store_true", help="add 10M tasks (indexed only; minutes)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    sizes = [1_000, 100_000] if args.quick else [1_000, 100_000, 1_000_000]
    if args.huge:
        sizes.append(10_000_000)
    figures = measure(sizes)
    print(HEADER)
    for row in figures["rows"]:
        print(_line(row))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"figures written to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
