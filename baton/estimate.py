"""`baton estimate FILE`: run a few tasks here, then predict legs, time and cost on Lambda.

The model (printed with its numbers, so a user can argue with it):

    per task        w = mean wall time, c = mean CPU time (measured here, one at a time)
    vCPU            v = min(1, memory / 1769)        (Lambda's CPU share; one process)
    concurrency     K = the pinned level, else min(max, per-host cap x hosts, v x w / c)
    rate per chain  r = min(K / w, v / c)            tasks per second
    a leg           starts tasks for  s = timeout - overhead - (margin + 1.2 x w)
                    and works about   r x (s + w) tasks (the last ones run into the reserve)
    legs            per chain ceil(tasks per chain / tasks per leg); C chains
    billed          tasks / r + legs x overhead      (GB-s at the memory size)

CPU measured on this machine is scaled by nothing: a Lambda vCPU is assumed as fast as
a core here. Wall time is the least portable number; legs per unit of task time, task
counts and request counts are what the comparison test holds it to.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from baton.runs import checked_list
from baton.target import CliError, Target
from worker.autoscale import MAX_USEFUL_VCPUS, MB_PER_VCPU
from worker.clock import SYSTEM_CLOCK
from worker.config import Settings
from worker.cost import cost_section, pricing_config
from worker.fetch import Fetcher, FetchPolicy
from worker.netguard import NetPolicy
from worker.prices import architecture, parse_overrides
from worker.processor import TaskContext, load_processor, run_one
from worker.progress import EXIT_OK
from worker.tasks import Task, parse_task_list
from worker.usage import Usage

LEG_OVERHEAD_S = 0.3
"""Claim, task list revalidation, final commit and hand-off: a warm hop measured about
25 ms in the bench, a cold one about 300 ms; the cold figure, to err long."""
COMMIT_INTERVAL_S = 10.0
S3_PER_LEG = {"get": 4, "put": 4, "head": 2, "list": 1}
"""A leg's own requests besides its commits: checkpoint and run.json reads, the task
list's revalidation, the claim, plan and hand-off writes, the cancel check, the orphan
listing (worker/leg.py); the start's few are spread over the legs. Checked against an
actual run's counts by tests/integration/test_estimate_on_stack.py (S3_TOLERANCE)."""
S3_PER_COMMIT = {"put": 2, "head": 1}
"""Per commit: the results object, the checkpoint CAS; the cancel marker's HEAD."""


@dataclass(frozen=True)
class Sample:
    tasks: int
    wall_ms: float
    cpu_ms: float
    hosts: int
    failed: int


@dataclass(frozen=True)
class Prediction:
    tasks: int
    chains: int
    memory_mb: int
    timeout_s: float
    concurrency: int
    tasks_per_s_per_chain: float
    tasks_per_leg: float
    legs: int
    wall_s: float
    billed_s: float
    s3_requests: dict[str, int]


