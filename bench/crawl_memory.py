"""Peak memory of a crawl's seen-set and frontier at 100k and 1M URLs.

    python -m bench.crawl_memory [--sizes 100000 1000000]

Each size runs in a fresh process (`--child N`) that holds what a crawl leg's
container holds, built from a synthetic frontier (URLs of ~65 characters over
1,000 hosts, found on pages of the same shape):

- the seen-set (`worker.crawl.seen.SeenSet`), every URL hashed and added;
- the frontier as the leg holds it: each segment's encoded JSONL bytes (one
  segment per batch of new links, SEGMENT entries), decoded lazily: reading the
  log forward decodes one segment at a time and keeps at most DECODED of them,
  never a list of every Entry;
- one pass over the log as legs work it, checking each URL against the seen-set.

It reports VmHWM (peak RSS) absolute and over the process's baseline after its
imports (the interpreter with the runtime's crawl modules and libraries loaded),
writes bench/results/crawl_memory.json (`crawl_peak_rss_mb_100k`, `_1m`: the
absolute peaks, what must fit in the function) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from worker.crawl.frontier import Entry, decode_segment, encode_segment, interleave_by_host
from worker.crawl.robots import rules_from_response
from worker.crawl.seen import SeenSet, url_hash
from worker.crawl.urls import registrable_domain

RESULTS = Path(__file__).parent / "results" / "crawl_memory.json"
SEGMENT = 1000
"""Entries per segment: the new links of one batch."""
DECODED = 8
"""Decoded segments held at once, as the chain's log keeps them."""
HOSTS = 1000
MiB = 1024 * 1024
LABELS = {100_000: "100k", 1_000_000: "1m"}


def rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def url(i: int) -> str:
    return f"https://www.site{i % HOSTS:04d}.com/articles/{i % 997}/an-article-title-{i}.html"


def child(count: int) -> dict[str, Any]:
    registrable_domain("www.example.com")  # the suffix list, loaded by any crawl leg
    rules_from_response("https://a.com", 200, b"User-agent: *\nDisallow: /x\n", 0).allowed(
        "https://a.com/y", "bot"
    )
    baseline = rss_mb("VmRSS")
    started = time.perf_counter()
    seen = SeenSet()
    segments: list[bytes] = []
    for first in range(0, count, SEGMENT):
        batch = [
            Entry(url(i), 1 + i % 3, url(i // 7)) for i in range(first, min(count, first + SEGMENT))
        ]
        fresh = [e for e in interleave_by_host(batch) if seen.add(url_hash(e.url))]
        segments.append(encode_segment(fresh))
    built_s = time.perf_counter() - started
    started = time.perf_counter()
    decoded: dict[int, list[Entry]] = {}
    worked = 0
    for number, body in enumerate(segments):
        if len(decoded) >= DECODED:
            decoded.pop(next(iter(decoded)))
        decoded[number] = decode_segment(body)
        worked += sum(url_hash(e.url) in seen for e in decoded[number])
    assert worked == count == len(seen)
    return {
        "urls": count,
        "baseline_rss_mb": round(baseline, 1),
        "peak_rss_mb": round(rss_mb("VmHWM"), 1),
        "over_baseline_mb": round(rss_mb("VmHWM") - baseline, 1),
        "seen_table_mb": round(seen.table_bytes / MiB, 1),
        "frontier_bytes_mb": round(sum(map(len, segments)) / MiB, 1),
        "build_s": round(built_s, 2),
        "read_s": round(time.perf_counter() - started, 2),
    }


def run(count: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.crawl_memory", "--child", str(count)],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child)))
        return
    rows = [run(count) for count in args.sizes]
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    figures: dict[str, Any] = {"python": sys.version.split()[0], "commit": commit}
    for row in rows:
        label = LABELS.get(row["urls"], str(row["urls"]))
        figures[f"crawl_peak_rss_mb_{label}"] = row["peak_rss_mb"]
        figures[f"crawl_over_baseline_mb_{label}"] = row["over_baseline_mb"]
    figures["rows"] = rows
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    print(
        f"{'URLs':>10} {'base MiB':>9} {'peak MiB':>9} {'+MiB':>7} {'seen MiB':>9} "
        f"{'frontier MiB':>13} {'build s':>8} {'read s':>7}"
    )
    for row in rows:
        print(
            f"{row['urls']:>10,} {row['baseline_rss_mb']:>9} {row['peak_rss_mb']:>9} "
            f"{row['over_baseline_mb']:>7} {row['seen_table_mb']:>9} "
            f"{row['frontier_bytes_mb']:>13} {row['build_s']:>8} {row['read_s']:>7}"
        )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
