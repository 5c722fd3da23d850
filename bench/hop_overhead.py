"""Per-hop overhead: what a leg boundary costs, warm and cold, in milliseconds.

Two views, which should agree (the probe's are the headline figures):

- **In the chain** (`chain_hops`, from a `bench.throughput` run): the time from a
  leg's last commit line to the start of the next leg (its first commit line's
  `batch_ms` reaches back to the leg's start): the hand-off CAS and invoke, the local
  runtime's dispatch and the handler's entry. The next leg's own fixed start (checkpoint
  and run reads, claim CAS, the task-list revalidation, a 304, and the orphan check)
  falls inside its first commit interval, so the chain sees less than the probe. A hop
  is cold when the next leg got a new container.

- **Probed** (`probe`): the real handler, in a process of its own, runs legs of a run
  on the embedded S3 with the remaining time pinned at the margin, so every leg does
  its whole fixed path and hands off at once (to a no-op function). Every boto3 call
  is timed, which gives the breakdown. Warm = such a leg in a warm process (cache
  hit, clients made, recursion checked); cold = process start + imports +
  `Container.create` + the first leg (task list downloaded and parsed, recursion
  config read).

    python -m bench.hop_overhead [--tasks 5000] [--warm-legs 20] [--cold-runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.throughput import BatonRun

REPO_ROOT = Path(__file__).resolve().parents[1]
NOOP = "bench-noop"
PROBE_KEY = "tasks/bench-probe.jsonl"
_INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PYTHONPATH")


def noop(event: Any, context: Any) -> None:
    """The function the probe's legs hand off to: it accepts the baton and drops it."""
    return None


@dataclass(frozen=True)
class HopConfig:
    tasks: int = 5000
    """Size of the task list a cold leg downloads and parses (as in the throughput run)."""
    warm_legs: int = 20
    cold_runs: int = 3
    margin_ms: int = 2000
    concurrency: int = 8


# --- in the chain ----------------------------------------------------------------------


def chain_hops(run: BatonRun) -> dict[str, Any]:
    """Leg-boundary gaps of a real chain: a leg's last commit line to the next leg's start.

    `commit_gap_ms_median` is the gap between two commit intervals inside a leg, which
    the rolling window makes about zero (each interval starts where the last ended);
    it is kept as a check on the log lines, not subtracted.
    """
    cold_requests = {r["request_id"] for r in run.records if r.get("cold")}
    by_leg = run.batches_by_leg()
    boundaries = [
        (nxt.logged_s - nxt.ms / 1000 - prev.logged_s) * 1000
        for batches in by_leg.values()
        for prev, nxt in pairwise(batches)
    ]
    boundary = statistics.median(boundaries) if boundaries else 0.0
    hops: list[dict[str, Any]] = []
    for leg in sorted(by_leg):
        if leg + 1 not in by_leg:
            continue
        last, first = by_leg[leg][-1], by_leg[leg + 1][0]
        gap = (first.logged_s - first.ms / 1000 - last.logged_s) * 1000
        hops.append(
            {
                "from_leg": leg,
                "cold": first.request_id in cold_requests,
                "gap_ms": round(gap, 1),
                "overhead_ms": round(gap, 1),
            }
        )
    warm = [h["overhead_ms"] for h in hops if not h["cold"]]
    cold = [h["overhead_ms"] for h in hops if h["cold"]]
    return {
        "commit_gap_ms_median": round(boundary, 1),
        "commit_gaps": len(boundaries),
        "hops": hops,
        "warm_ms_median": round(statistics.median(warm), 1) if warm else None,
        "cold_ms_median": round(statistics.median(cold), 1) if cold else None,
    }


# --- probed ----------------------------------------------------------------------------


