"""Baton against other crawlers on the same pages (issue 15): pages/s and CPU per page.

    python -m bench.versus [--quick] [--bench-python .venv-bench/bin/python]

Two origins, each the sample site on 16 loopback hosts (`bench.origins`; DESIGN.md,
"Benchmark fairness": per-host politeness must not decide a latency benchmark) with
80 KB pages: one delays every page by 100-300 ms (evenly drawn, seeded per path and
hit, and the hits are reset before every run, so every contender sees the same
delays), the other answers at once. On each, in every round, every contender crawls
the whole URL list once, one at a time; the order rotates from round to round, and
the origins alternate, so drift in the machine's load spreads over all of them.
Each cell is reported as the minimum and the median over the rounds.

The contenders (`CONTENDERS`, one entry each):

- **baton**, the real worker as it runs on Lambda: the list uploaded under `tasks/`
  of the embedded stack (S3 emulator and local Lambda runtime), the chain followed to
  its final checkpoint; a 900 s function timeout so legs are as long as on AWS, 1,769
  MB (one vCPU's share, what each peer process gets here), `BATON_ALLOW_NETS`
  127.0.0.0/8, and `BATON_CONCURRENCY` unset (its default: the autoscaler,
  `worker.autoscale`) or 64;
- **Crawlee for Python** (ParselCrawler) and **Scrapy**, at their defaults and at 64;
- a **plain requests** loop and **aiohttp**, both with selectolax, at 64.

All extract title, description, h1 and the page's absolute links; robots.txt is read
by none. The peers run as subprocesses of their own; all but the plain loop in
`.venv-bench` (made by `make bench`), and a peer whose interpreter is missing is
skipped and said so. Pages/s is pages over the working time: for baton the run's
first claim to its final checkpoint, for a peer the span of its crawl call. CPU per
page is the process's CPU time (user + system, every thread, start-up included) over
its pages: for baton, its containers; the origin's and the stack's own work are in
other processes and not counted for anyone.

A third origin throttles: one host that answers 429 (Retry-After 1 s) to a request
arriving while 20 are being served. Baton runs there at its default, at 64, and at 64
with `BATON_PER_HOST_CONCURRENCY` 64 (`THROTTLE_ONLY`: its per-host cap of 8 would
otherwise keep it under the origin's limit, and the per-host backoff would never be
asked to act). The `"concurrency"` field of the `"batch"` line each commit logs (the
autoscaler's level) is kept for every baton run, to show the level over time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from bench import throughput
from bench.origins import Origin, OriginConfig
from bench.sampler import Contention
from devstack.lambda_runtime import FunctionConfig

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
BENCH_PYTHON = REPO_ROOT / ".venv-bench" / "bin" / "python"
PROJECT = "project"
BENCH = "bench"


@dataclass(frozen=True)
class Contender:
    key: str
    label: str
    peer: str | None
    """`bench.peers.<peer>`; None for baton itself."""
    tuned: bool
    """At `VersusConfig.tuned` (64), else at its default."""
    venv: str = BENCH
    environment: tuple[tuple[str, str], ...] = ()
    """Baton: more of the function's environment (BATON_* settings)."""


CONTENDERS = (
    Contender("baton_default", "baton default", None, tuned=False),
    Contender("baton_64", "baton 64", None, tuned=True),
    Contender("crawlee_default", "Crawlee default", "crawlee_parsel", tuned=False),
    Contender("crawlee_64", "Crawlee 64", "crawlee_parsel", tuned=True),
    Contender("scrapy_default", "Scrapy default", "scrapy_spider", tuned=False),
    Contender("scrapy_64", "Scrapy 64", "scrapy_spider", tuned=True),
    Contender("plain_64", "plain requests 64", "plain_requests", tuned=True, venv=PROJECT),
    Contender("aiohttp_64", "aiohttp 64", "aiohttp_loop", tuned=True),
)
THROTTLE_ONLY = (
    Contender(
        "baton_64_host_64",
        "baton 64, 64 per host",
        None,
        tuned=True,
        environment=(("BATON_PER_HOST_CONCURRENCY", "64"),),
    ),
)
"""Only on the throttling origin: per-host politeness (8) lifted, so the host's 429s, and
the per-host backoff that answers them, are exercised."""
BY_KEY = {c.key: c for c in CONTENDERS + THROTTLE_ONLY}
RATIOS = {
    "latency_vs_crawlee_default": ("latency", "crawlee_default", 2.0),
    "latency_vs_scrapy_default": ("latency", "scrapy_default", 2.0),
    "latency_vs_aiohttp_64": ("latency", "aiohttp_64", 0.8),
    "fast_vs_aiohttp_64": ("fast", "aiohttp_64", 0.7),
}
"""Key: (origin, the peer baton default is divided by, the issue's target)."""


