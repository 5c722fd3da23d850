"""`make bench`: run every benchmark, write bench/results.json and BENCHMARKS.md.

    python -m bench.run_all [--quick] [--huge] [--skip-external]

Runs, in this order (one at a time, so they do not share the two cores):

1. `bench.throughput`: baton with many legs vs the plain crawler (`throughput_ratio`);
   its run also feeds 2 and 3;
2. `bench.hop_overhead`: the probe (warm and cold legs, every AWS call timed) and the
   leg boundaries of run 1 (`hop_overhead_ms_warm`, `hop_overhead_ms_cold`);
3. `bench.budget`: budget use measured in run 1 (`budget_use`) and modelled at 900 s;
4. `bench.versus`: baton against Crawlee, Scrapy, a plain requests loop and aiohttp on
   the same pages from 16 loopback hosts, with and without latency, interleaved rounds
   (`latency_vs_crawlee_default` and the other issue 15 keys); peers whose virtualenv
   (`--bench-python`, `.venv-bench` from `make bench`) is absent are skipped and said so;
5. `bench.fanout`: one list over C = 1, 4, 16, 64 chains at a fixed per-chain
   concurrency, a straggler with and without stealing, and the counts the fan-out cost
   is priced from (`fanout_efficiency_16`, `straggler_wall_ratio`); also written to
   `bench/results/fanout.json`, which `--render-only` reads back;
6. `bench.prefix`: baton's prefix runs (presign, sha256; C = 1, 16) against a plain
   boto3 loop on the same emulator (`prefix_ratio`); also written to
   `bench/results/prefix.json`, which `--render-only` reads back;
7. `bench.crawl`: baton's crawl mode (1 and 16 chains) against Crawlee and Scrapy on a
   16-host site (`crawl_vs_crawlee`, `crawl_vs_crawlee_16`, `crawl_vs_scrapy`, and the
   crawl's memory keys from `bench.crawl_memory`); also written to
   `bench/results/crawl.json`, read back likewise;
8. the other benchmarks, as subprocesses, if present: `bench.tasklist_scaling`
   (`--quick` in quick mode; `--huge` adds the 10M case that `peak_rss_mb_10m` comes
   from), `bench.parse_cost` and `bench.fetch_cost` (CPU per request of each HTTP
   client on the same pages); their `bench/results/*.json` are read back;
9. the cost per million tasks on Lambda prices, from the figures above;
10. the last CPU profile of a leg, `bench/results/profile_leg.json`, read back as it is
   (`python -m bench.profile_leg --tree before=<worktree>` makes it; it is not run here:
   a "before" needs another commit's worktree), and marked stale in BENCHMARKS.md when
   it measured another worker tree than HEAD's.

`--quick` (make bench QUICK=1) shrinks every size so the whole thing takes about a
minute and a half; the figures are noisier.

This module only runs things and gathers their figures: the machine facts and the
/proc sampler are in `bench.sampler`, the cost model in `bench.cost`, and the report in
`bench.report`, whose words are in `bench/templates/`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import budget, crawl, fanout, hop_overhead, prefix, throughput, versus
from bench.cost import cost_model, recompute
from bench.report import render
from bench.sampler import Contention, machine_facts

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_JSON = BENCH_DIR / "results.json"
BENCHMARKS_MD = REPO_ROOT / "BENCHMARKS.md"
EXTERNAL = ("tasklist_scaling", "parse_cost", "fetch_cost")
TEN_MILLION = 10_000_000
VERSUS_KEYS = (
    "latency_vs_crawlee_default",
    "latency_vs_scrapy_default",
    "latency_vs_aiohttp_64",
    "fast_vs_aiohttp_64",
    "cpu_ms_per_page",
    "cpu_ms_per_page_plain_loop",
)
"""Issue 15's keys, copied from the comparison to the top of bench/results.json."""
FANOUT_KEYS = (
    "fanout_efficiency_4",
    "fanout_efficiency_16",
    "fanout_efficiency_64",
    "straggler_wall_ratio",
    "cost_per_million_tasks_fanout_usd",
)
"""Issue 11's keys, copied from bench/results/fanout.json to the top of bench/results.json."""
PREFIX_KEYS = prefix.PREFIX_KEYS
"""Issue 16's keys, copied from bench/results/prefix.json to the top of bench/results.json."""
CRAWL_KEYS = (
    "crawl_vs_crawlee",
    "crawl_vs_crawlee_16",
    "crawl_vs_scrapy",
    "crawl_peak_rss_mb_100k",
    "crawl_peak_rss_mb_1m",
)
"""Issue 12's keys, copied from bench/results/crawl.json to the top of bench/results.json."""


