"""Crawl: baton's crawl mode against Crawlee on a many-host site (issue 12).

    python -m bench.crawl [--quick] [--bench-python .venv-bench/bin/python]

writes bench/results/crawl.json (`make bench` runs it through `bench.run_all`).

**The site** is `devstack.crawlsite` as `CrawlSiteConfig.benchmark`: 16 hosts on
127.0.0.x, every page delayed 100-300 ms (uniform, seeded per path and hit; the hits
are reset before every run, so every contender sees the same delays), robots.txt plain
on every host, no traps. Seeds are every host's home page; the scope is those hosts
(baton's `scope: host`, Crawlee's `strategy='all'` with an `include` of exactly those
origins); no depth limit binds (baton's `max_depth` is the oracle's deepest level plus
DEPTH_SLACK: over chains a page can be recorded deeper than its distance, docs/design.md
"Known limits", and a limit at the deepest level would then cut a page or two).
`CrawlSite.expected` is the oracle: the set of normalised URLs a correct crawl fetches.
Each baton run's objects are deleted once it is measured: the emulator (moto) lists a
prefix by scanning the whole bucket, so later runs would otherwise list ever slower.
The site runs in a process of its own (`bench.site_process`): the S3 emulator in this
process would otherwise slow its answers, and only baton's runs load the emulator.

**The contenders** (`CONTENDERS`), all obeying robots.txt, all extracting title,
description, h1 and the page's absolute links (`bench.peers.common`):

- **baton, 1 chain**: the manual payload `{"bucket", "crawl": spec, "chains": 1}` sent to
  the function on the embedded stack, `BATON_CONCURRENCY` unset (the autoscaler),
  `per_host_concurrency` 8 (the spec's default), a 900 s timeout and 1,769 MB as in
  `bench.versus` (`versus.BatonSetting`);
- **baton, 16 chains**: the same with `"chains": 16`; what the run really had is read
  from its run.json and summary (`chains`, `ranges`) and the start's `note` is kept: a
  crawl that runs on fewer chains than asked is reported as such;
- **Crawlee for Python** (ParselCrawler, `respect_robots_txt_file=True`, links enqueued
  with `enqueue_links`), at its defaults and tuned (min = desired = max concurrency 64).
  Crawlee has no per-host concurrency limit (its `ThrottlingRequestManager` enforces
  per-domain *delays*: 429s and Crawl-delay), so the per-host limit of 8 is baton's
  alone; with 16 hosts and 64 requests in flight a host averages 4.
- **Scrapy** at its defaults (16 requests, 8 per domain: baton's per-host limit) with
  ROBOTSTXT_OBEY on, a spider following every in-scope link (its dupe filter dedups).

The peers are this module run in `.venv-bench` (`--peer crawlee`): that virtualenv
lacks baton's dependencies, so the stack's modules are imported inside the functions that
use them, never at the top.

**The containers run a committed tree of this checkout**: `git archive` of `--tree`
(HEAD by default) puts its `handler.py`, `worker/`, `cache/` and `devstack/` in a scratch
directory that is the function's `code_dir`: the containers' cwd, so the first entry of
their `sys.path`, ahead of the editable install's finder (which may point at another
checkout), and files being edited in the worktree meanwhile are not what is measured.
`--tree worktree` runs the checkout's files as they are. The bench refuses to run if its
own `worker` package was imported from outside this checkout.

**Measured**, in interleaved rounds (the order rotates each round), min and median:
pages/s is the distinct normalised URLs the site answered (`CrawlSite.served`, robots.txt
left out: the same count for every contender, whatever each reports) over the working
time: for baton the run's first claim to its last chain's end (the summary's
`duration_s`, on warm containers), for Crawlee the span of its `crawler.run` call. The
end-to-end time (the start's invocation to the summary; the peer process's whole life) is
kept beside it. CPU per page: baton's containers (user + system), Crawlee's process over
its crawl call; the site and the S3 emulator run in this process and are counted for
no one (this process's CPU over each run is kept beside it, `bench_cpu_s`). Every run's
URL set is compared with the oracle (`found`, `missing`, `extra`), and its fetches per
page (re-fetches of one URL in other spellings show there).

Keys: `crawl_vs_crawlee` and `crawl_vs_crawlee_16` (baton's median pages/s, one chain and
16, over Crawlee default's; targets 1.0 and 3.0, DESIGN.md "Benchmark fairness"),
`crawl_vs_scrapy` (one chain over Scrapy default's; target 1.5, issue 12), and the crawl's memory
at 100k and 1M URLs from `bench.crawl_memory` (re-run here unless --quick).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.peers.common import Clock, Summary, absolute_links, squash, version

if TYPE_CHECKING:
    from bench.sampler import Contention
    from bench.site_process import SiteProcess

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_FILE = BENCH_DIR / "results" / "crawl.json"
MEMORY_FILE = BENCH_DIR / "results" / "crawl_memory.json"
BENCH_PYTHON = REPO_ROOT / ".venv-bench" / "bin" / "python"
FUNCTION = "baton-crawl"
TARGETS = {"crawl_vs_crawlee": 1.0, "crawl_vs_crawlee_16": 3.0, "crawl_vs_scrapy": 1.5}


@dataclass(frozen=True)
class Contender:
    key: str
    label: str
    chains: int = 0
    """Baton: the payload's `chains`; 0 for a peer."""
    peer: str | None = None
    tuned: bool = False