@dataclass(frozen=True)
class VersusConfig:
    pages: int = 2000
    rounds: int = 3
    hosts: int = 16
    page_bytes: tuple[int, int] = (80_000, 80_000)
    latency_ms: tuple[float, float] = (100.0, 300.0)
    tuned: int = 64
    contenders: tuple[str, ...] = tuple(c.key for c in CONTENDERS)
    throttle_pages: int = 800
    throttle_above: int = 20
    throttle_contenders: tuple[str, ...] = ("baton_default", "baton_64", "baton_64_host_64")
    function_timeout_s: float = 900.0
    memory_mb: int = 1769
    bench_python: str = str(BENCH_PYTHON)
    max_wait_s: float = 900.0

    def origins(self) -> dict[str, OriginConfig]:
        common = {"hosts": self.hosts, "page_bytes": self.page_bytes}
        return {
            "latency": OriginConfig(
                "latency", self.pages, net=1, latency_ms=self.latency_ms, **common
            ),
            "fast": OriginConfig("fast", self.pages, net=2, latency_ms=(0.0, 0.0), **common),
        }

    def throttling(self) -> OriginConfig:
        return OriginConfig(
            "throttle",
            self.throttle_pages,
            net=3,
            hosts=1,
            page_bytes=self.page_bytes,
            latency_ms=self.latency_ms,
            max_in_flight=self.throttle_above,
        )


FULL = VersusConfig()
QUICK = VersusConfig(pages=200, rounds=2, throttle_pages=200)


@dataclass(frozen=True)
class BatonSetting:
    """How baton's function is deployed for one run (recorded with the run)."""

    concurrency: int | None
    """BATON_CONCURRENCY; None leaves it unset (the worker's default: the autoscaler)."""
    timeout_s: float
    memory_mb: int
    extra: tuple[tuple[str, str], ...] = ()

    def function(self, bucket: str) -> FunctionConfig:
        environment = {
            "BATON_BUCKET": bucket,
            "BATON_ALLOW_NETS": "127.0.0.0/8",
            "BATON_LOG_FORMAT": "json",
        }
        if self.concurrency is not None:
            environment["BATON_CONCURRENCY"] = str(self.concurrency)
        environment.update(self.extra)
        return FunctionConfig(
            name=throughput.FUNCTION,
            timeout_s=self.timeout_s,
            memory_mb=self.memory_mb,
            environment=environment,
            max_retries=2,
            retry_delay_s=0.5,
            recursive_loop="Allow",
        )


@dataclass
class Run:
    """One contender's crawl of one origin."""

    origin: str
    contender: str
    round: int
    pages: int = 0
    ok: int = 0
    failed: int = 0
    elapsed_s: float = 0.0
    pages_per_s: float = 0.0
    cpu_s: float = 0.0
    cpu_ms_per_page: float | None = None
    crawl_cpu_ms_per_page: float | None = None
    """Start-up left out: a peer's CPU over its crawl call only; baton's CPU less, for each
    container it started, a 1-page run's CPU per container (`baton_startup`)."""
    e2e_s: float = 0.0
    links: int = 0
    sample: dict[str, Any] | None = None
    origin_requests: int = 0
    throttled: int = 0
    """Requests the origin answered 429 because too many were in flight."""
    levels: list[list[Any]] = field(default_factory=list)
    """Baton: per commit [seconds from the run's start to the commit, the concurrency level
    logged with it (None if the worker logs none), rows committed, failed rows, the CPU
    use logged with it (None if none)]."""
    legs: int | None = None
    cold_starts: int = 0
    contention: dict[str, float] | None = None
    versions: dict[str, str] = field(default_factory=dict)
    error: str | None = None