@dataclass(frozen=True)
class Plan:
    pages: int
    warm_legs: int
    cold_runs: int
    external_timeout_s: float


FULL = Plan(pages=5000, warm_legs=20, cold_runs=3, external_timeout_s=900)
QUICK = Plan(pages=1500, warm_legs=8, cold_runs=2, external_timeout_s=300)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run_all", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, about 90 s")
    parser.add_argument(
        "--huge", action="store_true", help="let bench.tasklist_scaling add its 10M case"
    )
    parser.add_argument("--skip-external", action="store_true", help="only this issue's benches")
    parser.add_argument("--workdir", type=Path, help="keep the containers' logs here")
    parser.add_argument(
        "--bench-python",
        default=str(versus.BENCH_PYTHON),
        help="the interpreter of the peers' virtualenv (make bench-setup builds .venv-bench)",
    )
    parser.add_argument("--skip-versus", action="store_true", help="no comparison with peers")
    parser.add_argument("--skip-fanout", action="store_true", help="no fan-out bench")
    parser.add_argument("--skip-prefix", action="store_true", help="no prefix-run bench")
    parser.add_argument("--skip-crawl", action="store_true", help="no crawl bench")
    parser.add_argument(
        "--crawl-only",
        action="store_true",
        help="measure only the crawl bench; keep the rest of bench/results.json as it is",
    )
    parser.add_argument(
        "--fanout-only",
        action="store_true",
        help="measure only the fan-out bench; keep the rest of bench/results.json as it is",
    )
    parser.add_argument(
        "--prefix-only",
        action="store_true",
        help="measure only the prefix-run bench; keep the rest of bench/results.json as it is",
    )
    parser.add_argument(
        "--versus-only",
        action="store_true",
        help="measure only the comparison; keep the rest of bench/results.json as it is",
    )
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="measure nothing: redo the cost table and BENCHMARKS.md from bench/results.json",
    )
    args = parser.parse_args(argv)
    if args.render_only:
        return render_only()
    with Contention() as contention:
        if args.versus_only:
            return versus_only(args, contention)
        if args.fanout_only:
            return fanout_only(args, contention)
        if args.prefix_only:
            return prefix_only(args, contention)
        if args.crawl_only:
            return crawl_only(args, contention)
        return _main(args, contention)