def probe(config: HopConfig, workdir: Path | None = None) -> dict[str, Any]:
    """Run probe processes against a fresh embedded stack; medians and the breakdown."""
    from devstack.lambda_runtime import FunctionConfig
    from devstack.stack import EmbeddedStack
    from worker.checkpoint import Checkpoint
    from worker.clock import SYSTEM_CLOCK
    from worker.events import derive_run_id
    from worker.store import RunRecord, RunStore

    target = FunctionConfig(
        name=NOOP,
        handler="bench.hop_overhead.noop",
        timeout_s=5.0,
        memory_mb=128,
        recursive_loop="Allow",
        max_concurrency=2,
    )
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="baton-hop-") as tmp:
        work = workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        with EmbeddedStack(target, log_file=work / "noop.log") as stack:
            stack.runtime.invoke(NOOP, {})  # its container is warm before any hand-off
            s3 = stack.s3_client()
            try:
                body = b"".join(
                    json.dumps(f"http://127.0.0.1:9/page/{i}").encode() + b"\n"
                    for i in range(config.tasks)
                )
                etag = s3.put_object(Bucket=stack.bucket, Key=PROBE_KEY, Body=body)["ETag"]
                store = RunStore.over(s3, stack.bucket, "runs/")
                for number in range(config.cold_runs):
                    run_id = derive_run_id(stack.bucket, PROBE_KEY, etag, f"probe-{number}")
                    store.create_run(
                        RunRecord(
                            run_id=run_id,
                            bucket=stack.bucket,
                            key=PROBE_KEY,
                            etag=etag,
                            total=config.tasks,
                            start_position=0,
                            created_ms=SYSTEM_CLOCK.now_ms(),
                            source="manual",
                        )
                    )
                    store.create_checkpoint(Checkpoint(run_id, total=config.tasks, position=0))
                    results.append(
                        _run_probe(
                            stack, config, target.arn, run_id, etag, base=work / f"probe-{number}"
                        )
                    )
                stack.runtime.wait_idle(10)
            finally:
                s3.close()
    return _summarize_probes(results)


def _run_probe(
    stack: Any, config: HopConfig, arn: str, run_id: str, etag: str, *, base: Path
) -> dict[str, Any]:
    env = {name: os.environ[name] for name in _INHERITED if name in os.environ}
    env.update(stack.client_environment())
    env.update(
        AWS_REGION=env["AWS_DEFAULT_REGION"],
        BATON_CONCURRENCY=str(config.concurrency),
        BATON_MARGIN_MS=str(config.margin_ms),
        BATON_ALLOW_NETS="127.0.0.0/8",
        BATON_LOG_FORMAT="json",
        PYTHONUNBUFFERED="1",
    )
    out = base.with_suffix(".json")
    with base.with_suffix(".log").open("wb") as log:
        spawned = time.time()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.hop_overhead",
                "--probe",
                "--bucket",
                stack.bucket,
                "--key",
                PROBE_KEY,
                "--etag",
                etag,
                "--run-id",
                run_id,
                "--function-arn",
                arn,
                "--legs",
                str(config.warm_legs),
                "--out",
                str(out),
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=True,
            timeout=300,
        )
    result: dict[str, Any] = json.loads(out.read_text())
    result["spawn_ms"] = round((result["entered"] - spawned) * 1000, 1)
    return result


def _summarize_probes(results: list[dict[str, Any]]) -> dict[str, Any]:
    cold_totals = [
        r["spawn_ms"] + r["import_ms"] + r["create_ms"] + r["legs"][0]["ms"] for r in results
    ]
    warm_legs = [leg for r in results for leg in r["legs"][1:]]
    bad = [leg["exit"] for r in results for leg in r["legs"] if leg["exit"] != "handed_off"]
    return {
        "warm_ms_median": _median([leg["ms"] for leg in warm_legs]),
        "warm_ms_p90": _quantile([leg["ms"] for leg in warm_legs], 0.9),
        "warm_legs": len(warm_legs),
        "warm_ops": _ops_breakdown(warm_legs),
        "cold_ms_median": _median(cold_totals),
        "cold_runs": len(results),
        "cold_parts_ms": {
            "process_start": _median([r["spawn_ms"] for r in results]),
            "imports": _median([r["import_ms"] for r in results]),
            "container_create": _median([r["create_ms"] for r in results]),
            "first_leg": _median([r["legs"][0]["ms"] for r in results]),
        },
        "cold_leg_ops": _ops_breakdown([r["legs"][0] for r in results]),
        "unexpected_exits": bad,
    }