def measure(
    config: VersusConfig,
    workdir: Path | None = None,
    contention: Contention | None = None,
    say: Any = print,
) -> dict[str, Any]:
    """Every round over both origins, then the throttling origin; returns the figures."""
    with tempfile.TemporaryDirectory(prefix="baton-versus-") as tmp:
        work = workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        chosen = [BY_KEY[key] for key in config.contenders]
        skipped = {c.key: why for c in chosen if (why := _unavailable(c, config))}
        for key, why in skipped.items():
            say(f"  skipping {BY_KEY[key].label}: {why}")
        running = [c for c in chosen if c.key not in skipped]
        context = _Context(config, work, contention, say)
        runs: list[Run] = []
        origins = config.origins()
        startup: dict[str, Any] | None = None
        with Origin(origins["latency"]) as latency, Origin(origins["fast"]) as fast:
            if any(c.peer is None for c in running):
                startup = _startup(fast, config, work)
                say(
                    f"  baton's fixed cost per container: {startup['cpu_s']} CPU s "
                    f"(a 1-page run: {startup['run_cpu_s']} s over "
                    f"{startup['cold_starts']} containers)"
                )
                context = replace(context, startup_cpu_s=startup["cpu_s"])
            for round_ in range(config.rounds):
                for origin in (latency, fast) if round_ % 2 == 0 else (fast, latency):
                    shift = round_ % max(1, len(running))
                    for contender in running[shift:] + running[:shift]:
                        runs.append(_run(contender, origin, round_, context))
        throttled: list[Run] = []
        throttlers = [BY_KEY[k] for k in config.throttle_contenders if k not in skipped]
        if throttlers:
            with Origin(config.throttling()) as throttle:
                for contender in throttlers:
                    throttled.append(_run(contender, throttle, 0, context))
    return figures(config, runs, throttled, skipped) | {"baton_startup": startup}


def _unavailable(contender: Contender, config: VersusConfig) -> str | None:
    if contender.peer is None or contender.venv == PROJECT:
        return None
    if not Path(config.bench_python).exists():
        return f"{config.bench_python} is absent (make bench-setup builds it)"
    return None


@dataclass(frozen=True)
class _Context:
    config: VersusConfig
    work: Path
    contention: Contention | None
    say: Any
    startup_cpu_s: float | None = None
    """Baton's fixed CPU per container: a 1-page run's (a container's start, the run's
    ends) over the containers it started (the start's and leg 0's, two)."""


def _run(contender: Contender, origin: Origin, round_: int, context: _Context) -> Run:
    contention = context.contention
    origin.reset()
    mark = len(contention.samples) if contention is not None else 0
    run = Run(origin.config.name, contender.key, round_)
    try:
        if contender.peer is None:
            _baton(run, contender, origin, context)
        else:
            _peer(run, contender, origin, context.config, context.work)
    except (OSError, RuntimeError, TimeoutError, ValueError, subprocess.SubprocessError) as exc:
        run.error = f"{type(exc).__name__}: {exc}"[:500]
    stats = origin.stats()
    run.origin_requests, run.throttled = stats["requests"], stats["throttled"]
    if contention is not None:
        run.contention = contention.since(mark)
    level = _level_note(run.levels)
    context.say(
        f"  round {round_ + 1} {origin.config.name:8} {contender.label:18} "
        f"{run.pages_per_s:8.1f} pages/s  {_ms(run.cpu_ms_per_page)} CPU ms/page  "
        f"{run.failed} failed{level}" + (f"  ERROR {run.error}" if run.error else "")
    )
    return run


def _startup(origin: Origin, config: VersusConfig, work: Path) -> dict[str, Any]:
    """Baton's fixed cost: a run of one page (the container's start, the run's two ends)."""
    origin.reset()
    run = Run(origin.config.name, "baton_default", -1)
    _baton(run, BY_KEY["baton_default"], origin, _Context(config, work, None, print), pages=1)
    per_container = round(run.cpu_s / max(1, run.cold_starts), 3)
    return {
        "cpu_s": per_container,
        "run_cpu_s": run.cpu_s,
        "cold_starts": run.cold_starts,
        "e2e_s": run.e2e_s,
        "error": run.error,
    }