def sample(tasks: Sequence[Task], count: int, settings: Settings) -> Sample:
    """Run up to `count` tasks spread evenly over the list, one at a time, with the
    function's processor; their mean wall and CPU time."""
    picked = (
        list(tasks)
        if len(tasks) <= count
        else [tasks[i * len(tasks) // count] for i in range(count)]
    )
    processor = load_processor(settings.processor)
    fetcher = Fetcher(
        FetchPolicy(
            attempts=settings.fetch_attempts,
            request_timeout_s=settings.request_timeout_s,
            max_bytes=settings.max_page_bytes,
            max_redirects=settings.max_redirects,
            user_agent=settings.user_agent,
        ),
        NetPolicy.from_cidrs(settings.allow_nets),
        pool_size=settings.per_host_concurrency,
    )
    walls, cpus, failed = [], [], 0
    try:
        for task in picked:
            started, cpu = time.monotonic(), time.thread_time()
            deadline = SYSTEM_CLOCK.monotonic() + settings.request_timeout_s * 2
            outcome = run_one(task, processor, TaskContext(fetcher, deadline, SYSTEM_CLOCK))
            cpus.append((time.thread_time() - cpu) * 1000)
            walls.append((time.monotonic() - started) * 1000)
            failed += bool(outcome.row is None or outcome.row.get("error"))
    finally:
        fetcher.close()
    n = max(1, len(picked))
    return Sample(len(picked), sum(walls) / n, sum(cpus) / n, count_hosts(tasks), failed)


def count_hosts(tasks: Sequence[Task]) -> int:
    """Hosts over the whole list (the per-host cap applies to them all, not the sample)."""
    return max(1, len({t.url.split("/")[2] for t in tasks if t.url and "//" in t.url}))


def predict(
    total: int,
    measured: Sample,
    *,
    memory_mb: int,
    chains: int,
    timeout_s: float,
    margin_ms: int,
    concurrency: int,
    max_concurrency: int,
    per_host: int,
) -> Prediction:
    w = max(measured.wall_ms, 0.1) / 1000
    c = max(measured.cpu_ms, 0.01) / 1000
    vcpu = min(MAX_USEFUL_VCPUS, memory_mb / MB_PER_VCPU)
    level = concurrency or max(
        1, min(max_concurrency, per_host * measured.hosts, int(vcpu * w / c))
    )
    rate = min(level / w, vcpu / c)
    starting_s = max(0.0, timeout_s - LEG_OVERHEAD_S - (margin_ms / 1000 + 1.2 * w))
    per_leg = max(1.0, rate * (starting_s + w))
    chains = max(1, min(chains, total))
    per_chain = math.ceil(total / chains)
    legs_per_chain = max(1, math.ceil(per_chain / per_leg))
    legs = chains * legs_per_chain
    commits = legs * max(1, math.ceil(min(per_leg, per_chain) / rate / COMMIT_INTERVAL_S))
    s3 = {
        kind: S3_PER_LEG.get(kind, 0) * legs + S3_PER_COMMIT.get(kind, 0) * commits
        for kind in ("get", "put", "list", "head", "delete", "copy")
    }
    return Prediction(
        tasks=total,
        chains=chains,
        memory_mb=memory_mb,
        timeout_s=timeout_s,
        concurrency=level,
        tasks_per_s_per_chain=round(rate, 2),
        tasks_per_leg=round(min(per_leg, per_chain), 1),
        legs=legs,
        wall_s=round(per_chain / rate + legs_per_chain * LEG_OVERHEAD_S, 1),
        billed_s=round(total / rate + legs * LEG_OVERHEAD_S, 1),
        s3_requests=s3,
    )


def priced(p: Prediction, measured: Sample, settings: Settings) -> dict[str, Any]:
    billed_ms = int(p.billed_s * 1000)
    usage = Usage(
        requests=p.legs + 1,
        billed_ms=billed_ms,
        mb_ms=billed_ms * p.memory_mb,
        invokes=p.legs,
        items=p.tasks,
        item_ms=int(p.tasks * measured.wall_ms),
        **{f"s3_{kind}": n for kind, n in p.s3_requests.items()},
    )
    pricing = pricing_config(architecture(settings.architecture), parse_overrides(settings.prices))
    return cost_section(usage, pricing, p.memory_mb)


def cmd_estimate(args: argparse.Namespace, target: Target) -> int:
    body = checked_list(args.file)
    tasks = parse_task_list(body)
    if not tasks:
        raise CliError(f"{args.file} has no tasks")
    overrides: dict[str, Any] = {}
    if args.allow_loopback:
        overrides["allow_nets"] = ("127.0.0.0/8",)
    settings = Settings.from_env(**overrides)
    measured = sample(tasks, args.sample, settings)
    prediction = predict(
        len(tasks),
        measured,
        memory_mb=args.memory,
        chains=args.chains or settings.chains,
        timeout_s=args.timeout_s,
        margin_ms=settings.margin_ms,
        concurrency=args.concurrency if args.concurrency is not None else settings.concurrency,
        max_concurrency=settings.max_concurrency,
        per_host=settings.per_host_concurrency,
    )
    cost = priced(prediction, measured, settings)
    if args.json:
        print(json.dumps({"sample": asdict(measured), **asdict(prediction), "cost": cost}))
        return EXIT_OK
    for line in report(measured, prediction, cost, settings):
        print(line)
    return EXIT_OK


def report(m: Sample, p: Prediction, cost: dict[str, Any], settings: Settings) -> list[str]:
    alt = cost["alternatives"]
    return [
        f"sampled {m.tasks} of {p.tasks} tasks here with {settings.processor}: "
        f"{m.wall_ms:.1f} ms wall, {m.cpu_ms:.2f} ms CPU per task ({m.failed} failed); "
        f"{m.hosts} host{'s' if m.hosts != 1 else ''} in the list",
        "settings from this shell's BATON_* variables, not the function's: "
        f"processor {settings.processor}, margin {settings.margin_ms} ms, "
        f"concurrency {settings.concurrency or 'found'} (max {settings.max_concurrency}), "
        f"{settings.per_host_concurrency} per host, architecture "
        f"{cost['lambda']['architecture']}; set them as on the function",
        "assumptions: a Lambda vCPU as fast as a core here; "
        f"{p.memory_mb} MB = {min(1.0, p.memory_mb / MB_PER_VCPU):.2f} vCPU; "
        f"timeout {p.timeout_s:.0f} s, margin {settings.margin_ms} ms, "
        f"{LEG_OVERHEAD_S * 1000:.0f} ms per leg for claim and hand-off; "
        f"concurrency {p.concurrency} per chain; prices {cost['prices']['region']} "
        f"read {cost['prices']['read']}",
        f"predicted: {p.legs} leg{'s' if p.legs != 1 else ''} over {p.chains} chain"
        f"{'s' if p.chains != 1 else ''}, {p.tasks_per_leg:.0f} tasks a leg, "
        f"{p.tasks_per_s_per_chain:.1f} tasks/s a chain, about {p.wall_s:.1f} s wall, "
        f"{p.billed_s:.1f} s billed, {sum(p.s3_requests.values())} S3 requests",
        f"cost: ${cost['usd_total']:.6f} on Lambda {cost['lambda']['architecture']} "
        f"({cost['lambda']['gb_s']} GB-s) and S3; Step Functions Distributed Map "
        f"${alt['step_functions_standard']['usd']:.6f} standard, "
        f"${alt['step_functions_express']['usd']:.6f} express; Lambda durable functions "
        f"${alt['lambda_durable_functions']['usd']:.6f}",
    ]
