"""Time-budget use: the share of each leg's wall time spent working tasks, measured and modelled.

**Measured** (10 s timeout, from a `bench.throughput` run): every leg logs
`budget_use` = time inside `Leg.work` (tasks flowing through the rolling window, the
commits among them) / the leg's wall time, and the run's summary has
`task_time_share` = the same over all legs (what `budget_use` reports). Beside it: the
share of the timeout a handed-off leg used, and the share of the billed invocation
time (the REPORT lines' Duration, which also holds the handler's own start-up and, in
leg 0, the run's creation) spent working.

**Modelled** (900 s): `simulate_leg` replays one leg's rolling window against the
worker's own `worker.budget.TimeBudget` (whatever policy it has today), with

- the fixed per-leg cost measured by `bench.hop_overhead`'s probe (`head_ms` before
  the first task: checkpoint and run reads, claim CAS, task-list revalidation, orphan
  LIST, cancel HEAD; `tail_ms` after the final commit: hand-off CAS and invoke),
- the cost of one commit (`commit_ms`: the results PUT and then the checkpoint CAS,
  one after the other, from the probe's PUT latency; the cancel HEAD runs beside the
  PUT), during which tasks in flight go on but no new task starts,
- the task latencies the run measured, taken in order by `concurrency` slots, each
  slot taking the next task as it frees (no barrier), a commit every
  `commit_interval_ms`.

It runs two legs on one budget (it lives as long as the container) and reports the
second. The leg stops starting tasks when the time left falls to the policy's reserve
R (`margin_ms` + 1.2 x the p90 task latency), lets the tasks in flight finish (each is
cut at the work deadline), commits, and hands off. In closed form, with h and t the
fixed head and tail, o = `commit_ms` and c = `commit_interval_ms`:

    W          = T - R + drain + o + t     leg wall time (drain: the last tasks finishing)
    budget_use = (W - h - o - t) / W       the commits inside the window are work time
    fill       ~ 1 - o / c - (drain + start) / W   slot-time in tasks / (slots x work time)

so at 900 s the fixed per-leg part vanishes from `budget_use`, and what the window
loses to commits shows in `fill`: new starts wait o every c. `validate` runs the same
model at the measured timeout, to compare with the run.

    python -m bench.budget [--pages 3000]   (runs its own throughput-sized baton run)
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import statistics
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.throughput import BatonRun

S3_CALL_MS_REAL = 25.0
"""Assumed latency of one small S3 request in-region ("tens of milliseconds" median for
requests under 512 KB: AWS whitepaper "Best Practices Design Patterns: Optimizing Amazon
S3 Performance", timeouts and retries for latency-sensitive applications)."""
PAGE_MS_REAL = 250.0
"""Assumed mean page fetch time on the real network (the bench site serves in ~85 ms)."""
COMMIT_VARIANTS = (("as is", None), ("commit every 5 s", 5_000.0), ("every 30 s", 30_000.0))
"""The commit-interval what-ifs: `None` keeps the worker's own `commit_interval_ms`."""
COMMIT_SERIAL_CALLS = 2
"""S3 calls a commit waits for one after the other (worker.leg.Leg._commit_state): the
results PUT, then the checkpoint CAS; the cancel HEAD runs beside the PUT."""


@dataclass(frozen=True)
class LegModel:
    timeout_ms: float
    head_ms: float
    tail_ms: float
    commit_ms: float
    """The dispatcher's time in one commit: no task starts meanwhile."""
    concurrency: int
    margin_ms: int = 2000
    batch_size: int = 25
    latency_scale: float = 1.0
    """Multiplies every replayed task latency (a slower network)."""


def analyze(run: BatonRun) -> dict[str, Any]:
    """The measured shares of one run."""
    timeout_ms = float(run.config["timeout_s"]) * 1000
    legs = [leg for leg in run.legs if leg.get("exit") in ("handed_off", "done")]
    handed = [leg for leg in legs if leg["exit"] == "handed_off"]
    shares = [float(leg["budget_use"]) for leg in legs]
    task_ms = sum(float(leg["budget_use"]) * float(leg["elapsed_ms"]) for leg in legs)
    billed_ms = sum(float(r["duration_ms"]) for r in run.reports.values())
    return {
        "timeout_s": timeout_ms / 1000,
        "budget_use": run.summary.get("task_time_share"),
        "budget_use_min": min(shares) if shares else None,
        "budget_use_median": round(statistics.median(shares), 4) if shares else None,
        "legs": [
            {
                "leg": leg["leg"],
                "exit": leg["exit"],
                "elapsed_ms": leg["elapsed_ms"],
                "budget_use": leg["budget_use"],
                "remaining_ms": leg.get("remaining_ms"),
                "processed": leg.get("processed"),
                "batches": leg.get("batches"),
                "cache_hit": leg.get("cache_hit"),
            }
            for leg in legs
        ],
        "timeout_use_median": round(
            statistics.median(float(leg["elapsed_ms"]) / timeout_ms for leg in handed), 4
        )
        if handed
        else None,
        "remaining_at_handoff_ms_median": statistics.median(
            int(leg.get("remaining_ms") or 0) for leg in handed
        )
        if handed
        else None,
        "billed_task_share": round(task_ms / billed_ms, 4) if billed_ms else None,
    }


def simulate_leg(
    model: LegModel, latencies: list[float], budget: Any | None = None
) -> dict[str, Any]:
    """Two legs of one container's budget at `model.timeout_ms`; the second one's figures."""
    from worker.budget import TimeBudget

    if budget is None:
        budget = TimeBudget(margin_ms=model.margin_ms, adaptive=True, initial_plan=model.batch_size)
    deal = itertools.cycle([ms * model.latency_scale for ms in latencies] or [100.0])
    _leg(budget, model, deal)
    return _leg(budget, model, deal)


def _leg(budget: Any, model: LegModel, deal: Iterator[float]) -> dict[str, Any]:
    """One leg's rolling window: `concurrency` slots take the next task as each frees; a
    commit every commit interval takes `commit_ms`, during which tasks in flight go on
    but no task starts; the leg stops starting tasks when the budget says so, every task
    still running ends by the work deadline (one cut there is the next leg's), and a
    final commit and the hand-off close the leg."""
    start_ms = model.head_ms
    end_ms = float(model.timeout_ms)
    interval = float(budget.commit_interval_ms)
    free = [start_ms] * model.concurrency  # when each slot is next free; a heap
    next_commit = start_ms + interval
    tasks = commits = 0
    slot_ms = 0.0
    while True:
        at = heapq.heappop(free)
        while at >= next_commit:  # a commit began before this slot freed
            at = max(at, next_commit + model.commit_ms)
            next_commit += interval + model.commit_ms
            commits += 1
        remaining = end_ms - at
        if not budget.can_start(remaining):
            heapq.heappush(free, at)
            break
        latency = next(deal)
        finish = at + latency
        if finish > end_ms - model.margin_ms:  # the work deadline cuts it: the next leg's
            heapq.heappush(free, end_ms - model.margin_ms)
            break
        budget.record_task(latency)
        heapq.heappush(free, finish)
        tasks += 1
        slot_ms += latency
    work_end = max(free)
    wall_ms = work_end + model.commit_ms + model.tail_ms
    work_ms = work_end - start_ms
    return {
        "timeout_s": model.timeout_ms / 1000,
        "leg_ms": round(wall_ms, 1),
        "task_ms": round(work_ms, 1),
        "tasks": tasks,
        "commits": commits + 1,
        "tasks_per_commit": round(tasks / (commits + 1), 1),
        "fill": round(slot_ms / (model.concurrency * work_ms), 5) if work_ms else 0.0,
        "remaining_at_handoff_ms": round(end_ms - wall_ms, 1),
        "budget_use": round(work_ms / wall_ms, 5) if wall_ms else 0.0,
        "timeout_use": round(wall_ms / model.timeout_ms, 5),
        "billed_ms_per_task": round(wall_ms / tasks, 3) if tasks else None,
    }


def model_parameters(run: BatonRun, hop: dict[str, Any] | None) -> dict[str, float]:
    """head/tail per leg from the probe's warm legs (or the chain), and one commit's cost."""
    probe = (hop or {}).get("probe") or {}
    ops = (probe.get("warm_ops") or {}).get("ms_per_leg") or {}
    calls = (probe.get("warm_ops") or {}).get("calls_per_leg") or {}
    leg_ms = probe.get("warm_ms_median")
    if leg_ms is None:
        leg_ms = ((hop or {}).get("hop_overhead_ms_warm")) or 50.0
    put_ms = ops.get("PutObject", 0.0) / max(1, calls.get("PutObject", 1))
    tail_ms = put_ms + ops.get("Invoke", 0.0) + (probe.get("warm_ops") or {}).get("other_ms", 0.0)
    return {
        "leg_fixed_ms": float(leg_ms),
        "head_ms": max(0.0, float(leg_ms) - tail_ms),
        "tail_ms": tail_ms,
        "put_ms": put_ms,
        "commit_ms": COMMIT_SERIAL_CALLS * put_ms,
        "s3_call_ms_local": _mean_call_ms(ops, calls),
        "s3_calls_per_leg": float(sum(calls.values())),
    }


def _mean_call_ms(ops: dict[str, float], calls: dict[str, int]) -> float:
    count = sum(calls.values())
    return sum(ops.values()) / count if count else 5.0


def project(run: BatonRun, hop: dict[str, Any] | None, timeout_s: float = 900.0) -> dict[str, Any]:
    """Validation at the measured timeout, then the scenarios at `timeout_s`."""
    params = model_parameters(run, hop)
    latencies = run.task_latencies_ms
    concurrency = int(run.config["concurrency"])
    margin = int(run.config.get("margin_ms") or 2000)
    mean_latency = statistics.fmean(latencies) if latencies else 100.0
    local_call = params["s3_call_ms_local"]
    extra = max(0.0, S3_CALL_MS_REAL - local_call)
    real_commit = params["commit_ms"] + COMMIT_SERIAL_CALLS * extra
    real_fixed = params["s3_calls_per_leg"] * extra

    def scenario(commit: float, fixed_extra: float, scale: float, seconds: float) -> LegModel:
        return LegModel(
            timeout_ms=seconds * 1000,
            head_ms=params["head_ms"] + fixed_extra * 0.75,
            tail_ms=params["tail_ms"] + fixed_extra * 0.25,
            commit_ms=commit,
            concurrency=concurrency,
            margin_ms=margin,
            latency_scale=scale,
        )

    slow = PAGE_MS_REAL / mean_latency
    scenarios = {
        "measured": scenario(params["commit_ms"], 0.0, 1.0, timeout_s),
        "real_s3": scenario(real_commit, real_fixed, 1.0, timeout_s),
        "real_pages": scenario(params["commit_ms"], 0.0, slow, timeout_s),
        "real_s3_and_pages": scenario(real_commit, real_fixed, slow, timeout_s),
    }
    from worker.budget import TimeBudget

    policy = TimeBudget(margin_ms=margin)
    return {
        "parameters": params
        | {
            "commit_interval_ms": policy.commit_interval_ms,
            "max_plan": policy.max_plan,
            "concurrency": concurrency,
            "margin_ms": margin,
            "task_latency_ms_mean": round(mean_latency, 1),
            "s3_call_ms_real": S3_CALL_MS_REAL,
            "page_ms_real": PAGE_MS_REAL,
            "commit_ms_real_s3": round(real_commit, 1),
        },
        "validation": {
            "model": simulate_leg(
                scenario(params["commit_ms"], 0.0, 1.0, float(run.config["timeout_s"])),
                latencies,
            ),
            "measured": analyze(run),
        },
        "scenarios": {
            name: {"assumptions": asdict(model), **simulate_leg(model, latencies)}
            for name, model in scenarios.items()
        },
    }


def policy_variants(
    run: BatonRun, projected: dict[str, Any], timeout_s: float = 900.0
) -> dict[str, Any]:
    """What-ifs for the worker's owners, on the real-S3 scenarios: the commit interval as it
    is, shorter and longer (a commit holds back new starts for its S3 round trips and costs
    2 PUTs and a HEAD; a longer interval loses more finished rows when a leg dies)."""
    from worker.budget import TimeBudget

    out: dict[str, Any] = {}
    for scenario in ("real_s3", "real_s3_and_pages"):
        assumptions = dict(projected["scenarios"][scenario]["assumptions"])
        assumptions["timeout_ms"] = timeout_s * 1000
        model = LegModel(**assumptions)
        for label, interval_ms in COMMIT_VARIANTS:
            budget = TimeBudget(
                margin_ms=model.margin_ms, adaptive=True, initial_plan=model.batch_size
            )
            if interval_ms is not None:
                budget.commit_interval_ms = interval_ms
            leg = simulate_leg(model, run.task_latencies_ms, budget)
            out.setdefault(scenario, {})[label] = {
                key: leg[key]
                for key in ("budget_use", "fill", "tasks_per_commit", "billed_ms_per_task")
            }
    return out


def figures(run: BatonRun, hop: dict[str, Any] | None, timeout_s: float = 900.0) -> dict[str, Any]:
    """`budget_use` as measured, and modelled at `timeout_s` (900 s; less in smoke tests)."""
    measured = analyze(run)
    projected = project(run, hop, timeout_s)
    return {
        "budget_use": measured["budget_use"],
        "budget_use_900s_model": projected["scenarios"]["measured"]["budget_use"],
        "model_timeout_s": timeout_s,
        "measured": measured,
        "model": projected,
        "variants": policy_variants(run, projected, timeout_s),
    }


def main(argv: list[str] | None = None) -> int:
    from bench.hop_overhead import HopConfig, chain_hops, probe
    from bench.hop_overhead import figures as hop_figures
    from bench.throughput import ThroughputConfig, measure

    parser = argparse.ArgumentParser(prog="python -m bench.budget", description=__doc__)
    parser.add_argument("--pages", type=int, default=3000)
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args(argv)
    _, run = measure(ThroughputConfig(pages=args.pages, timeout_s=args.timeout))
    hop = hop_figures(probe(HopConfig(tasks=args.pages)), chain_hops(run))
    json.dump(figures(run, hop), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