def _baton(
    run: Run, contender: Contender, origin: Origin, context: _Context, pages: int | None = None
) -> None:
    config, work = context.config, context.work
    setting = BatonSetting(
        concurrency=config.tuned if contender.tuned else None,
        timeout_s=config.function_timeout_s,
        memory_mb=config.memory_mb,
        extra=contender.environment,
    )
    urls = origin.urls()[:pages]
    body = "".join(json.dumps(url) + "\n" for url in urls).encode()
    chain = throughput.run_chain(
        body,
        len(urls),
        setting.function,
        work,
        max_wait_s=config.max_wait_s,
        config=setting,
    )
    processed = int(chain.summary.get("processed") or 0)
    run.pages = processed
    run.ok = int(chain.summary.get("ok") or 0)
    run.failed = int(chain.summary.get("failed") or 0)
    run.elapsed_s = round(chain.duration_s, 3)
    run.pages_per_s = round(processed / chain.duration_s, 2) if chain.duration_s > 0 else 0.0
    run.cpu_s = chain.container_cpu_s
    run.cpu_ms_per_page = round(chain.container_cpu_s * 1000 / processed, 3) if processed else None
    run.cold_starts = int(chain.stats.get("cold_starts") or 1)
    if context.startup_cpu_s is not None and processed:
        fixed = context.startup_cpu_s * run.cold_starts
        run.crawl_cpu_ms_per_page = round((chain.container_cpu_s - fixed) * 1000 / processed, 3)
    run.e2e_s = round(chain.finished_s - chain.upload_s, 3)
    run.links = chain.links
    run.sample = chain.sample
    run.legs = len(chain.legs)
    run.levels = [
        [
            round(b.logged_s - chain.started_s, 2),
            b.concurrency,
            b.tasks if b.tasks is not None else b.end - b.start + 1,
            b.failed,
            b.cpu_use,
        ]
        for b in sorted(chain.batches, key=lambda b: b.logged_s)
    ]
    if chain.status != "done" or chain.missing_rows or chain.duplicate_rows:
        run.error = (
            f"run {chain.status}: {chain.missing_rows} missing, {chain.duplicate_rows} duplicates"
        )


def _peer(run: Run, contender: Contender, origin: Origin, config: VersusConfig, work: Path) -> None:
    python = sys.executable if contender.venv == PROJECT else config.bench_python
    urls = work / f"urls-{origin.config.name}.txt"
    urls.write_text("\n".join(origin.urls()) + "\n")
    scratch = Path(tempfile.mkdtemp(prefix=f"{contender.key}-", dir=work))
    command = [
        python,
        "-m",
        f"bench.peers.{contender.peer}",
        "--urls",
        str(urls),
        "--concurrency",
        str(config.tuned) if contender.tuned else "default",
        "--out",
        str(scratch / "rows.jsonl"),
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
        timeout=config.max_wait_s,
        check=False,
    )
    run.e2e_s = round(time.monotonic() - started, 3)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    (work / f"{contender.key}-{origin.config.name}-{run.round}.stderr").write_text(done.stderr)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"exit {done.returncode}: {done.stderr.strip()[-400:]}")
    summary = json.loads(lines[-1])
    run.pages, run.ok, run.failed = summary["pages"], summary["ok"], summary["failed"]
    run.elapsed_s = summary["elapsed_s"]
    run.pages_per_s = round(run.pages / run.elapsed_s, 2) if run.elapsed_s > 0 else 0.0
    run.cpu_s = round((after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime), 3)
    run.cpu_ms_per_page = round(run.cpu_s * 1000 / run.pages, 3) if run.pages else None
    run.crawl_cpu_ms_per_page = round(summary["cpu_s"] * 1000 / run.pages, 3) if run.pages else None
    run.links = summary["links"]
    run.sample = summary["sample"]
    run.versions = summary["versions"]
    shutil.rmtree(scratch, ignore_errors=True)


# --- figures ---------------------------------------------------------------------------