def _ops_breakdown(legs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median time per leg spent in each AWS operation, and what is left (Python)."""
    per_op: dict[str, list[float]] = defaultdict(list)
    counts: dict[str, int] = {}
    rest: list[float] = []
    for leg in legs:
        totals: dict[str, float] = defaultdict(float)
        for name, ms in leg["ops"]:
            totals[name] += ms
        for name, total in totals.items():
            per_op[name].append(total)
        counts = {name: sum(1 for n, _ in leg["ops"] if n == name) for name in totals} | counts
        rest.append(leg["ms"] - sum(totals.values()))
    return {
        "calls_per_leg": counts,
        "ms_per_leg": {name: _median(values) for name, values in sorted(per_op.items())},
        "other_ms": _median(rest),
    }


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


# --- the probe process -----------------------------------------------------------------


class _ProbeContext:
    """A Lambda context whose remaining time is always the margin: hand off at once."""

    def __init__(self, request_id: str, arn: str, remaining_ms: int) -> None:
        self.aws_request_id = request_id
        self.invoked_function_arn = arn
        self._remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self._remaining_ms


class _OpTimer:
    """Times every boto3 call of the clients it is attached to (one leg at a time)."""

    def __init__(self) -> None:
        self.ops: list[tuple[str, float]] = []
        self._started: dict[int, tuple[str, float]] = {}

    def attach(self, client: Any) -> None:
        client.meta.events.register("before-call", self._before)
        client.meta.events.register("after-call", self._after)

    def _before(self, model: Any, **_: Any) -> None:
        self._started[threading.get_ident()] = (model.name, time.perf_counter())

    def _after(self, model: Any, **_: Any) -> None:
        name, started = self._started.pop(threading.get_ident(), (model.name, time.perf_counter()))
        self.ops.append((name, round((time.perf_counter() - started) * 1000, 2)))


def _probe_main(args: argparse.Namespace) -> int:
    entered = time.time()
    started = time.perf_counter()
    import handler
    from worker.config import Settings
    from worker.container import Container
    from worker.events import LegEvent
    from worker.telemetry import configure_logging

    import_ms = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    settings = Settings.from_env()
    configure_logging(settings.log_level, settings.log_format == "json")
    container = Container.create(settings)
    create_ms = (time.perf_counter() - started) * 1000
    handler._container = container  # what handler() does on its first call
    timer = _OpTimer()
    timer.attach(container.s3.client)
    timer.attach(container.lambda_client)
    legs = []
    for number in range(args.legs + 1):
        payload = LegEvent(args.run_id, args.bucket, args.key, args.etag, 0, number).payload()
        context = _ProbeContext(f"probe-{uuid.uuid4()}", args.function_arn, settings.margin_ms)
        timer.ops = []
        started = time.perf_counter()
        answer = handler.handler(payload, context)
        elapsed = (time.perf_counter() - started) * 1000
        [outcome] = answer.get("results") or [{"exit": f"rejected: {answer.get('error')}"}]
        legs.append(
            {
                "ms": round(elapsed, 2),
                "exit": outcome.get("exit"),
                "cache_hit": outcome.get("cache_hit"),
                "ops": timer.ops,
            }
        )
    Path(args.out).write_text(
        json.dumps(
            {
                "entered": entered,
                "import_ms": round(import_ms, 2),
                "create_ms": round(create_ms, 2),
                "legs": legs,
            }
        )
    )
    return 0


# --- figures ---------------------------------------------------------------------------


def figures(probed: dict[str, Any], chain: dict[str, Any] | None) -> dict[str, Any]:
    """The headline numbers are the probe's: many samples, and only the worker's own cost.

    The chain's figures (a handful of hops per run, and they include the local
    runtime's dispatch and, cold, its own container start-up) are the cross-check.
    """
    return {
        "hop_overhead_ms_warm": probed["warm_ms_median"],
        "hop_overhead_ms_cold": probed["cold_ms_median"],
        "chain_ms_warm": chain.get("warm_ms_median") if chain else None,
        "chain_ms_cold": chain.get("cold_ms_median") if chain else None,
        "probe": probed,
        "chain": chain,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hop_overhead", description=__doc__)
    parser.add_argument("--tasks", type=int, default=HopConfig.tasks)
    parser.add_argument("--warm-legs", type=int, default=HopConfig.warm_legs)
    parser.add_argument("--cold-runs", type=int, default=HopConfig.cold_runs)
    parser.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bucket", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    parser.add_argument("--etag", help=argparse.SUPPRESS)
    parser.add_argument("--run-id", help=argparse.SUPPRESS)
    parser.add_argument("--function-arn", help=argparse.SUPPRESS)
    parser.add_argument("--legs", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.probe:
        return _probe_main(args)
    config = HopConfig(tasks=args.tasks, warm_legs=args.warm_legs, cold_runs=args.cold_runs)
    json.dump(figures(probe(config), None), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