CONTENDERS = (
    Contender("baton_1", "baton, 1 chain", chains=1),
    Contender("baton_16", "baton, 16 chains", chains=16),
    Contender("crawlee_default", "Crawlee default", peer="crawlee"),
    Contender("crawlee_64", "Crawlee 64", peer="crawlee", tuned=True),
    Contender("scrapy_default", "Scrapy default", peer="scrapy"),
)
BY_KEY = {c.key: c for c in CONTENDERS}
RATIOS = {
    "crawl_vs_crawlee": ("baton_1", "crawlee_default"),
    "crawl_vs_crawlee_16": ("baton_16", "crawlee_default"),
    "crawl_vs_scrapy": ("baton_1", "scrapy_default"),
}
"""Key: (the baton contender, the peer it is divided by); targets in TARGETS."""
CONTEXT_RATIOS = {
    "crawl_vs_crawlee_64_1": ("baton_1", "crawlee_64"),
    "crawl_vs_crawlee_64_16": ("baton_16", "crawlee_64"),
    "crawl_vs_scrapy_default_16": ("baton_16", "scrapy_default"),
}
"""Beside the keys, no target: against Crawlee tuned and Scrapy default."""
DEPTH_SLACK = 4
WARM_STEP = 4
"""Chains added per warming crawl (a cold start is about 1.5 CPU s here; bench.fanout)."""


@dataclass(frozen=True)
class CrawlBenchConfig:
    hosts: int = 16
    pages_per_host: int = 200
    """4,340 pages in all (with the redirects and query pages), the deepest at depth 6.
    The issue asks 1,000+ a host: at Crawlee's default pace (about 50 pages/s) that is
    seven minutes a round for it alone."""
    rounds: int = 2
    per_host_concurrency: int = 8
    tuned: int = 64
    contenders: tuple[str, ...] = tuple(c.key for c in CONTENDERS)
    function_timeout_s: float = 900.0
    memory_mb: int = 1769
    bench_python: str = str(BENCH_PYTHON)
    max_wait_s: float = 600.0
    memory_bench: bool = True
    """Re-run `bench.crawl_memory` (about a minute) for the memory keys."""
    warm: bool = True
    """One short crawl first, so the measured runs start on warm containers."""
    tree: str = "HEAD"
    """The commit whose runtime the containers run; "worktree": the checkout's files."""


FULL = CrawlBenchConfig()
QUICK = CrawlBenchConfig(pages_per_host=12, rounds=1, memory_bench=False)