def figures(
    config: VersusConfig, runs: list[Run], throttled: list[Run], skipped: dict[str, str]
) -> dict[str, Any]:
    """The table (min and median per cell), the ratio keys, the checks, every run."""
    table: dict[str, dict[str, Any]] = {}
    for origin in config.origins():
        table[origin] = {}
        for key in config.contenders:
            mine = [r for r in runs if r.origin == origin and r.contender == key and not r.error]
            table[origin][key] = _cell(mine, skipped.get(key))
    ratios = {
        name: _ratio(table, origin, peer, target) for name, (origin, peer, target) in RATIOS.items()
    }
    cpu = (table.get("latency") or {}).get("baton_default") or {}
    plain = (table.get("latency") or {}).get("plain_64") or {}
    return {
        **{name: ratio["value"] for name, ratio in ratios.items()},
        "cpu_ms_per_page": cpu.get("cpu_ms_per_page_median"),
        "cpu_ms_per_page_plain_loop": plain.get("cpu_ms_per_page_median"),
        "config": asdict(config),
        "origins": {
            name: o.describe()
            for name, o in (config.origins() | {"throttle": config.throttling()}).items()
        },
        "contenders": {key: BY_KEY[key].label for key in config.contenders},
        "throttle_labels": {key: BY_KEY[key].label for key in config.throttle_contenders},
        "skipped": skipped,
        "table": table,
        "ratios": ratios,
        "fields_agree": _fields_agree(runs),
        "versions": _versions(runs),
        "throttle": [asdict(r) for r in throttled],
        "runs": [asdict(r) for r in runs],
    }


def _cell(runs: list[Run], skipped: str | None) -> dict[str, Any]:
    if skipped:
        return {"skipped": skipped}
    if not runs:
        return {"missing": "no run finished without an error"}
    rates = [r.pages_per_s for r in runs]
    cpu = [r.cpu_ms_per_page for r in runs if r.cpu_ms_per_page is not None]
    crawl = [r.crawl_cpu_ms_per_page for r in runs if r.crawl_cpu_ms_per_page is not None]
    return {
        "rounds": len(runs),
        "pages_per_s_min": min(rates),
        "pages_per_s_median": round(statistics.median(rates), 2),
        "pages_per_s": rates,
        "cpu_ms_per_page_min": min(cpu) if cpu else None,
        "cpu_ms_per_page_median": round(statistics.median(cpu), 3) if cpu else None,
        "crawl_cpu_ms_per_page_median": round(statistics.median(crawl), 3) if crawl else None,
        "failed": sum(r.failed for r in runs),
    }


def _ratio(
    table: dict[str, dict[str, Any]], origin: str, peer: str, target: float
) -> dict[str, Any]:
    ours = (table.get(origin) or {}).get("baton_default") or {}
    theirs = (table.get(origin) or {}).get(peer) or {}
    a, b = ours.get("pages_per_s_median"), theirs.get("pages_per_s_median")
    value = round(a / b, 3) if a and b else None
    low = ours.get("pages_per_s_min"), theirs.get("pages_per_s_min")
    return {
        "value": value,
        "of_minimums": round(low[0] / low[1], 3) if all(low) else None,
        "target": target,
        "origin": origin,
        "against": peer,
    }


def _fields_agree(runs: list[Run]) -> dict[str, Any]:
    """Did every contender find the same page 0 and the same number of links per origin?"""
    out: dict[str, Any] = {}
    for origin in dict.fromkeys(r.origin for r in runs):
        mine = [r for r in runs if r.origin == origin and not r.error and not r.failed]
        links = {r.contender: r.links for r in mine}
        samples = {json.dumps(r.sample, sort_keys=True) for r in mine}
        out[origin] = {
            "agree": len(set(links.values())) <= 1 and len(samples) <= 1,
            "links": links,
            "samples": sorted(samples),
        }
    return out


def _versions(runs: list[Run]) -> dict[str, str]:
    found: dict[str, str] = {}
    for run in runs:
        found |= run.versions
    return dict(sorted(found.items()))


def _level_note(levels: list[list[Any]]) -> str:
    seen = [lv[1] for lv in levels if lv[1] is not None]
    return f"  level {min(seen)}-{max(seen)}" if seen else ""


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _ms(value: float | None) -> str:
    return f"{value:6.2f}" if value is not None else "   n/a"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.versus", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--bench-python", default=str(BENCH_PYTHON))
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--pages", type=int)
    parser.add_argument("--only", nargs="+", choices=[c.key for c in CONTENDERS])
    args = parser.parse_args(argv)
    config = replace(QUICK if args.quick else FULL, bench_python=args.bench_python)
    if args.rounds:
        config = replace(config, rounds=args.rounds)
    if args.pages:
        config = replace(config, pages=args.pages)
    if args.only:
        config = replace(config, contenders=tuple(args.only), throttle_contenders=())
    with Contention() as contention:
        contention.label = "versus"
        found = measure(config, contention=contention, say=_stderr)
    json.dump({k: v for k, v in found.items() if k != "runs"}, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