def _main(args: argparse.Namespace, contention: Contention) -> int:
    plan = QUICK if args.quick else FULL
    started = time.monotonic()
    machine = machine_facts()
    _say(f"machine: {machine['cpu_model']}, nproc {machine['nproc']}, {machine['python']}")

    _say(f"throughput: baseline crawler, then baton, {plan.pages} pages each ...")
    config = throughput.ThroughputConfig(pages=plan.pages)
    contention.label = "throughput"
    tp, run = throughput.measure(config, args.workdir)
    _say(
        f"  baseline {tp['baseline']['pages_per_s']} pages/s, baton "
        f"{tp['baton']['pages_per_s']} pages/s over {tp['baton']['legs']} legs: "
        f"ratio {tp['throughput_ratio']}"
    )

    _say("hop overhead: probe legs in fresh processes, and the run's leg boundaries ...")
    contention.label = "hop_overhead"
    hop = hop_overhead.figures(
        hop_overhead.probe(
            hop_overhead.HopConfig(
                tasks=plan.pages, warm_legs=plan.warm_legs, cold_runs=plan.cold_runs
            )
        ),
        hop_overhead.chain_hops(run),
    )
    _say(f"  warm {hop['hop_overhead_ms_warm']} ms, cold {hop['hop_overhead_ms_cold']} ms")

    _say("budget use: measured per leg, modelled at 900 s ...")
    bud = budget.figures(run, hop)
    _say(
        f"  {bud['budget_use']} at {config.timeout_s:g} s; "
        f"{bud['budget_use_900s_model']} at 900 s (model)"
    )

    compared = None if args.skip_versus else run_versus(args, contention)
    fanned = None if args.skip_fanout else run_fanout(args, contention)
    prefixed = None if args.skip_prefix else run_prefix(args, contention)
    crawled = None if args.skip_crawl else run_crawl(args, contention)

    external: dict[str, Any] = {}
    if not args.skip_external:
        for name in EXTERNAL:
            _say(f"{name} ...")
            contention.label = name
            external[name] = run_external(name, args.quick, args.huge, plan.external_timeout_s)
            _say(f"  {external[name]['status']} ({external[name].get('seconds', 0):.0f} s)")
    scaling = external.get("tasklist_scaling") or {"data": _read_json("tasklist_scaling")}
    rss, rss_note = peak_rss_10m(scaling.get("data"))
    if rss is None and scaling.get("previous_10m_rows"):
        rss, rss_note = peak_rss_10m({"rows": scaling["previous_10m_rows"]})
        rss_note += f"; from an earlier --huge run (written {scaling['previous_10m_written']})"

    cost = cost_model(tp, run, hop, bud)
    machine["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    machine["other_runnable_processes"] = contention.summary()
    results = {
        "throughput_ratio": tp["throughput_ratio"],
        "budget_use": bud["budget_use"],
        "hop_overhead_ms_warm": hop["hop_overhead_ms_warm"],
        "hop_overhead_ms_cold": hop["hop_overhead_ms_cold"],
        "peak_rss_mb_10m": rss,
        "peak_rss_mb_10m_note": rss_note,
        "throughput_ratio_e2e": tp["throughput_ratio_e2e"],
        "budget_use_900s_model": bud["budget_use_900s_model"],
        "budget_use_900s_model_real_s3": bud["model"]["scenarios"]["real_s3_and_pages"][
            "budget_use"
        ],
        "cost_per_million_tasks_usd": cost["headline"]["total_usd"],
        "quick": args.quick,
        "machine": machine,
        "seconds": round(time.monotonic() - started, 1),
        "throughput": tp,
        "hop_overhead": hop,
        "budget": bud,
        "cost": cost,
        "external": {name: _strip(found) for name, found in external.items()},
        "profile": _read_json("profile_leg"),
    }
    results = _with_fanout(_with_versus(results, compared), fanned or _read_json("fanout"))
    results = _with_prefix(results, prefixed or _read_json("prefix"))
    results = _with_crawl(results, crawled or _read_json("crawl"))
    RESULTS_JSON.write_text(json.dumps(results, indent=2, default=str) + "\n")
    BENCHMARKS_MD.write_text(render(results))
    _say(f"wrote {RESULTS_JSON.relative_to(REPO_ROOT)} and {BENCHMARKS_MD.name}")
    return 0


def run_versus(args: argparse.Namespace, contention: Contention) -> dict[str, Any]:
    plan = versus.QUICK if args.quick else versus.FULL
    # absolute(), not resolve(): the venv's python is a symlink out of the venv.
    config = replace(plan, bench_python=str(Path(args.bench_python).absolute()))
    _say(
        f"versus: baton, Crawlee, Scrapy, plain requests, aiohttp; {config.pages} pages, "
        f"{config.rounds} rounds, 2 origins of {config.hosts} hosts ..."
    )
    contention.label = "versus"
    compared = versus.measure(config, args.workdir, contention, say=_say)
    for key in VERSUS_KEYS:
        _say(f"  {key}: {compared.get(key)}")
    return compared


def versus_only(args: argparse.Namespace, contention: Contention) -> int:
    """Measure the comparison alone, into the last results (the rest kept as measured)."""
    results = json.loads(RESULTS_JSON.read_text())
    compared = run_versus(args, contention)
    compared["machine"] = machine_facts() | {"other_runnable_processes": contention.summary()}
    results = _with_versus(results, compared)
    results["profile"] = _read_json("profile_leg") or results.get("profile")
    RESULTS_JSON.write_text(json.dumps(results, indent=2, default=str) + "\n")
    BENCHMARKS_MD.write_text(render(results))
    _say(
        f"wrote the comparison into {RESULTS_JSON.relative_to(REPO_ROOT)} and {BENCHMARKS_MD.name}"
    )
    return 0


def _with_versus(results: dict[str, Any], compared: dict[str, Any] | None) -> dict[str, Any]:
    """Issue 15's keys at the top, the whole comparison under `versus`, the commit measured."""
    if compared is None:
        return results
    top = {key: compared.get(key) for key in VERSUS_KEYS}
    return results | top | {"runtime": runtime_tree(), "versus": compared}


def run_fanout(args: argparse.Namespace, contention: Contention) -> dict[str, Any]:
    """bench.fanout in this process (one bench at a time); also writes its results file."""
    config = fanout.QUICK if args.quick else fanout.FULL
    _say(
        f"fanout: {config.tasks} tasks over C = {', '.join(map(str, config.chains))}, "
        f"{config.rounds} rounds, and the straggler at C = {config.straggler_chains} ..."
    )
    contention.label = "fanout"
    mark = len(contention.samples)
    found = fanout.measure(config, args.workdir, contention, say=_say)
    found["machine"] = machine_facts() | {
        "other_runnable_processes": {"fanout": contention.since(mark)}
    }
    found["runtime"] = runtime_tree()
    found["quick"] = args.quick
    fanout.RESULTS_FILE.write_text(json.dumps(found, indent=2, default=str) + "\n")
    for key in FANOUT_KEYS:
        _say(f"  {key}: {found.get(key)}")
    return found


def fanout_only(args: argparse.Namespace, contention: Contention) -> int:
    """Measure the fan-out bench alone, into the last results (the rest kept as measured)."""
    results = json.loads(RESULTS_JSON.read_text())
    results = _with_fanout(results, run_fanout(args, contention))
    RESULTS_JSON.write_text(json.dumps(results, indent=2, default=str) + "\n")
    BENCHMARKS_MD.write_text(render(results))
    _say(f"wrote the fan-out into {RESULTS_JSON.relative_to(REPO_ROOT)} and {BENCHMARKS_MD.name}")
    return 0


def _with_fanout(results: dict[str, Any], fanned: Any) -> dict[str, Any]:
    """Issue 11's keys at the top, the bench (without its runs) under `fanout`."""
    if not isinstance(fanned, dict) or not fanned.get("scaling"):
        return results
    top = {key: fanned.get(key) for key in FANOUT_KEYS}
    return results | top | {"fanout": {k: v for k, v in fanned.items() if k != "runs"}}


def run_prefix(args: argparse.Namespace, contention: Contention) -> dict[str, Any]:
    """bench.prefix in this process (one bench at a time); also writes its results file."""
    config = prefix.QUICK if args.quick else prefix.FULL
    _say(
        f"prefix: {config.objects:,} objects listed and presigned, {config.checksum_objects:,} "
        f"checksummed, plain loop and baton at C = {', '.join(map(str, config.chains))} ..."
    )
    found = prefix.run(config, args.workdir, args.quick, say=_say, contention=contention)
    prefix.RESULTS_FILE.write_text(json.dumps(found, indent=2, default=str) + "\n")
    return found


def prefix_only(args: argparse.Namespace, contention: Contention) -> int:
    """Measure the prefix-run bench alone, into the last results (the rest kept as measured).
    `--render-only` folds an existing bench/results/prefix.json without measuring."""
    results = json.loads(RESULTS_JSON.read_text())
    results = _with_prefix(results, run_prefix(args, contention))
    RESULTS_JSON.write_text(json.dumps(results, indent=2, default=str) + "\n")
    BENCHMARKS_MD.write_text(render(results))
    _say(
        f"wrote the prefix runs into {RESULTS_JSON.relative_to(REPO_ROOT)} and {BENCHMARKS_MD.name}"
    )
    return 0


def _with_prefix(results: dict[str, Any], found: Any) -> dict[str, Any]:
    """Issue 16's keys at the top, the bench (without its runs) under `prefix`."""
    if not isinstance(found, dict) or not found.get("plain"):
        return results
    top = {key: found.get(key) for key in PREFIX_KEYS}
    return results | top | {"prefix": {k: v for k, v in found.items() if k != "runs"}}


def run_crawl(args: argparse.Namespace, contention: Contention) -> dict[str, Any]:
    """bench.crawl in this process (one bench at a time); also writes its results file."""
    plan = crawl.QUICK if args.quick else crawl.FULL
    config = replace(plan, bench_python=str(Path(args.bench_python).absolute()))
    _say(
        f"crawl: baton (1 and 16 chains) and Crawlee (default, {config.tuned}) on "
        f"{config.hosts} hosts of {config.pages_per_host} pages, {config.rounds} rounds ..."
    )
    found = crawl.run(config, args.workdir, quick=args.quick, contention=contention, say=_say)
    crawl.RESULTS_FILE.write_text(json.dumps(found, indent=2, default=str) + "\n")
    for key in CRAWL_KEYS:
        _say(f"  {key}: {found.get(key)}")
    return found


def crawl_only(args: argparse.Namespace, contention: Contention) -> int:
    """Measure the crawl bench alone, into the last results (the rest kept as measured)."""
    results = json.loads(RESULTS_JSON.read_text())
    results = _with_crawl(results, run_crawl(args, contention))
    RESULTS_JSON.write_text(json.dumps(results, indent=2, default=str) + "\n")
    BENCHMARKS_MD.write_text(render(results))
    _say(f"wrote the crawl into {RESULTS_JSON.relative_to(REPO_ROOT)} and {BENCHMARKS_MD.name}")
    return 0


def _with_crawl(results: dict[str, Any], crawled: Any) -> dict[str, Any]:
    """Issue 12's keys at the top, the bench (without its runs) under `crawl`."""
    if not isinstance(crawled, dict) or not crawled.get("table"):
        return results
    top = {key: crawled.get(key) for key in CRAWL_KEYS}
    return results | top | {"crawl": {k: v for k, v in crawled.items() if k != "runs"}}


def runtime_tree() -> dict[str, Any]:
    """The commit measured, and the runtime's tree in it (a bar compares these with HEAD's)."""

    def git(*args: str) -> str | None:
        done = subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=False
        )
        return done.stdout.strip() if done.returncode == 0 else None

    paths = ("worker", "cache", "handler.py")
    changed = git("status", "--porcelain", "--", *paths) or ""
    return {
        "commit": git("rev-parse", "HEAD"),
        "trees": {path: git("rev-parse", f"HEAD:{path}") for path in paths},
        "uncommitted": [line.strip() for line in changed.splitlines()],
    }


