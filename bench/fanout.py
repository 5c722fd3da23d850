"""Fan-out: one list over C chains on the embedded stack; scaling, stragglers, cost.

    python -m bench.fanout [--quick]        writes bench/results/fanout.json

1. **Scaling.** One list of small pages on a latency-bound origin (`bench.origins`:
   16 loopback hosts, each page delayed 100-300 ms, drawn evenly, seeded per path
   and hit; hits reset before every run) is uploaded with `baton-chains` C = 1, 4,
   16, 64 (the upload's metadata, as `baton submit --chains C` does). DESIGN.md,
   "Benchmark fairness": every chain runs the **same fixed concurrency**
   (`BATON_CONCURRENCY`, 4), so the autoscaler does not decide it and the two
   shared cores do not stand in for what would be C machines on Lambda; short legs
   (10 s as the worker sees it, `BENCH_LEG_S` in bench/fanout_handler.py, with the
   production margin of 2 s) make chains hand off, as long runs do at 900 s, while the
   function's real timeout (60 s) never kills a container slow to start on the shared
   cores. The local Lambda runtime's concurrency limit (`FunctionConfig.
   max_concurrency`, 4 by default) is raised above the largest C, and the containers
   are warmed first, 4 at a time (a cold start is about 1.5 CPU s here, so 64 at
   once would measure the two cores, not the protocol; on Lambda each cold start has
   its own CPU). Wall time is from the upload to `summary.json` being readable.
   `fanout_efficiency_C` = (wall at C=1 / wall at C) / C, from the medians.
2. **Stragglers.** At C=16 the first chain's range points at a slow origin (4 hosts,
   1-1.5 s a page), the rest as above; the run is made with stealing on and off.
   Off is `bench/fanout_handler.py`, the function's handler in this bench: baton's
   own, with `Leg.take_a_stolen_range` declining for lists whose key says so.
   `straggler_wall_ratio` = wall without stealing / wall with (medians).
3. **Counts for the cost**: legs, invocations and S3 requests per task (what the S3
   emulator served, less the bench's own polling), priced in `bench.cost.fanout_cost`
   against Step Functions Distributed Map and Lambda durable functions.

Every C and both straggler runs are measured once per round; rounds alternate the
order (ascending, then descending), so drift in the machine's load spreads over all
of them; cells are min and median. Each run records the runnable threads outside the
bench (`bench.sampler.Contention`): the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.cost import fanout_cost
from bench.fanout_handler import NO_STEAL
from bench.origins import Origin, OriginConfig
from bench.sampler import Contention, machine_facts
from bench.throughput import S3Tally, _check_results
from devstack.lambda_runtime import FunctionConfig, log_record
from devstack.stack import EmbeddedStack
from worker.start import CHAINS_METADATA, ranges
from worker.store import RunStore

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_FILE = BENCH_DIR / "results" / "fanout.json"
FUNCTION = "baton-fanout"
HANDLER = "bench/fanout_handler.handler"
QUIET_EXITS = {"duplicate", "stale", "lost_cas", "already_finished"}
WARM_STEP = 4
"""Containers started at once while warming (each start is ~1.5 CPU s here, and the
local runtime gives a container's init 10 s)."""


@dataclass(frozen=True)
class FanoutConfig:
    tasks: int = 1200
    chains: tuple[int, ...] = (1, 4, 16, 64)
    rounds: int = 2
    concurrency: int = 4
    """BATON_CONCURRENCY: the same in every chain at every C."""
    hosts: int = 16
    page_bytes: tuple[int, int] = (2_000, 2_000)
    latency_ms: tuple[float, float] = (100.0, 300.0)
    leg_s: float = 10.0
    """Each leg's time as the worker sees it (`BENCH_LEG_S`, bench/fanout_handler.py): short,
    so chains hand off as long runs do at 900 s."""
    timeout_s: float = 60.0
    """The function's real timeout: long, so a slow cold start on the shared cores is not
    killed (and replaced by another cold start)."""
    margin_ms: int | None = None
    """BATON_MARGIN_MS; None keeps the production default (2 s)."""
    memory_mb: int = 1024
    straggler_chains: int = 16
    slow_hosts: int = 4
    slow_latency_ms: tuple[float, float] = (1000.0, 1500.0)
    warm: bool = True
    retry_delay_s: float = 6.0
    """The local runtime's wait before retrying a failed event: past the lease slack (5 s),
    as Lambda's (about a minute) is, so a retry of a leg killed at its timeout can claim."""
    sweep_s: float = 10.0
    """The stack's sweep tick, with BATON_STALL_AFTER_MS at twice it: the template ticks
    every minute (stall after 120 s); here a leg killed at its timeout under the shared
    cores would otherwise hold its run for minutes (its retry exits `already_finished`
    when the final CAS landed, and only the sweep writes the missing done marker)."""
    max_wait_s: float = 180.0
    """Per run: a run not done by then is recorded with its error and the bench goes on."""

    @property
    def max_concurrency(self) -> int:
        """The function's concurrency limit: the largest C, and room for hand-offs."""
        return max(*self.chains, self.straggler_chains) + 16

    def origins(self) -> tuple[OriginConfig, OriginConfig]:
        fast = OriginConfig(
            "fanout",
            self.tasks,
            net=4,
            hosts=self.hosts,
            page_bytes=self.page_bytes,
            latency_ms=self.latency_ms,
        )
        slow = OriginConfig(
            "fanout-slow",
            self.tasks,
            net=5,
            hosts=self.slow_hosts,
            page_bytes=self.page_bytes,
            latency_ms=self.slow_latency_ms,
        )
        return fast, slow

    def function(self, bucket: str) -> FunctionConfig:
        environment = {
            "BATON_BUCKET": bucket,
            "BATON_CONCURRENCY": str(self.concurrency),
            "BATON_ALLOW_NETS": "127.0.0.0/8",
            "BATON_LOG_FORMAT": "json",
            "BATON_STALL_AFTER_MS": str(int(self.sweep_s * 2000)),
            "BENCH_LEG_S": f"{self.leg_s:g}",
        }
        if self.margin_ms is not None:
            environment["BATON_MARGIN_MS"] = str(self.margin_ms)
        return FunctionConfig(
            name=FUNCTION,
            handler=HANDLER,
            timeout_s=self.timeout_s,
            memory_mb=self.memory_mb,
            environment=environment,
            max_concurrency=self.max_concurrency,
            max_retries=2,
            retry_delay_s=self.retry_delay_s,
            recursive_loop="Allow",
        )


FULL = FanoutConfig()
QUICK = FanoutConfig(tasks=320, chains=(1, 4, 16), rounds=2)
SMOKE = FanoutConfig(
    tasks=24,
    chains=(1, 2),
    rounds=1,
    straggler_chains=2,
    latency_ms=(20.0, 40.0),
    slow_latency_ms=(150.0, 200.0),
    hosts=4,
    slow_hosts=2,
    warm=False,
    leg_s=4.0,
    timeout_s=20.0,
    retry_delay_s=0.5,
    max_wait_s=60.0,
)


@dataclass
class FanRun:
    """One run: a list of `tasks` over `chains` chains, with or without stealing."""

    kind: str
    """`scaling` or `straggler`."""
    chains: int
    steal: bool
    round: int
    tasks: int
    run_id: str = ""
    status: str = ""
    wall_s: float = 0.0
    """Upload to summary.json readable (polled every 50 ms)."""
    run_s: float = 0.0
    """The summary's duration: the first claim to the last chain's end."""
    pages_per_s: float = 0.0
    processed: int = 0
    failed: int = 0
    legs: int = 0
    """Leg lines of the run whose exit was not quiet (a duplicate or stale delivery)."""
    quiet_legs: int = 0
    ranges: int = 0
    """Chains plus ranges stolen off them (the summary's `ranges`)."""
    steals: int = 0
    invocations: int = 0
    """The run's own invocations: its start, every leg, any quiet one (from the log)."""
    all_invocations: int = 0
    """Every attempt the runtime ran meanwhile, the sweep's ticks included."""
    cold_starts: int = 0
    timeouts: int = 0
    """Invocations killed at the function's timeout (the sweep repaired their chains)."""
    s3_requests: dict[str, int] = field(default_factory=dict)
    chain_ends_s: list[float] = field(default_factory=list)
    chain0_leg_tasks: list[int] = field(default_factory=list)
    """Tasks each leg of chain 0000 did, in order (the straggler's chain)."""
    """When each range ended, seconds after the upload, in order."""
    container_cpu_s: float = 0.0
    host_cpu_s: float = 0.0
    """This process's CPU meanwhile: the S3 emulator, the Lambda API, the bench."""
    duplicate_rows: int = 0
    missing_rows: int = 0
    contention: dict[str, float] | None = None
    error: str | None = None

    def per_task(self) -> dict[str, float]:
        n = max(1, self.tasks)
        return {
            "legs": self.legs / n,
            "invocations": self.invocations / n,
            "s3_put_list": (self.s3_requests.get("put", 0) + self.s3_requests.get("list", 0)) / n,
            "s3_get_head": self.s3_requests.get("get", 0) / n,
        }


class Bench:
    """The origins and one warm embedded stack, shared by every run of the bench."""

    def __init__(self, config: FanoutConfig, work: Path, contention: Contention | None) -> None:
        self.config = config
        self.work = work
        self.contention = contention
        self.served = S3Tally()
        self.ours = S3Tally()
        self.bucket = f"baton-fanout-{time.time_ns() % 10**12}"
        self.log_path = work / "containers.log"
        self._sequence = 0

    @contextmanager
    def running(self) -> Iterator[Bench]:
        fast_cfg, slow_cfg = self.config.origins()
        with ExitStack() as stack:
            self.fast = stack.enter_context(Origin(fast_cfg))
            self.slow = stack.enter_context(Origin(slow_cfg))
            self.stack = stack.enter_context(
                EmbeddedStack(
                    self.config.function(self.bucket),
                    bucket=self.bucket,
                    log_file=self.log_path,
                    s3_fault_hook=self.served.count,
                    sweep_interval_s=self.config.sweep_s,
                )
            )
            self.s3 = self.stack.s3_client()
            stack.callback(self.s3.close)
            self.s3.meta.events.register("before-call.s3", self.ours.count_call)
            self.store = RunStore.over(self.s3, self.bucket, "runs/")
            yield self

    def warm(self, say: Callable[[str], None]) -> dict[str, Any]:
        """Start the containers the largest C needs, WARM_STEP at a time: runs of that many
        chains more each, 8 tasks a chain, whose legs overlap (idle containers are reused
        first, so each run starts WARM_STEP new ones)."""
        target = max(*self.config.chains, self.config.straggler_chains) + WARM_STEP
        started = time.monotonic()
        before = self.stack.runtime.stats(FUNCTION).cold_starts
        for chains in range(WARM_STEP, target + 1, WARM_STEP):
            urls = self.fast.urls()[: 8 * chains]
            self.run("warm", urls, chains, steal=True, round_=-1)
        containers = self.stack.runtime.stats(FUNCTION).cold_starts - before
        seconds = round(time.monotonic() - started, 1)
        say(f"  warmed {containers} containers in {seconds} s")
        return {"containers": containers, "seconds": seconds, "target": target}

    def run(self, kind: str, urls: list[str], chains: int, *, steal: bool, round_: int) -> FanRun:
        self._sequence += 1
        mark = "" if steal else NO_STEAL
        key = f"tasks/fanout-{kind}{mark}-{chains}-{self._sequence}.jsonl"
        run = FanRun(kind, chains, steal, round_, len(urls))
        self.fast.reset()
        self.slow.reset()
        body = "".join(json.dumps(url) + "\n" for url in urls).encode()
        sample = len(self.contention.samples) if self.contention is not None else 0
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        stats0 = self.stack.runtime.stats(FUNCTION)
        cpu0, host0 = _containers_cpu_s(), time.process_time()
        self.served.reset()
        self.ours.reset()
        try:
            upload = time.time()
            etag = self.s3.put_object(
                Bucket=self.bucket, Key=key, Body=body, Metadata={CHAINS_METADATA: str(chains)}
            )["ETag"]
            run_id = self._wait(lambda: next(iter(self.store.runs_for_source(key, etag)), None))
            run.run_id = run_id
            summary = self._wait(lambda: self.store.load_summary(run_id), every_s=0.05)
            run.wall_s = round(time.time() - upload, 3)
            self.stack.runtime.wait_idle(60)
            run.s3_requests = self.served.minus(self.ours)
            run.container_cpu_s = round(_containers_cpu_s() - cpu0, 3)
            run.host_cpu_s = round(time.process_time() - host0, 3)
            stats = self.stack.runtime.stats(FUNCTION)
            run.all_invocations = stats.invocations - stats0.invocations
            run.cold_starts = stats.cold_starts - stats0.cold_starts
            run.timeouts = stats.timeouts - stats0.timeouts
            run.status = str(summary["status"])
            run.processed = int(summary["processed"])
            run.failed = int(summary["failed"])
            run.run_s = float(summary["duration_s"])
            run.ranges = int(summary["ranges"])
            run.pages_per_s = round(run.processed / run.wall_s, 2) if run.wall_s else 0.0
            self._read_log(run, run_id, offset, upload)
            if kind != "warm":
                results = _check_results(self.store, run_id, len(urls))
                run.duplicate_rows, run.missing_rows = results.duplicates, results.missing
            if run.status != "done" or run.missing_rows or run.duplicate_rows:
                run.error = (
                    f"run {run.status}: {run.missing_rows} missing, {run.duplicate_rows} duplicates"
                )
        except (OSError, RuntimeError, TimeoutError, ValueError, KeyError) as exc:
            run.error = f"{type(exc).__name__}: {exc}"[:500]
        if self.contention is not None:
            run.contention = self.contention.since(sample)
        return run

    def _wait(self, check: Callable[[], Any], every_s: float = 0.1) -> Any:
        deadline = time.monotonic() + self.config.max_wait_s
        while time.monotonic() < deadline:
            found = check()
            if found is not None:
                return found
            time.sleep(every_s)
        raise TimeoutError(f"nothing within {self.config.max_wait_s:.0f} s")

    def _read_log(self, run: FanRun, run_id: str, offset: int, upload: float) -> None:
        with self.log_path.open("rb") as log:
            log.seek(offset)
            text = log.read().decode("utf-8", errors="replace")
        ends = []
        for raw in text.splitlines():
            _, line = log_record(raw)
            if line is None or line.get("run_id") != run_id:
                continue
            event = line.get("event")
            if event == "leg":
                if line.get("exit") in QUIET_EXITS:
                    run.quiet_legs += 1
                else:
                    run.legs += 1
                    if line.get("chain") == "0000":
                        run.chain0_leg_tasks.append(int(line.get("processed") or 0))
            elif event == "stole":
                run.steals += 1
            elif event == "chain_finished":
                ends.append(round(float(line["time"]) - upload, 3))
        run.chain_ends_s = sorted(ends)
        run.invocations = run.legs + run.quiet_legs + 1  # and the start


def _containers_cpu_s() -> float:
    """User + system CPU of this process's live Lambda containers (they outlive a run)."""
    me = str(os.getpid())
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if b"_container_main" not in (proc / "cmdline").read_bytes():
                continue
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if fields[1] == me:
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def measure(
    config: FanoutConfig,
    workdir: Path | None = None,
    contention: Contention | None = None,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Warm the stack, then every round: each C, then the straggler with and without stealing."""
    with tempfile.TemporaryDirectory(prefix="baton-fanout-") as tmp:
        work = workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        runs: list[FanRun] = []
        with Bench(config, work, contention).running() as bench:
            warm = bench.warm(say) if config.warm else None
            urls = bench.fast.urls()
            first, _ = ranges(0, config.tasks, config.straggler_chains)[0]
            slow_end = ranges(0, config.tasks, config.straggler_chains)[0][1]
            straggling = bench.slow.urls()[first:slow_end] + urls[slow_end:]
            for round_ in range(config.rounds):
                order = list(config.chains) if round_ % 2 == 0 else list(reversed(config.chains))
                for chains in order:
                    run = bench.run("scaling", urls, chains, steal=True, round_=round_)
                    runs.append(run)
                    say(_line(run))
                for steal in (True, False) if round_ % 2 == 0 else (False, True):
                    run = bench.run(
                        "straggler", straggling, config.straggler_chains, steal=steal, round_=round_
                    )
                    runs.append(run)
                    say(_line(run))
    return figures(config, runs, warm, slow_end - first)


def _line(run: FanRun) -> str:
    what = f"C={run.chains}" + ("" if run.kind == "scaling" else f" straggler steal={run.steal}")
    cpu = run.container_cpu_s + run.host_cpu_s
    load = (run.contention or {}).get("mean_runnable")
    return (
        f"  round {run.round + 1} {what:28} wall {run.wall_s:7.2f} s  {run.pages_per_s:7.1f} "
        f"pages/s  legs {run.legs:3}  steals {run.steals:3}  cold {run.cold_starts:2}  "
        f"timeouts {run.timeouts}  "
        f"CPU {cpu:5.1f} s  other runnable {load}" + (f"  ERROR {run.error}" if run.error else "")
    )


def _cell(runs: list[FanRun]) -> dict[str, Any]:
    ok = [r for r in runs if not r.error]
    if not ok:
        return {"missing": "no run finished cleanly"}
    walls = [r.wall_s for r in ok]
    median_run = sorted(ok, key=lambda r: r.wall_s)[(len(ok) - 1) // 2]
    per_task = [r.per_task() for r in ok]
    load = [r.contention["mean_runnable"] for r in ok if r.contention]
    cpu = [(r.container_cpu_s + r.host_cpu_s) for r in ok]
    return {
        "rounds": len(ok),
        "wall_s": walls,
        "wall_s_min": min(walls),
        "wall_s_median": round(statistics.median(walls), 3),
        "run_s_median": round(statistics.median(r.run_s for r in ok), 3),
        "pages_per_s_median": round(statistics.median(r.pages_per_s for r in ok), 2),
        "legs_median": statistics.median(r.legs for r in ok),
        "steals_median": statistics.median(r.steals for r in ok),
        "ranges_median": statistics.median(r.ranges for r in ok),
        "invocations_median": statistics.median(r.invocations for r in ok),
        "cold_starts": sum(r.cold_starts for r in ok),
        "timeouts": sum(r.timeouts for r in ok),
        "per_task": {
            key: round(statistics.median(p[key] for p in per_task), 4) for key in per_task[0]
        },
        "cpu_s_median": round(statistics.median(cpu), 2),
        "cpu_ms_per_page_median": round(
            statistics.median(c * 1000 / r.tasks for c, r in zip(cpu, ok, strict=True)), 2
        ),
        "chain_ends_s": median_run.chain_ends_s,
        "chain0_leg_tasks": median_run.chain0_leg_tasks,
        "other_runnable_median": round(statistics.median(load), 2) if load else None,
        "failed": sum(r.failed for r in ok),
    }


def figures(
    config: FanoutConfig, runs: list[FanRun], warm: dict[str, Any] | None, slow_tasks: int
) -> dict[str, Any]:
    scaling = {
        str(c): _cell([r for r in runs if r.kind == "scaling" and r.chains == c])
        for c in config.chains
    }
    base = scaling.get("1", {})
    mean_ms = sum(config.latency_ms) / 2
    efficiency: dict[str, Any] = {}
    for c in config.chains:
        cell = scaling[str(c)]
        cell["ideal_wall_s"] = round(config.tasks * mean_ms / 1000 / (c * config.concurrency), 2)
        if "missing" in cell or "missing" in base:
            efficiency[str(c)] = {"value": None, "of_minimums": None}
            continue
        efficiency[str(c)] = {
            "value": round(base["wall_s_median"] / cell["wall_s_median"] / c, 3),
            "of_minimums": round(base["wall_s_min"] / cell["wall_s_min"] / c, 3),
        }
    straggler = {
        "steal": _cell([r for r in runs if r.kind == "straggler" and r.steal]),
        "no_steal": _cell([r for r in runs if r.kind == "straggler" and not r.steal]),
    }
    on, off = straggler["steal"], straggler["no_steal"]
    ratio = (
        round(off["wall_s_median"] / on["wall_s_median"], 3)
        if "missing" not in on and "missing" not in off
        else None
    )
    counts_at = str(16 if 16 in config.chains else max(config.chains))
    counts = scaling[counts_at].get("per_task") or {}
    out: dict[str, Any] = {
        "fanout_efficiency_4": efficiency.get("4", {}).get("value"),
        "fanout_efficiency_16": efficiency.get("16", {}).get("value"),
        "fanout_efficiency_64": efficiency.get("64", {}).get("value"),
        "straggler_wall_ratio": ratio,
        "config": asdict(config) | {"max_concurrency": config.max_concurrency},
        "origins": {o.name: o.describe() for o in config.origins()},
        "slow_tasks": slow_tasks,
        "warm": warm,
        "scaling": scaling,
        "efficiency": efficiency,
        "straggler": straggler,
        "cost_counts_at": int(counts_at),
        "cost": fanout_cost(counts, concurrency=config.concurrency) if counts else None,
        "runs": [asdict(r) for r in runs],
    }
    if out["cost"] is not None:
        out["cost_per_million_tasks_fanout_usd"] = out["cost"]["rows"]["baton"]["total_usd"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fanout", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="320 tasks, C = 1, 4, 16")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--tasks", type=int)
    parser.add_argument("--workdir", type=Path, help="keep the containers' log here")
    parser.add_argument("--out", type=Path, default=RESULTS_FILE)
    args = parser.parse_args(argv)
    config = QUICK if args.quick else FULL
    if args.rounds:
        config = replace(config, rounds=args.rounds)
    if args.tasks:
        config = replace(config, tasks=args.tasks)
    started = time.monotonic()
    with Contention() as contention:
        contention.label = "fanout"
        found = measure(config, args.workdir, contention, say=_stderr)
        found["machine"] = machine_facts() | {"other_runnable_processes": contention.summary()}
    from bench.run_all import runtime_tree  # run_all imports this module

    found["runtime"] = runtime_tree()
    found["quick"] = args.quick
    found["seconds"] = round(time.monotonic() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(found, indent=2, default=str) + "\n")
    for key in ("fanout_efficiency_4", "fanout_efficiency_16", "fanout_efficiency_64"):
        _stderr(f"{key}: {found.get(key)}")
    _stderr(f"straggler_wall_ratio: {found.get('straggler_wall_ratio')}")
    _stderr(f"wrote {args.out}")
    return 0


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