@dataclass
class CrawlRun:
    """One contender's crawl of the site."""

    contender: str
    round: int
    pages_per_s: float = 0.0
    elapsed_s: float = 0.0
    """The working time (see the module docstring)."""
    e2e_s: float = 0.0
    found: int = 0
    """Distinct normalised URLs the site answered during the run."""
    missing: int = 0
    """Oracle URLs not fetched."""
    extra: int = 0
    """Fetched URLs the oracle does not have."""
    differences: list[str] = field(default_factory=list)
    """A few of the missing (-) and extra (+) URLs."""
    fetches: int = 0
    """Answers the site gave (every spelling fetched again counts)."""
    rows: int = 0
    """Rows the contender reported."""
    failed: int = 0
    cpu_s: float = 0.0
    cpu_ms_per_page: float | None = None
    bench_cpu_s: float = 0.0
    """The bench's own process meanwhile: the site's threads, and for baton the S3 emulator
    and the Lambda runtime's API too (counted for no one in pages/s or CPU a page)."""
    chains_asked: int = 0
    chains: int | None = None
    """Baton: the chains the run had (run.json and summary `chains`)."""
    ranges: int | None = None
    legs: int | None = None
    note: str | None = None
    """Baton: the start's note (a crawl on fewer chains than asked says so there)."""
    depth_reached: int | None = None
    max_per_host: int = 0
    """The most requests one host had in flight at once."""
    mean_in_flight: float = 0.0
    """Requests in flight on the whole site, on average from its first to its last."""
    peak_rss_mb: float | None = None
    """Baton: the largest container's high-water RSS (VmHWM) after the run (containers
    outlive runs, so an earlier run's peak may show); a peer: its process's, at its end."""
    sample: dict[str, Any] | None = None
    versions: dict[str, str] = field(default_factory=dict)
    contention: dict[str, float] | None = None
    error: str | None = None


# --- the bench side ----------------------------------------------------------------------