def render_only() -> int:
    """Rewrite the derived parts (cost, BENCHMARKS.md) of the last results, measuring nothing."""
    results = json.loads(RESULTS_JSON.read_text())
    results["cost"] = recompute(results)
    params = results["budget"]["model"]["parameters"]
    if "commit_interval_ms" not in params:  # results from before these were recorded
        from worker.budget import TimeBudget

        policy = TimeBudget(margin_ms=int(params.get("margin_ms", 2000)))
        params["commit_interval_ms"] = policy.commit_interval_ms
        params["max_plan"] = policy.max_plan
    results["cost_per_million_tasks_usd"] = results["cost"]["headline"]["total_usd"]
    results["profile"] = _read_json("profile_leg") or results.get("profile")
    results = _with_fanout(results, _read_json("fanout"))
    results = _with_prefix(results, _read_json("prefix"))
    results = _with_crawl(results, _read_json("crawl"))
    RESULTS_JSON.write_text(json.dumps(results, indent=2, default=str) + "\n")
    BENCHMARKS_MD.write_text(render(results))
    _say(f"rewrote the cost in {RESULTS_JSON.relative_to(REPO_ROOT)}, and {BENCHMARKS_MD.name}")
    return 0


# --- the other engineer's benchmarks ---------------------------------------------------