def measure(
    config: CrawlBenchConfig,
    workdir: Path | None = None,
    contention: Contention | None = None,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Every round, every contender once (the order rotating); returns the figures."""
    _check_code_dir()
    with tempfile.TemporaryDirectory(prefix="baton-crawl-") as tmp:
        work = workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        chosen = [BY_KEY[key] for key in config.contenders]
        skipped = {c.key: why for c in chosen if (why := _unavailable(c, config))}
        for key, why in skipped.items():
            say(f"  skipping {BY_KEY[key].label}: {why}")
        running = [c for c in chosen if c.key not in skipped]
        runs: list[CrawlRun] = []
        with _Bench(config, work, contention).running() as bench:
            say(
                f"  site: {config.hosts} hosts, {len(bench.oracle)} pages reachable, "
                f"deepest at depth {bench.depth}"
            )
            warm = bench.warm() if config.warm and any(c.peer is None for c in running) else None
            for round_ in range(config.rounds):
                shift = round_ % max(1, len(running))
                for contender in running[shift:] + running[:shift]:
                    run = bench.run(contender, round_)
                    runs.append(run)
                    say(_line(run, BY_KEY[run.contender]))
            site = bench.describe()
            code = bench.code
    return figures(config, runs, skipped) | {"site": site, "warm": warm, "code": code}


def _check_code_dir() -> None:
    import worker

    if not Path(worker.__file__).resolve().is_relative_to(REPO_ROOT):
        raise RuntimeError(
            f"worker is imported from {worker.__file__}, not {REPO_ROOT}: run the bench "
            f"from the checkout's root (python -m bench.crawl), so its code is measured"
        )


RUNTIME_PATHS = ("handler.py", "worker", "cache", "devstack")


def _code_dir(tree: str, work: Path) -> dict[str, Any]:
    """Where the containers' code is: `tree`'s runtime exported, or the checkout itself."""
    if tree == "worktree":
        return {"tree": tree, "dir": str(REPO_ROOT), "commit": None}
    commit = subprocess.run(
        ["git", "rev-parse", f"{tree}^{{commit}}"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    target = work / f"runtime-{commit[:12]}"
    target.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "archive", "--format=tar", commit, *RUNTIME_PATHS],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return {"tree": tree, "dir": str(target), "commit": commit}


def _unavailable(contender: Contender, config: CrawlBenchConfig) -> str | None:
    if contender.peer is not None and not Path(config.bench_python).exists():
        return f"{config.bench_python} is absent (make bench-setup builds it)"
    return None


class _Bench:
    """The site and one embedded stack, shared by every run."""

    def __init__(self, config: CrawlBenchConfig, work: Path, contention: Contention | None) -> None:
        self.config = config
        self.work = work
        self.contention = contention
        self.bucket = f"baton-crawl-{time.time_ns() % 10**12}"
        self.log_path = work / "containers.log"

    @contextmanager
    def running(self) -> Iterator[_Bench]:
        from bench.site_process import SiteProcess
        from bench.versus import BatonSetting
        from devstack.crawlsite import CrawlSiteConfig
        from devstack.stack import EmbeddedStack
        from worker.store import RunStore

        site_config = CrawlSiteConfig.benchmark(self.config.hosts, self.config.pages_per_host)
        setting = BatonSetting(
            concurrency=None,
            timeout_s=self.config.function_timeout_s,
            memory_mb=self.config.memory_mb,
        )
        most = max(c.chains for c in CONTENDERS)
        self.code = _code_dir(self.config.tree, self.work)
        function = replace(
            setting.function(self.bucket),
            name=FUNCTION,
            code_dir=Path(self.code["dir"]),
            max_concurrency=most + 16,  # the local runtime's default is 4
        )
        with ExitStack() as stack:
            self.site = stack.enter_context(SiteProcess(site_config))
            self.oracle = self.site.expected(max_depth=None)
            self.depth = max(self.oracle.values())
            self.stack = stack.enter_context(
                EmbeddedStack(function, bucket=self.bucket, log_file=self.log_path)
            )
            self.s3 = self.stack.s3_client()
            stack.callback(self.s3.close)
            self.store = RunStore.over(self.s3, self.bucket, "runs/")
            yield self

    def spec(self, max_depth: int | None = None) -> dict[str, Any]:
        return {
            "seeds": self.site.seed_urls(),
            "max_depth": self.depth + DEPTH_SLACK if max_depth is None else max_depth,
            "max_pages": 10 * len(self.oracle) + 100,
            "robots": True,
            "per_host_concurrency": self.config.per_host_concurrency,
        }

    def describe(self) -> dict[str, Any]:
        config = self.site.config
        return {
            "hosts": config.hosts,
            "pages_per_host": config.pages_per_host,
            "links_per_page": config.links_per_page,
            "latency_ms": [100, 300],
            "reachable": len(self.oracle),
            "deepest": self.depth,
            "seeds": len(self.site.seed_urls()),
            "spec": self.spec(),
        }

    def warm(self) -> dict[str, Any]:
        """Crawls to depth 1 with WARM_STEP more chains each, up to the most any contender
        asks for: idle containers are reused first, so each starts a few new ones."""
        most = max(c.chains for c in CONTENDERS)
        started = time.monotonic()
        chains = []
        for step in range(WARM_STEP, most + WARM_STEP, WARM_STEP):
            self.site.reset()
            run_id = self._start(self.spec(max_depth=1), min(step, most))["run_id"]
            summary = self._wait(lambda run_id=run_id: self.store.load_summary(run_id))
            self.stack.runtime.wait_idle(60)
            self._forget(run_id)
            chains.append(summary.get("chains"))
        return {
            "seconds": round(time.monotonic() - started, 1),
            "containers": self.stack.runtime.stats(FUNCTION).cold_starts,
            "chains": chains,
        }

    def run(self, contender: Contender, round_: int) -> CrawlRun:
        run = CrawlRun(contender.key, round_, chains_asked=contender.chains)
        mark = len(self.contention.samples) if self.contention is not None else 0
        self.site.reset()
        bench_cpu = time.process_time()
        try:
            if contender.peer is None:
                self._baton(run, contender)
            else:
                self._peer(run, contender)
        except (OSError, RuntimeError, TimeoutError, ValueError, KeyError) as exc:
            run.error = f"{type(exc).__name__}: {exc}"[:500]
        except subprocess.SubprocessError as exc:
            run.error = f"{type(exc).__name__}: {exc}"[:500]
        run.bench_cpu_s = round(time.process_time() - bench_cpu, 3)
        served = self.site.served()
        found = set(served)
        expected = set(self.oracle)
        run.found = len(found & expected)
        run.missing = len(expected - found)
        run.extra = len(found - expected)
        run.fetches = sum(served.values())
        run.max_per_host = max(self.site.max_concurrent.values(), default=0)
        run.mean_in_flight = _mean_in_flight(self.site)
        if run.elapsed_s > 0:
            run.pages_per_s = round(len(found) / run.elapsed_s, 2)
        if run.cpu_s and found:
            run.cpu_ms_per_page = round(run.cpu_s * 1000 / len(found), 3)
        run.differences = [f"- {u}" for u in sorted(expected - found)[:5]] + [
            f"+ {u}" for u in sorted(found - expected)[:5]
        ]
        if self.contention is not None:
            run.contention = self.contention.since(mark)
        return run

    def _start(self, spec: dict[str, Any], chains: int) -> dict[str, Any]:
        payload = {"bucket": self.bucket, "crawl": spec, "chains": chains}
        result = self.stack.runtime.invoke(FUNCTION, payload)
        reply = result.json()
        started = (reply or {}).get("results") or [{}] if isinstance(reply, dict) else [{}]
        answer = started[0]
        if result.function_error or not isinstance(answer, dict) or "run_id" not in answer:
            raise RuntimeError(f"the start failed: {str(reply)[:300]}")
        return answer

    def _baton(self, run: CrawlRun, contender: Contender) -> None:
        from bench.fanout import _containers_cpu_s
        from bench.throughput import container_peaks_mb

        cpu0 = _containers_cpu_s()
        invoked = time.monotonic()
        answer = self._start(self.spec(), contender.chains)
        run_id = answer["run_id"]
        run.note = answer.get("note")
        summary = self._wait(lambda: self.store.load_summary(run_id))
        run.e2e_s = round(time.monotonic() - invoked, 3)
        self.stack.runtime.wait_idle(60)
        run.cpu_s = round(_containers_cpu_s() - cpu0, 3)
        run.peak_rss_mb = round(max(container_peaks_mb(), default=0.0), 1) or None
        run.elapsed_s = float(summary["duration_s"])
        record = self.store.load_run(run_id)
        run.chains = int(record.chains)
        run.ranges = int(summary.get("ranges") or 0)
        run.legs = int(summary.get("legs") or 0)
        run.failed = int(summary.get("failed") or 0)
        run.depth_reached = (summary.get("crawl") or {}).get("depth_reached")
        if int(summary.get("chains") or 0) != run.chains:
            run.note = f"{run.note or ''}; summary chains {summary.get('chains')}".lstrip("; ")
        rows = list(self.store.rows(run_id))
        run.rows = len(rows)
        run.sample = _sample(rows, self.site.url(0, "/p/0"))
        if summary.get("status") != "done":
            run.error = f"run {summary.get('status')}: {summary.get('reason')}"
        self._forget(run_id)

    def _forget(self, run_id: str) -> None:
        """Delete a measured run's objects: moto lists a prefix by scanning the whole
        bucket, so a bucket growing run by run would make each later run's LISTs slower
        (S3's do not depend on the bucket's size)."""
        pages = self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=f"runs/{run_id}/"
        )
        for page in pages:
            keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
            if keys:
                self.s3.delete_objects(Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True})

    def _peer(self, run: CrawlRun, contender: Contender) -> None:
        scratch = Path(tempfile.mkdtemp(prefix=f"{contender.key}-", dir=self.work))
        seeds = scratch / "seeds.txt"
        seeds.write_text("\n".join(self.site.seed_urls()) + "\n")
        command = [
            self.config.bench_python,
            "-m",
            "bench.crawl",
            "--peer",
            str(contender.peer),
            "--seeds",
            str(seeds),
            "--concurrency",
            str(self.config.tuned) if contender.tuned else "default",
            "--workdir",
            str(scratch),
        ]
        environment = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        done = subprocess.run(
            command,
            cwd=REPO_ROOT,
            env=environment,
            capture_output=True,
            text=True,
            timeout=self.config.max_wait_s,
            check=False,
        )
        run.e2e_s = round(time.monotonic() - started, 3)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        (self.work / f"{contender.key}-{run.round}.stderr").write_text(done.stderr)
        lines = done.stdout.strip().splitlines()
        if done.returncode != 0 or not lines:
            raise RuntimeError(f"exit {done.returncode}: {done.stderr.strip()[-400:]}")
        summary = json.loads(lines[-1])
        run.rows, run.failed = summary["pages"], summary["failed"]
        run.elapsed_s = summary["elapsed_s"]
        run.cpu_s = summary["cpu_s"]
        process_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        run.note = "; ".join([f"process CPU {process_cpu:.2f} s with start-up", *summary["notes"]])
        run.sample = summary["sample"]
        run.versions = summary["versions"]
        run.peak_rss_mb = summary.get("peak_rss_mb")
        shutil.rmtree(scratch, ignore_errors=True)

    def _wait(self, check: Callable[[], Any], every_s: float = 0.2) -> Any:
        """Poll lightly: the emulator that answers shares this process with the site."""
        deadline = time.monotonic() + self.config.max_wait_s
        while time.monotonic() < deadline:
            found = check()
            if found is not None:
                return found
            time.sleep(every_s)
        raise TimeoutError(f"nothing within {self.config.max_wait_s:.0f} s")


def _mean_in_flight(site: SiteProcess) -> float:
    requests = site.requests()
    if not requests:
        return 0.0
    span = max(r.ended for r in requests) - min(r.started for r in requests)
    return round(sum(r.ended - r.started for r in requests) / span, 2) if span > 0 else 0.0


def _sample(rows: list[dict[str, Any]], url: str) -> dict[str, Any] | None:
    for row in rows:
        if row.get("url") == url:
            return {
                "title": row.get("title"),
                "description": row.get("description"),
                "h1": row.get("h1"),
                "links": row.get("links_count"),
            }
    return None


def _line(run: CrawlRun, contender: Contender) -> str:
    chains = f" ({run.chains} chain{'s' * (run.chains != 1)} ran)" if run.chains else ""
    load = (run.contention or {}).get("mean_runnable")
    return (
        f"  round {run.round + 1} {contender.label:18} {run.pages_per_s:7.1f} pages/s over "
        f"{run.elapsed_s:6.2f} s  {_ms(run.cpu_ms_per_page)} CPU ms/page  found {run.found} "
        f"fetches {run.fetches}{chains}  other runnable {load}"
        + (f"  {run.missing} missing {run.extra} extra" if run.missing or run.extra else "")
        + (f"  ERROR {run.error}" if run.error else "")
    )


def _ms(value: float | None) -> str:
    return f"{value:6.2f}" if value is not None else "   n/a"


# --- figures -----------------------------------------------------------------------------


def figures(
    config: CrawlBenchConfig, runs: list[CrawlRun], skipped: dict[str, str]
) -> dict[str, Any]:
    table = {
        key: _cell([r for r in runs if r.contender == key], skipped.get(key))
        for key in config.contenders
    }
    ratios = {
        name: _ratio(table, ours, peer, TARGETS.get(name))
        for name, (ours, peer) in (RATIOS | CONTEXT_RATIOS).items()
    }
    return {
        **{name: ratios[name]["value"] for name in RATIOS},
        "config": asdict(config),
        "contenders": {key: BY_KEY[key].label for key in config.contenders},
        "skipped": skipped,
        "table": table,
        "ratios": ratios,
        "versions": {k: v for r in runs for k, v in r.versions.items()},
        "runs": [asdict(r) for r in runs],
    }


def _cell(runs: list[CrawlRun], skipped: str | None) -> dict[str, Any]:
    if skipped:
        return {"skipped": skipped}
    ok = [r for r in runs if not r.error]
    errors = [r.error for r in runs if r.error]
    if not ok:
        return {"missing": "no run finished cleanly", "errors": errors}
    rates = [r.pages_per_s for r in ok]
    cpu = [r.cpu_ms_per_page for r in ok if r.cpu_ms_per_page is not None]
    chains = sorted({r.chains for r in ok if r.chains is not None})
    return {
        "rounds": len(ok),
        "errors": errors,
        "pages_per_s": rates,
        "pages_per_s_min": min(rates),
        "pages_per_s_median": round(statistics.median(rates), 2),
        "elapsed_s_median": round(statistics.median(r.elapsed_s for r in ok), 3),
        "e2e_s_median": round(statistics.median(r.e2e_s for r in ok), 3),
        "cpu_ms_per_page_min": min(cpu) if cpu else None,
        "cpu_ms_per_page_median": round(statistics.median(cpu), 3) if cpu else None,
        "bench_cpu_s_median": round(statistics.median(r.bench_cpu_s for r in ok), 2),
        "found": sorted({r.found for r in ok}),
        "fetches_per_page_median": round(
            statistics.median(r.fetches / r.found for r in ok if r.found), 3
        ),
        "rows": sorted({r.rows for r in ok}),
        "short_of_oracle": sum(1 for r in ok if r.missing or r.extra),
        "differences": sorted({d for r in ok for d in r.differences})[:10],
        "failed": sum(r.failed for r in ok),
        "max_per_host": max(r.max_per_host for r in ok),
        "mean_in_flight_median": round(statistics.median(r.mean_in_flight for r in ok), 2),
        "peak_rss_mb_max": max((r.peak_rss_mb for r in ok if r.peak_rss_mb), default=None),
        "chains_asked": ok[0].chains_asked or None,
        "chains_ran": chains or None,
        "notes": sorted({r.note for r in ok if r.note and r.chains_asked and "chain" in r.note}),
    }


def _ratio(
    table: dict[str, dict[str, Any]], ours: str, peer: str, target: float | None
) -> dict[str, Any]:
    mine, theirs = table.get(ours) or {}, table.get(peer) or {}
    a, b = mine.get("pages_per_s_median"), theirs.get("pages_per_s_median")
    low = mine.get("pages_per_s_min"), theirs.get("pages_per_s_min")
    return {
        "value": round(a / b, 3) if a and b else None,
        "of_minimums": round(low[0] / low[1], 3) if all(low) else None,
        "target": target,
        "ours": ours,
        "against": peer,
        "chains_asked": mine.get("chains_asked"),
        "chains_ran": mine.get("chains_ran"),
    }


def memory(timeout_s: float = 300.0) -> dict[str, Any]:
    """Run `bench.crawl_memory` (it rewrites its file); read its keys back either way."""
    status = "read back"
    try:
        done = subprocess.run(
            [sys.executable, "-m", "bench.crawl_memory"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        status = "ok" if done.returncode == 0 else f"exit {done.returncode}: {done.stderr[-300:]}"
    except subprocess.TimeoutExpired:
        status = f"timed out after {timeout_s:.0f} s; the last file read back"
    return {"status": status, **read_memory()}


def read_memory() -> dict[str, Any]:
    try:
        data = json.loads(MEMORY_FILE.read_text())
    except (OSError, ValueError):
        return {"crawl_peak_rss_mb_100k": None, "crawl_peak_rss_mb_1m": None}
    keys = ("crawl_peak_rss_mb_100k", "crawl_peak_rss_mb_1m")
    return {key: data.get(key) for key in keys} | {"memory_commit": data.get("commit")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.crawl", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="12 pages a host, 1 round")
    parser.add_argument("--bench-python", default=str(BENCH_PYTHON))
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--pages-per-host", type=int)
    parser.add_argument("--only", nargs="+", choices=list(BY_KEY))
    parser.add_argument("--workdir", type=Path, help="keep the containers' log here")
    parser.add_argument("--out", type=Path, default=RESULTS_FILE)
    parser.add_argument(
        "--tree", default="HEAD", help="the commit the containers run, or 'worktree'"
    )
    parser.add_argument("--peer", choices=["crawlee", "scrapy"], help=argparse.SUPPRESS)
    parser.add_argument("--seeds", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", default="default", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.peer:
        return peer_main(args)
    config = replace(QUICK if args.quick else FULL, bench_python=args.bench_python)
    if args.rounds:
        config = replace(config, rounds=args.rounds)
    if args.pages_per_host:
        config = replace(config, pages_per_host=args.pages_per_host)
    if args.only:
        config = replace(config, contenders=tuple(args.only))
    config = replace(config, tree=args.tree)
    found = run(config, args.workdir, quick=args.quick, say=_stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(found, indent=2, default=str) + "\n")
    for key in (*RATIOS, "crawl_peak_rss_mb_100k", "crawl_peak_rss_mb_1m"):
        _stderr(f"{key}: {found.get(key)}")
    _stderr(f"wrote {args.out}")
    return 0


def run(
    config: CrawlBenchConfig,
    workdir: Path | None = None,
    *,
    quick: bool = False,
    contention: Contention | None = None,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """The whole bench as run_all and main run it: measured, the memory keys, the facts."""
    from bench.run_all import runtime_tree  # run_all imports this module
    from bench.sampler import Contention, machine_facts

    started = time.monotonic()
    with ExitStack() as stack:
        if contention is None:
            contention = stack.enter_context(Contention())
        contention.label = "crawl"
        mark = len(contention.samples)
        found = measure(config, workdir, contention, say=say)
        other = contention.since(mark)
    rss = memory() if config.memory_bench else {"status": "not re-run", **read_memory()}
    found |= {key: rss.pop(key) for key in ("crawl_peak_rss_mb_100k", "crawl_peak_rss_mb_1m")}
    found["memory"] = rss
    found["machine"] = machine_facts() | {"other_runnable_processes": {"crawl": other}}
    found["runtime"] = runtime_tree()
    found["quick"] = quick
    found["seconds"] = round(time.monotonic() - started, 1)
    return found


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --- the Crawlee peer (runs in .venv-bench) ----------------------------------------------


def peer_main(args: argparse.Namespace) -> int:
    seeds = [line.strip() for line in args.seeds.read_text().splitlines() if line.strip()]
    if args.peer == "scrapy":
        summary = Summary("Scrapy (a spider following in-scope links)", args.concurrency)
        summary.versions = {name: version(name) for name in ("scrapy", "parsel", "twisted")}
        _scrapy(seeds, args.concurrency, summary)
    else:
        if args.workdir is not None:
            os.environ.setdefault("CRAWLEE_STORAGE_DIR", str(args.workdir / "crawlee-storage"))
        summary = Summary("Crawlee (ParselCrawler, enqueue_links)", args.concurrency)
        summary.versions = {name: version(name) for name in ("crawlee", "parsel", "impit")}
        asyncio.run(_crawlee(seeds, args.concurrency, summary))
    summary.emit()
    return 0


def _scope(seeds: list[str]) -> re.Pattern[str]:
    """Exactly the seeds' origins (scheme, host and port)."""
    origins = sorted({re.escape(seed.split("/", 3)[2]) for seed in seeds})
    return re.compile(rf"^https?://(?:{'|'.join(origins)})(?:[/?#]|$)", re.IGNORECASE)


def _row(url: str, selector: Any) -> dict[str, Any]:
    """The fields every contender extracts, with parsel (Crawlee's and Scrapy's selector)."""
    return {
        "url": url,
        "title": squash(selector.css("title::text").get()),
        "description": squash(selector.css('meta[name="description"]::attr(content)').get()),
        "h1": squash(" ".join(selector.css("h1 ::text").getall())),
        "links": absolute_links(url, selector.css("a::attr(href)").getall()),
    }


def _count(summary: Summary, row: dict[str, Any], sample_url: str) -> None:
    summary.count(row)
    if row["url"] == sample_url:
        summary.sample = {k: row[k] for k in ("title", "description", "h1")} | {
            "links": len(row["links"])
        }


def _scrapy(seeds: list[str], concurrency: str, summary: Summary) -> None:
    """Scrapy at its defaults (16 requests, 8 per domain, no delay) but ROBOTSTXT_OBEY on,
    following every in-scope link of a page; its dupe filter drops URLs seen before."""
    import scrapy
    from scrapy.crawler import CrawlerProcess

    scope = _scope(seeds)
    sample_url = seeds[0].rstrip("/") + "/p/0"

    class Site(scrapy.Spider):  # type: ignore[misc]
        name = "site"
        start_urls = seeds

        def parse(self, response: Any, **kwargs: Any) -> Iterator[Any]:
            row = _row(response.url, response)
            _count(summary, row, sample_url)
            yield row
            for link in row["links"]:
                if scope.match(link):
                    yield response.follow(link, callback=self.parse)

    settings: dict[str, Any] = {"LOG_LEVEL": "INFO", "ROBOTSTXT_OBEY": True}
    if concurrency != "default":
        settings["CONCURRENT_REQUESTS"] = int(concurrency)
    process = CrawlerProcess(settings=settings)
    clock = Clock()
    clock.start()
    process.crawl(Site)
    process.start()
    clock.stop(summary)


async def _crawlee(seeds: list[str], concurrency: str, summary: Summary) -> None:
    """ParselCrawler over the seeds' origins: robots.txt obeyed, every in-scope link queued."""
    from crawlee import ConcurrencySettings
    from crawlee.crawlers import ParselCrawler, ParselCrawlingContext

    settings = None
    if concurrency != "default":
        level = int(concurrency)
        settings = ConcurrencySettings(
            min_concurrency=level, desired_concurrency=level, max_concurrency=level
        )
    scope = _scope(seeds)
    options: dict[str, Any] = {"respect_robots_txt_file": True}
    if settings is not None:
        options["concurrency_settings"] = settings
    crawler = ParselCrawler(**options)
    sample_url = seeds[0].rstrip("/") + "/p/0"

    @crawler.router.default_handler
    async def page(context: ParselCrawlingContext) -> None:
        row = _row(context.request.loaded_url or context.request.url, context.selector)
        await context.enqueue_links(strategy="all", include=[scope])
        await context.push_data(row)
        _count(summary, row, sample_url)

    clock = Clock()
    clock.start()
    statistics = await crawler.run(seeds)
    clock.stop(summary)
    failed = int(statistics.requests_failed)
    summary.pages += failed
    summary.failed += failed
    busy = getattr(statistics, "request_total_duration", None)
    if busy is not None and summary.elapsed_s > 0:
        mean = busy.total_seconds() / summary.elapsed_s
        summary.notes.append(f"Crawlee's own mean requests in flight {mean:.2f}")


if __name__ == "__main__":
    sys.exit(main())