def run_external(name: str, quick: bool, huge: bool, timeout_s: float) -> dict[str, Any]:
    """Run `python -m bench.<name>` if it exists; read back bench/results/<name>.json."""
    if not (BENCH_DIR / f"{name}.py").exists():
        return {"status": "absent", "data": _read_json(name)}
    command = [sys.executable, "-m", f"bench.{name}"]
    options = subprocess.run(
        [*command, "--help"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False
    ).stdout
    if quick and "--quick" in options:
        command.append("--quick")
    if huge and not quick and "--huge" in options:
        command.append("--huge")
    previous = _ten_million_rows(_read_json(name))
    previous_at = _mtime(BENCH_DIR / "results" / f"{name}.json")
    if not previous:
        previous, previous_at = _carried_10m_rows(name)
    started = time.monotonic()
    wall = time.time()
    try:
        done = subprocess.run(
            command,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {
            "status": f"timed out after {timeout_s:.0f} s",
            "command": command[2:],
            "data": None,
        }
    path = BENCH_DIR / "results" / f"{name}.json"
    fresh = path.exists() and path.stat().st_mtime >= wall - 1
    found = {
        "status": "ok" if done.returncode == 0 and fresh else f"exit {done.returncode}",
        "command": command[2:],
        "seconds": round(time.monotonic() - started, 1),
        "stderr_tail": done.stderr[-2000:] if done.returncode else "",
        "data": _read_json(name) if fresh else None,
    }
    if previous and not _ten_million_rows(found["data"]):
        # A run without --huge rewrote the file: keep the 10M rows an earlier run measured.
        found["previous_10m_rows"] = previous
        found["previous_10m_written"] = previous_at
    return found


def _carried_10m_rows(name: str) -> tuple[list[dict[str, Any]], str | None]:
    """10M rows the last bench/results.json held (measured, or carried from before)."""
    last = _read_json_path(RESULTS_JSON)
    found = (last.get("external") or {}).get(name) if isinstance(last, dict) else None
    if not isinstance(found, dict):
        return [], None
    rows = _ten_million_rows(found.get("data"))
    if rows:
        return rows, str((last.get("machine") or {}).get("date"))
    return list(found.get("previous_10m_rows") or []), found.get("previous_10m_written")


def _read_json_path(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _ten_million_rows(data: Any) -> list[dict[str, Any]]:
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        return []
    return [r for r in data["rows"] if isinstance(r, dict) and r.get("tasks") == TEN_MILLION]


def _mtime(path: Path) -> str | None:
    if not path.exists():
        return None
    return datetime.fromtimestamp(path.stat().st_mtime, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _read_json(name: str) -> Any:
    path = BENCH_DIR / "results" / f"{name}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def peak_rss_10m(scaling: Any) -> tuple[float | None, str]:
    """The 10M case's peak RSS from bench.tasklist_scaling's rows (the highest phase)."""
    if not isinstance(scaling, dict):
        return None, "bench/results/tasklist_scaling.json is absent or unreadable"
    if isinstance(scaling.get("peak_rss_mb_10m"), int | float):
        return float(scaling["peak_rss_mb_10m"]), "reported by bench.tasklist_scaling"
    rows = [r for r in scaling.get("rows", []) if r.get("tasks") == TEN_MILLION]
    if not rows:
        return None, (
            "the 10M case was not run: make bench HUGE=1 (python -m bench.tasklist_scaling --huge)"
        )
    top = max(rows, key=lambda r: float(r.get("rss_peak_mb") or 0))
    return round(float(top["rss_peak_mb"]), 1), (
        f"peak RSS (VmHWM) of the process loading 10M tasks, highest phase: "
        f"{top.get('mode')} / {top.get('phase')}"
    )


def _strip(found: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in found.items() if k != "stderr_tail" or v}


def _say(text: str) -> None:
    print(text, flush=True)


if __name__ == "__main__":
    sys.exit(main())
