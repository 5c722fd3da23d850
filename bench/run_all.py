"""`make bench`: run every benchmark, write bench/results.json and BENCHMARKS.md.

    python -m bench.run_all [--quick] [--huge] [--skip-external]

Runs, in this order (one at a time, so they do not share the two cores):

1. `bench.throughput`: baton with many legs vs the plain crawler (`throughput_ratio`);
   its run also feeds 2 and 3;
2. `bench.hop_overhead`: the probe (warm and cold legs, every AWS call timed) and the
   leg boundaries of run 1 (`hop_overhead_ms_warm`, `hop_overhead_ms_cold`);
3. `bench.budget`: budget use measured in run 1 (`budget_use`) and modelled at 900 s;
4. the other benchmarks, as subprocesses, if present: `bench.tasklist_scaling`
   (`--quick` in quick mode; `--huge` adds the 10M case that `peak_rss_mb_10m` comes
   from) and `bench.parse_cost`; their `bench/results/*.json` are read back;
5. the cost per million tasks on Lambda prices, from the figures above.

`--quick` (make bench QUICK=1) shrinks every size so the whole thing takes about a
minute and a half; the figures are noisier.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import budget, hop_overhead, throughput

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_JSON = BENCH_DIR / "results.json"
BENCHMARKS_MD = REPO_ROOT / "BENCHMARKS.md"
EXTERNAL = ("tasklist_scaling", "parse_cost")
TEN_MILLION = 10_000_000

PRICES = {
    "lambda_gb_s": 0.0000166667,
    "lambda_request": 0.20 / 1e6,
    "s3_put": 0.005 / 1000,
    "s3_get": 0.0004 / 1000,
    "logs_gb": 0.50,
}
"""x86 Lambda and S3 Standard request prices (us-east-1); CloudWatch Logs ingestion."""
MEMORY_MB = 1024
"""infra/template.yaml's default MemorySize."""
VCPU_FULL_AT_MB = 1769
"""Lambda allocates CPU in proportion to memory: one full vCPU at 1,769 MB."""
BATCH_REQUESTS = {"put": 2, "get": 1}
"""Per batch (worker/leg.py): results PUT and checkpoint CAS; the cancel HEAD (GET tier)."""


@dataclass(frozen=True)
class Plan:
    pages: int
    warm_legs: int
    cold_runs: int
    external_timeout_s: float


FULL = Plan(pages=5000, warm_legs=20, cold_runs=3, external_timeout_s=900)
QUICK = Plan(pages=1500, warm_legs=8, cold_runs=2, external_timeout_s=300)


class Contention:
    """Samples once a second how many threads outside this benchmark's tree are runnable.

    The machine may be shared (other test runs); this says how much, per bench.
    """

    def __init__(self) -> None:
        self.samples: list[tuple[str, int]] = []
        self.label = "setup"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="contention", daemon=True)

    def __enter__(self) -> Contention:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for label in dict.fromkeys(label for label, _ in self.samples):
            counts = [n for lab, n in self.samples if lab == label]
            out[label] = {
                "mean_runnable": round(sum(counts) / len(counts), 2),
                "busy_share": round(sum(1 for n in counts if n) / len(counts), 3),
                "seconds": len(counts),
            }
        return out

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.samples.append((self.label, foreign_runnable()))


def foreign_runnable() -> int:
    """Runnable threads of processes that are neither this one nor its descendants."""
    parents: dict[int, int] = {}
    running: dict[int, int] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            fields = stat[stat.rfind(")") + 2 :].split()
            pid, ppid = int(proc.name), int(fields[1])
            parents[pid] = ppid
            if ppid in (0, 2):  # the kernel's own threads
                continue
            for task in (proc / "task").iterdir():
                line = (task / "stat").read_text()
                if line[line.rfind(")") + 2] == "R":
                    running[pid] = running.get(pid, 0) + 1
        except (OSError, ValueError, IndexError):
            continue
    me = os.getpid()

    def ours(pid: int) -> bool:
        while pid > 1:
            if pid == me:
                return True
            pid = parents.get(pid, 0)
        return False

    return sum(count for pid, count in running.items() if not ours(pid))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run_all", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, about 90 s")
    parser.add_argument(
        "--huge", action="store_true", help="let bench.tasklist_scaling add its 10M case"
    )
    parser.add_argument("--skip-external", action="store_true", help="only this issue's benches")
    parser.add_argument("--workdir", type=Path, help="keep the containers' logs here")
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="measure nothing: redo the cost table and BENCHMARKS.md from bench/results.json",
    )
    args = parser.parse_args(argv)
    if args.render_only:
        return render_only()
    with Contention() as contention:
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
    }
    RESULTS_JSON.write_text(json.dumps(results, indent=2, default=str) + "\n")
    BENCHMARKS_MD.write_text(render(results))
    _say(f"wrote {RESULTS_JSON.relative_to(REPO_ROOT)} and {BENCHMARKS_MD.name}")
    return 0


def render_only() -> int:
    """Rewrite the derived parts (cost, BENCHMARKS.md) of the last results, measuring nothing."""
    results = json.loads(RESULTS_JSON.read_text())
    baton = results["throughput"]["baton"]
    keep = (
        "memory_mb",
        "requests_per_batch",
        "requests_per_leg",
        "requests_per_run_residual",
        "s3_requests_measured",
        "log_bytes_per_task",
    )
    inputs = {key: results["cost"][key] for key in keep} | {
        "prices": PRICES,
        "cpu_ms_per_page": baton["cpu_ms_per_page"] or 0.0,
        "max_memory_used_mb": baton["max_memory_used_mb"],
    }
    results["cost"] = cost_rows(inputs, results["budget"]["model"]["scenarios"])
    params = results["budget"]["model"]["parameters"]
    if "largest_batch" not in params:  # results from before these were recorded
        from worker.budget import TimeBudget

        policy = TimeBudget(margin_ms=int(params.get("margin_ms", 2000)))
        params["target_batch_ms"] = policy.target_batch_ms
        params["largest_batch"] = policy.largest_batch()
    results["cost_per_million_tasks_usd"] = results["cost"]["headline"]["total_usd"]
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


# --- cost per million tasks ------------------------------------------------------------


def cost_model(
    tp: dict[str, Any], run: throughput.BatonRun, hop: dict[str, Any], bud: dict[str, Any]
) -> dict[str, Any]:
    """Dollars per million tasks on Lambda + S3 prices, from the modelled 900 s legs."""
    calls = hop["probe"]["warm_ops"]["calls_per_leg"]
    per_leg = {
        "get": calls.get("GetObject", 0) + calls.get("HeadObject", 0),
        "put": calls.get("PutObject", 0) + calls.get("ListObjectsV2", 0),
    }
    measured = run.s3_requests
    batches, legs = len(run.batches), len(run.legs)
    billed = {
        "put": measured.get("put", 0) + measured.get("list", 0),
        "get": measured.get("get", 0),
    }
    per_run = {
        tier: billed[tier] - BATCH_REQUESTS[tier] * batches - per_leg[tier] * legs
        for tier in ("put", "get")
    }
    inputs = {
        "prices": PRICES,
        "memory_mb": MEMORY_MB,
        "requests_per_batch": BATCH_REQUESTS,
        "requests_per_leg": per_leg,
        "requests_per_run_residual": per_run,
        "s3_requests_measured": measured | {"batches": batches, "legs": legs},
        "log_bytes_per_task": round(run.log_bytes / max(1, tp["baton"]["pages"]), 1),
        "cpu_ms_per_page": tp["baton"]["cpu_ms_per_page"] or 0.0,
        "max_memory_used_mb": tp["baton"]["max_memory_used_mb"],
    }
    return cost_rows(inputs, bud["model"]["scenarios"])


def cost_rows(inputs: dict[str, Any], scenarios: dict[str, Any]) -> dict[str, Any]:
    """The cost table from the inputs above and the model's legs (no measuring)."""
    per_leg, log_bytes = inputs["requests_per_leg"], inputs["log_bytes_per_task"]
    real = scenarios["real_s3_and_pages"]
    pages_per_s = real["tasks"] / (real["leg_ms"] / 1000)
    rows = {
        f"real_{memory}mb": _cost(real, memory, per_leg, log_bytes)
        | {"vcpu_share_used": round(_vcpu_share(pages_per_s, inputs, memory), 3)}
        for memory in (MEMORY_MB, 512, 256, 128)
    }
    measured = scenarios["measured"]
    rows["loopback_1024mb"] = _cost(measured, MEMORY_MB, per_leg, log_bytes) | {
        "vcpu_share_used": round(
            _vcpu_share(measured["tasks"] / (measured["leg_ms"] / 1000), inputs, MEMORY_MB), 3
        )
    }
    return inputs | {
        "pages_per_s_per_leg": round(pages_per_s, 1),
        "headline": rows[f"real_{MEMORY_MB}mb"],
        "rows": rows,
    }


def _vcpu_share(pages_per_s: float, inputs: dict[str, Any], memory_mb: int) -> float:
    """The share of the CPU Lambda gives `memory_mb` that the measured CPU per page needs."""
    return float(pages_per_s * inputs["cpu_ms_per_page"] / 1000 / (memory_mb / VCPU_FULL_AT_MB))


def _cost(
    leg: dict[str, Any], memory_mb: int, per_leg: dict[str, int], log_bytes_per_task: float
) -> dict[str, Any]:
    tasks_per_leg = leg["tasks"]
    tasks_per_batch = tasks_per_leg / max(1, leg["batches"])
    legs = 1e6 / tasks_per_leg
    batches = 1e6 / tasks_per_batch
    parts = {
        "lambda_compute": legs * leg["leg_ms"] / 1000 * memory_mb / 1024 * PRICES["lambda_gb_s"],
        "lambda_requests": legs * PRICES["lambda_request"],
        "s3_put_list": (batches * BATCH_REQUESTS["put"] + legs * per_leg["put"]) * PRICES["s3_put"],
        "s3_get_head": (batches * BATCH_REQUESTS["get"] + legs * per_leg["get"]) * PRICES["s3_get"],
        "cloudwatch_logs": 1e6 * log_bytes_per_task / 1e9 * PRICES["logs_gb"],
    }
    total = sum(parts.values())
    return {
        "memory_mb": memory_mb,
        "tasks_per_leg": tasks_per_leg,
        "tasks_per_batch": round(tasks_per_batch, 1),
        "leg_s": round(leg["leg_ms"] / 1000, 1),
        "billed_ms_per_task": leg["billed_ms_per_task"],
        "legs_per_million": round(legs, 1),
        "batches_per_million": round(batches, 0),
        "usd": {name: round(value, 5) for name, value in parts.items()},
        "share": {name: round(value / total, 4) for name, value in parts.items()},
        "total_usd": round(total, 4),
    }


# --- machine facts ---------------------------------------------------------------------


def machine_facts() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor()
    nproc = _run(["nproc"]) or str(os.cpu_count())
    memory = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    dirty = _run(["git", "status", "--porcelain", "--", "worker", "cache", "handler.py"]) or ""
    return {
        "nproc": int(nproc) if nproc.isdigit() else nproc,
        "cpu_model": model,
        "memory": memory,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _run(["git", "rev-parse", "--short", "HEAD"]),
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
        "uncommitted_worker_changes": [line.strip() for line in dirty.splitlines()],
    }


def _run(command: list[str]) -> str | None:
    if shutil.which(command[0]) is None:
        return None
    try:
        done = subprocess.run(
            command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _say(text: str) -> None:
    print(text, flush=True)


# --- BENCHMARKS.md ---------------------------------------------------------------------


def render(r: dict[str, Any]) -> str:
    """The whole of BENCHMARKS.md, from the results."""
    m, tp, hop, bud, cost = r["machine"], r["throughput"], r["hop_overhead"], r["budget"], r["cost"]
    base, baton, cfg = tp["baseline"], tp["baton"], tp["config"]
    params = bud["model"]["parameters"]
    chain, probe = hop["chain"] or {}, hop["probe"]
    out: list[str] = []
    add = out.append
    mode = " --quick" if r["quick"] else ""
    add("# Benchmarks\n")
    add(
        f"Generated by `make bench` (`python -m bench.run_all{mode}`) in {r['seconds']:.0f} s "
        f"on {m['date']}, commit `{m['commit']}`"
        + (
            " with uncommitted changes in "
            + ", ".join(c.split()[-1] for c in m["uncommitted_worker_changes"])
            if m["uncommitted_worker_changes"]
            else ""
        )
        + ". Every figure here is in `bench/results.json`; rerun to refresh them. "
        "`make bench QUICK=1` is the short version (noisier), `make bench HUGE=1` adds the "
        "10M-task list.\n"
    )
    add(
        f"Machine: {m['cpu_model']}, `nproc` {m['nproc']}, {m['memory']} RAM, "
        f"Python {m['python']}, {m['platform']}. Everything runs on loopback: the embedded "
        "stack (moto's S3 over HTTP, the local Lambda runtime) and the sample site "
        "(`worker/local/site.py`). The benches run one at a time. " + _contention_line(m) + "\n"
    )
    add("## Headline figures\n")
    add("| figure | value | target | against | how |")
    add("| --- | --- | --- | --- | --- |")
    add(
        f"| `throughput_ratio` | **{_f(r['throughput_ratio'], 3)}** | >= 0.9 | plain crawler: "
        f"{base['pages_per_s']} pages/s | baton {baton['pages_per_s']} pages/s over "
        f"{baton['legs']} legs of a {cfg['timeout_s']:g} s timeout, same pages, same "
        f"{cfg['concurrency']} threads |"
    )
    add(
        f"| `throughput_ratio_e2e` | {_f(r['throughput_ratio_e2e'], 3)} | | crawler process "
        f"start to exit: {base['e2e_pages_per_s']} pages/s | upload to final checkpoint: "
        f"{baton['e2e_pages_per_s']} pages/s (adds leg 0's cold start) |"
    )
    add(
        f"| `budget_use` ({bud['measured']['timeout_s']:g} s timeout) | "
        f"**{_pct(r['budget_use'])}** | >= 95 % | each leg's wall time | time in "
        f"`run_tasks` / leg wall time over all legs (summary `task_time_share`); lowest "
        f"leg {_pct(bud['measured']['budget_use_min'])} |"
    )
    add(
        f"| `budget_use` at 900 s, model | **{_pct(r['budget_use_900s_model'], 2)}** | "
        f">= 99 % | leg wall time | measured per-leg and per-batch costs on loopback, "
        f"replayed through `worker.budget.TimeBudget` (below) |"
    )
    add(
        f"| ... with real S3 and real pages | {_pct(r['budget_use_900s_model_real_s3'], 2)} | "
        f">= 99 % | leg wall time | same, S3 calls at {params['s3_call_ms_real']:g} ms and "
        f"pages at {params['page_ms_real']:g} ms (assumptions) |"
    )
    add(
        f"| `hop_overhead_ms_warm` | **{_f(r['hop_overhead_ms_warm'], 1)} ms** | | | "
        f"probe: median warm leg with no batch (claim CAS, reads, 304 revalidation, "
        f"orphan LIST, cancel HEAD, hand-off CAS + invoke), {probe['warm_legs']} legs; in "
        f"the chain: {_f(hop['chain_ms_warm'], 1)} ms beyond a "
        f"{_f(chain.get('batch_boundary_ms_median'), 1)} ms batch boundary |"
    )
    add(
        f"| `hop_overhead_ms_cold` | **{_f(r['hop_overhead_ms_cold'], 1)} ms** | | | "
        f"probe: process start + imports + `Container.create` + first leg (list downloaded "
        f"and parsed), {probe['cold_runs']} processes; in the chain: "
        f"{_f(hop['chain_ms_cold'], 1)} ms (adds the local runtime's own start-up) |"
    )
    add(
        f"| `peak_rss_mb_10m` | **{_f(r['peak_rss_mb_10m'], 1)}** | | | "
        f"{r['peak_rss_mb_10m_note']} (`bench/tasklist_scaling.py`) |"
    )
    parse = _parse_cost_line(r["external"].get("parse_cost", {}).get("data"))
    if parse:
        add(f"| parse + extract per page | {parse} | | selectolax | `bench/parse_cost.py` |")
    add(
        f"| CPU per page | {baton['cpu_ms_per_page']} ms | | crawler: "
        f"{base['cpu_ms_per_page']} ms | CPU time of the containers (all of baton's "
        f"work in them) / pages |"
    )
    add(
        f"| cost per million tasks | **${cost['headline']['total_usd']:.3f}** | | | "
        f"{cost['headline']['memory_mb']} MB, 900 s legs, real S3 and page latency "
        f"assumed (below) |"
    )
    add("")
    _throughput_section(add, tp)
    _budget_section(add, bud, cfg)
    _hop_section(add, hop)
    _external_section(add, r["external"])
    _cost_section(add, cost, params)
    _findings_section(add, r)
    add("## Not measured here\n")
    add(
        "- Real AWS: no Lambda async-invoke queue latency, no real S3 latency (both are "
        "assumptions above, stated where used), no Firecracker cold start.\n"
        "- Real sites: the pages come from one loopback server with lognormal delays; "
        "no DNS, TLS, slow starts or bandwidth limits.\n"
        "- Concurrency above the default 8, other memory sizes (cost is scaled, not run), "
        "more than one run at a time, the sweep.\n"
        "- Faults: the throughput run has no broken pages and no injected S3 or Lambda "
        "faults (the chaos suite covers correctness, not speed).\n"
    )
    return "\n".join(out)


def _contention_line(m: dict[str, Any]) -> str:
    """How busy the rest of the machine was while each bench ran."""
    other = m.get("other_runnable_processes") or {}
    parts = [
        f"{label} {v['mean_runnable']:.2f} ({_pct(v['busy_share'], 0)} of {v['seconds']} s)"
        for label, v in other.items()
        if label != "setup"
    ]
    if not parts:
        return ""
    busy = (other.get("throughput") or {}).get("mean_runnable", 0.0)
    verdict = (
        " Other work shared the machine during the throughput bench, so its figures are "
        "noisier than on an idle machine."
        if busy >= 0.2
        else ""
    )
    return (
        "Runnable threads outside this benchmark, sampled each second (mean, and the "
        "share of seconds with any): " + "; ".join(parts) + "." + verdict
    )


def _throughput_section(add: Any, tp: dict[str, Any]) -> None:
    base, baton, cfg = tp["baseline"], tp["baton"], tp["config"]
    add("## Throughput\n")
    add(
        f"{cfg['pages']:,} pages of {cfg['page_bytes'][0] // 1000}-"
        f"{cfg['page_bytes'][1] // 1000} KB, each delayed by a lognormal latency (median "
        f"{cfg['latency_median_ms']:g} ms, sigma {cfg['latency_sigma']:g}, at most "
        f"{cfg['latency_max_ms']:g} ms; seeded per path and hit, and the hits are reset "
        "between the two sides, so both see the same delays). First the plain crawler "
        "(`bench/baseline_crawler.py`: `worker.processor.run_tasks` with the same "
        "processor and `Fetcher` over the whole list at once, in a process of its own), "
        "then baton, then the crawler again (its rate is the mean of both rounds). "
        "Baton: the list is uploaded under `tasks/` and the chain runs on the "
        f"embedded stack with a {cfg['timeout_s']:g} s timeout, {cfg['memory_mb']} MB, "
        "production settings otherwise (margin 2 s, batch size 25, adaptive).\n"
    )
    add("| | plain crawler | baton |")
    add("| --- | --- | --- |")
    rounds = ", ".join(str(x) for x in base.get("rounds_pages_per_s", []))
    add(
        f"| pages/s (working time) | {base['pages_per_s']} (rounds before and after baton: "
        f"{rounds}) | {baton['pages_per_s']} |"
    )
    add(f"| working time, s | {base['elapsed_s']} | {baton['duration_s']} |")
    add(f"| pages/s end to end | {base['e2e_pages_per_s']} | {baton['e2e_pages_per_s']} |")
    add(
        f"| thread fill (task time / threads x wall) | {_pct(base['fill'])} | "
        f"{_pct(baton['fill'])} (inside batches) |"
    )
    add(f"| CPU ms per page | {base['cpu_ms_per_page']} | {baton['cpu_ms_per_page']} |")
    add(
        f"| legs / batches | - | {baton['legs']} / {baton['batches']} (median "
        f"{baton['tasks_per_batch_median']} tasks, {baton['batch_ms_median']} ms) |"
    )
    add(
        f"| containers | 1 process | {baton['cold_starts']} cold, {baton['warm_starts']} "
        f"warm; {baton['timeouts']} timeouts, {baton['retries']} retries |"
    )
    add(
        f"| results | {base['pages']} rows | {baton['results_rows']} rows, "
        f"{baton['duplicate_rows']} duplicates, {baton['missing_rows']} missing |"
    )
    add(
        f"| peak RSS (VmHWM) | {base['peak_rss_mb']} MB | {baton['max_memory_used_mb']} MB "
        "(the largest container) |"
    )
    add("")
    br = tp.get("time_breakdown_s") or {}
    if br:
        run = br["run"]
        add(
            "Where baton's working time went (from the batch log lines; the busy part is "
            "thread-time in tasks divided by the thread count):\n"
        )
        add("| part | seconds | share |")
        add("| --- | --- | --- |")
        labels = {
            "tasks_busy": "tasks (packed onto the threads)",
            "batch_idle": "threads idle inside batches (waiting for a batch's slowest task)",
            "batch_boundaries": "between batches of a leg (results PUT, checkpoint CAS, "
            "cancel HEAD)",
            "leg_hops": "between legs (hand-off, next leg's start-up)",
            "first_batch_wait": "leg 0 before its first batch",
            "after_last_batch": "after the last batch (final checkpoint)",
        }
        for key, label in labels.items():
            add(f"| {label} | {br.get(key, 0):.2f} | {_pct(br.get(key, 0) / run if run else 0)} |")
        ideal = base["elapsed_s"] * base["fill"]
        add(
            f"\nThe crawler's own idle share is {_pct(1 - base['fill'])} "
            f"({base['elapsed_s'] - ideal:.2f} s); the batch barrier is the largest "
            "difference between the two.\n"
        )


def _budget_section(add: Any, bud: dict[str, Any], cfg: dict[str, Any]) -> None:
    measured, model = bud["measured"], bud["model"]
    params, scen, val = model["parameters"], model["scenarios"], model["validation"]["model"]
    add("## Time-budget use\n")
    add(
        f"Measured in the throughput run ({measured['timeout_s']:g} s timeout): each leg "
        "logs `budget_use` = time inside `run_tasks` / its wall time.\n"
    )
    add("| leg | exit | wall ms | budget_use | left at exit, ms | tasks | batches | list cache |")
    add("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for leg in measured["legs"]:
        cache = {True: "304 hit", False: "downloaded", None: "-"}[leg["cache_hit"]]
        add(
            f"| {leg['leg']} | {leg['exit']} | {leg['elapsed_ms']} | {_pct(leg['budget_use'])} "
            f"| {leg['remaining_ms']} | {leg['processed']} | {leg['batches']} | {cache} |"
        )
    add(
        f"\nOver all legs {_pct(measured['budget_use'])}; share of the billed invocation "
        f"time (REPORT Duration, which also counts the handler's start-up and leg 0's run "
        f"creation) {_pct(measured['billed_task_share'])}. A handed-off leg used "
        f"{_pct(measured['timeout_use_median'])} of its timeout: it stops with "
        f"{measured['remaining_at_handoff_ms_median']} ms left (the 2 s margin), which is "
        "not billed but costs more legs.\n"
    )
    add("### Model for a 900 s timeout\n")
    add(
        "A leg claims the run and revalidates the list (fixed head *h*), then works "
        "batches while the time left is above the policy's reserve "
        "(`worker/budget.py`: `margin_ms` + 1.2 x the p90 task latency; each batch sized "
        "to what fits at the observed rate, at most `target_batch_ms` "
        f"({_f(params.get('target_batch_ms'), 0)} ms) and `largest_batch()` "
        f"({params.get('largest_batch', 'n/a')} tasks)), each batch taking *b* plus a "
        "boundary *o* (results "
        "PUT, checkpoint CAS, cancel HEAD), then hands off (fixed tail *t*). With *R* the "
        "time left when the policy stops:\n"
    )
    add("```")
    add("W          = T - R + t                      leg wall time (billed)")
    add("n          = (W - h - t) / (b + o)          batches")
    add("budget_use = n * b / W = (W - h - t) / W  *  b / (b + o)")
    add("```\n")
    add(
        "At T = 900 s, (W - h - t) / W is 0.9999+, so what is left is b / (b + o): the "
        "per-batch S3 round trips against the batch length. `bench/budget.py` evaluates "
        "this by replaying a leg through the worker's own `TimeBudget` (so a policy "
        "change is picked up) with the run's measured task latencies dealt to "
        f"{params['concurrency']} threads as `pool.map` does, h = "
        f"{params['head_ms']:.1f} ms and t = {params['tail_ms']:.1f} ms from the probe's "
        f"warm legs, o = {params['boundary_ms']:.1f} ms from the run's batch boundaries. "
        f"Checked at {cfg['timeout_s']:g} s it gives {_pct(val['budget_use'])} and "
        f"{val['tasks']} tasks per leg, against {_pct(measured['budget_use'])} and "
        f"{_median_tasks(measured)} measured.\n"
    )
    add(
        "| scenario at 900 s | o (ms) | task latency | batch | b (ms) | budget_use "
        "| timeout use | billed ms/task |"
    )
    add("| --- | --- | --- | --- | --- | --- | --- | --- |")
    names = {
        "measured": "as measured (loopback S3, bench pages)",
        "real_s3": f"S3 calls at {params['s3_call_ms_real']:g} ms",
        "real_pages": f"pages at {params['page_ms_real']:g} ms mean",
        "real_s3_and_pages": "both",
    }
    for key, label in names.items():
        row = scen[key]
        lat = params["task_latency_ms_mean"] * row["assumptions"]["latency_scale"]
        b = row["task_ms"] / row["batches"] if row["batches"] else 0
        add(
            f"| {label} | {row['assumptions']['boundary_ms']:.1f} | {lat:.0f} ms | "
            f"{row['tasks_per_batch_median']:g} tasks | {b:.0f} | "
            f"**{_pct(row['budget_use'], 2)}** | {_pct(row['timeout_use'], 2)} | "
            f"{row['billed_ms_per_task']} |"
        )
    add(
        f"\nThe real-S3 rows add {params['s3_call_ms_real']:g} - "
        f"{params['s3_call_ms_local']:.1f} ms (measured locally) to each of the 3 "
        "per-batch and 8 per-leg S3 calls; the real-page rows scale every measured task "
        f"latency so the mean is {params['page_ms_real']:g} ms. Both are assumptions: "
        "S3's own guidance puts small-request median latency in the tens of "
        "milliseconds.\n"
    )


def _median_tasks(measured: dict[str, Any]) -> str:
    handed = [leg["processed"] for leg in measured["legs"] if leg["exit"] == "handed_off"]
    return f"{sorted(handed)[len(handed) // 2]}" if handed else "-"


def _hop_section(add: Any, hop: dict[str, Any]) -> None:
    chain, probe = hop["chain"] or {}, hop["probe"]
    add("## Per-hop overhead\n")
    add(
        "**In the chain**: from a leg's last batch line to the start of the next leg's "
        "first batch, minus the median gap between two batches inside a leg "
        f"({_f(chain.get('batch_boundary_ms_median'), 1)} ms over "
        f"{chain.get('batch_boundaries', 0)} boundaries), i.e. what a leg boundary costs "
        "beyond an ordinary batch boundary. It includes the local runtime's dispatch "
        "(pipe and thread), which stands in for Lambda's async queue.\n"
    )
    if chain.get("hops"):
        add("| hop | container | gap ms | overhead ms |")
        add("| --- | --- | --- | --- |")
        for h in chain["hops"]:
            kind = "new (cold)" if h["cold"] else "warm"
            pair = f"{h['from_leg']} -> {h['from_leg'] + 1}"
            add(f"| {pair} | {kind} | {h['gap_ms']} | {h['overhead_ms']} |")
        add("")
    ops = probe["warm_ops"]
    add(
        "**Probed** (`bench/hop_overhead.py`): the real `handler.handler` in a process of "
        "its own runs legs whose remaining time is pinned at the margin, so each does its "
        "whole fixed path and hands off at once (to a no-op function); every boto3 call "
        f"is timed. {probe['warm_legs']} warm legs, {probe['cold_runs']} cold processes.\n"
    )
    add("| warm leg, per leg | calls | ms |")
    add("| --- | --- | --- |")
    for name, ms in ops["ms_per_leg"].items():
        add(f"| {name} | {ops['calls_per_leg'].get(name, '')} | {ms} |")
    add(f"| Python (JSON, logging, EMF) | | {ops['other_ms']} |")
    add(f"| **total (median)** | | **{probe['warm_ms_median']}** (p90 {probe['warm_ms_p90']}) |")
    parts = probe["cold_parts_ms"]
    add(
        f"\nCold: process start {parts['process_start']} ms + imports {parts['imports']} ms "
        f"+ `Container.create` {parts['container_create']} ms + first leg "
        f"{parts['first_leg']} ms (task list downloaded and parsed, recursion config read) "
        f"= {probe['cold_ms_median']} ms (median). The GetObject calls are the checkpoint, "
        "run.json and the list's revalidation (`IfNoneMatch`, a 304); the PutObjects the "
        "claim CAS and the hand-off CAS; the ListObjectsV2 the orphan check; the "
        "HeadObject the cancel check.\n"
    )


def _external_section(add: Any, external: dict[str, Any]) -> None:
    add("## Task-list scaling and parse cost (bench/tasklist_scaling.py, bench/parse_cost.py)\n")
    if not external:
        add("Not run (`--skip-external`).\n")
        return
    for name, found in external.items():
        add(f"### {name}\n")
        add(
            f"Status: {found.get('status')}"
            + (f", {found['seconds']:.0f} s" if found.get("seconds") else "")
            + (f", `{' '.join(found['command'])}`" if found.get("command") else "")
            + ".\n"
        )
        data = found.get("data")
        if not isinstance(data, dict):
            add("No results file.\n" if data is None else f"`{str(data)[:500]}`\n")
            continue
        scalars = {k: v for k, v in data.items() if not isinstance(v, dict | list)}
        if scalars:
            add(", ".join(f"{k}: {_cell(v)}" for k, v in scalars.items()) + ".\n")
        for key, value in data.items():
            if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
                _table(add, [dict(v) for v in value])
            elif (
                isinstance(value, dict)
                and value
                and all(isinstance(v, dict) for v in value.values())
            ):
                _table(add, [{key: name} | dict(v) for name, v in value.items()])
            elif isinstance(value, list | dict):
                add(f"{key}: `{json.dumps(value)[:300]}`\n")
        if found.get("previous_10m_rows"):
            add(
                f"10M rows kept from an earlier `--huge` run "
                f"({found.get('previous_10m_written')}):\n"
            )
            _table(add, found["previous_10m_rows"])


def _table(add: Any, rows: list[dict[str, Any]]) -> None:
    keys: list[str] = []
    for row in rows:
        keys += [k for k, v in row.items() if k not in keys and not isinstance(v, dict | list)]
    add("| " + " | ".join(keys) + " |")
    add("| " + " | ".join("---" for _ in keys) + " |")
    for row in rows:
        add("| " + " | ".join(_cell(row.get(k, "")) for k in keys) + " |")
    add("")


def _parse_cost_line(data: Any) -> str:
    """'selectolax 0.17 ms, lxml 0.41 ms (2.4x), ...' if parse_cost reports parsers so."""
    parsers = data.get("parsers") if isinstance(data, dict) else None
    if not isinstance(parsers, dict):
        return ""
    parts = []
    for name, figures in parsers.items():
        if not isinstance(figures, dict) or "extract_ms" not in figures:
            continue
        ratio = figures.get("extract_ratio")
        times = f" ({float(ratio):.1f}x)" if ratio and float(ratio) != 1.0 else ""
        parts.append(f"{name} {float(figures['extract_ms']):.2f} ms{times}")
    return ", ".join(parts)


def _cost_section(add: Any, cost: dict[str, Any], params: dict[str, Any]) -> None:
    head, prices = cost["headline"], cost["prices"]
    add("## Cost per million tasks\n")
    add(
        f"Lambda x86 ${prices['lambda_gb_s']:.10f} per GB-second and $0.20 per million "
        f"requests; S3 PUT/COPY/POST/LIST $0.005 per 1,000, GET/HEAD $0.0004 per 1,000; "
        f"CloudWatch Logs ingestion ${prices['logs_gb']:.2f} per GB (us-east-1). "
        f"Assumed: {head['memory_mb']} MB (the template's default), 900 s timeout, "
        f"concurrency {params['concurrency']}, pages at {params['page_ms_real']:g} ms mean "
        f"on the real network and S3 calls at {params['s3_call_ms_real']:g} ms (the "
        "`real_s3_and_pages` leg of the model above). Not counted: data transfer (none "
        "in-region), storage of the results, the per-run objects (run.json, summary, "
        "markers: a handful of requests per run), cold-start INIT time (two per run).\n"
    )
    add("```")
    add("legs/M    = 1e6 / tasks_per_leg            batches/M = 1e6 / tasks_per_batch")
    add("compute   = legs/M * leg_s * GB * $/GB-s   requests  = legs/M * $0.20/1e6")
    add("S3 PUT    = (2 * batches/M + put_per_leg * legs/M) * $0.005/1000")
    add("S3 GET    = (1 * batches/M + get_per_leg * legs/M) * $0.0004/1000")
    add("logs      = 1e6 * log_bytes_per_task / 1e9 * $0.50")
    add("```\n")
    per_leg, residual = cost["requests_per_leg"], cost["requests_per_run_residual"]
    meas = cost["s3_requests_measured"]
    add(
        f"Per batch: 2 PUT-tier (results, checkpoint CAS) + 1 GET-tier (cancel HEAD). Per "
        f"leg (probe, measured): {per_leg['put']} PUT-tier (claim CAS, hand-off CAS, "
        f"orphan LIST) + {per_leg['get']} GET-tier (checkpoint, run.json, list "
        "revalidation, cancel HEAD). The throughput run's S3 server counted "
        f"{meas.get('put', 0)} PUT, {meas.get('list', 0)} LIST and {meas.get('get', 0)} "
        f"GET/HEAD over {meas['batches']} batches and {meas['legs']} legs, which leaves "
        f"{residual['put']} PUT-tier and {residual['get']} GET-tier per run (run.json, "
        "checkpoint, markers, summary; leg 0 reads no checkpoint and the last leg hands "
        f"off to nobody). Logs: {cost['log_bytes_per_task']} bytes per task.\n"
    )
    add("| component | $ per million tasks | share |")
    add("| --- | --- | --- |")
    labels = {
        "lambda_compute": "Lambda compute (GB-seconds)",
        "lambda_requests": "Lambda requests (one per leg)",
        "s3_put_list": "S3 PUT/LIST",
        "s3_get_head": "S3 GET/HEAD",
        "cloudwatch_logs": "CloudWatch Logs",
    }
    for key, label in labels.items():
        add(f"| {label} | {head['usd'][key]:.4f} | {_pct(head['share'][key])} |")
    add(f"| **total** | **{head['total_usd']:.3f}** | |")
    add(
        f"\nFrom the model: {head['tasks_per_leg']:,} tasks per {head['leg_s']} s leg, "
        f"{head['tasks_per_batch']} tasks per batch, {head['billed_ms_per_task']} billed ms "
        f"per task, {head['legs_per_million']} legs and {head['batches_per_million']:.0f} "
        "batches per million.\n"
    )
    add("| variant | $ per million | compute share | CPU needed of what Lambda gives |")
    add("| --- | --- | --- | --- |")
    for key, row in cost["rows"].items():
        label = f"{row['memory_mb']} MB, " + (
            "loopback latencies as measured" if key.startswith("loopback") else "real latencies"
        )
        if key == f"real_{head['memory_mb']}mb":
            label += " (headline)"
        warn = " (CPU-bound)" if row["vcpu_share_used"] > 0.7 else ""
        add(
            f"| {label} | {row['total_usd']:.3f} | {_pct(row['share']['lambda_compute'])} | "
            f"{_pct(row['vcpu_share_used'])}{warn} |"
        )
    add(
        f"\nCompute dominates and scales with billed time per task, i.e. with page latency "
        f"/ concurrency. The work is light on CPU: {cost['cpu_ms_per_page']} ms of CPU "
        f"per page (measured in the containers) at {cost['pages_per_s_per_leg']} pages/s, "
        "against the CPU Lambda allocates in proportion to memory (1 vCPU at 1,769 MB). "
        f"The containers peaked at {cost['max_memory_used_mb']} MB RSS here (task lists "
        "this size; see `peak_rss_mb_10m` for large ones), so 256 or 512 MB, or a higher "
        "`BATON_CONCURRENCY` at 1024 MB, would cut the cost nearly in proportion; the "
        "memory sizes are scaled from the model, not run.\n"
    )


def _findings_section(add: Any, r: dict[str, Any]) -> None:
    tp, bud = r["throughput"], r["budget"]
    tp["baton"].setdefault("report_max_memory_mb", "n/a")
    params, scen = bud["model"]["parameters"], bud["model"]["scenarios"]
    br = tp.get("time_breakdown_s") or {}
    run_s = br.get("run") or 1.0
    real = scen["real_s3_and_pages"]
    b_real = real["task_ms"] / real["batches"] if real["batches"] else 0.0
    o_real = params["boundary_ms_real_s3"]
    o_two = o_real - (params["s3_call_ms_real"])
    variants = bud.get("variants") or {}
    add("## What limits the worker (for the worker's owners)\n")
    add(
        f"1. **Batch barrier.** Threads idle inside batches "
        f"{_pct(br.get('batch_idle', 0) / run_s)} of the run (fill "
        f"{_pct(tp['baton']['fill'])} vs the crawler's {_pct(tp['baseline']['fill'])}): "
        "`pool.map` over a batch waits for its slowest task before the next batch starts, "
        "and the batches at the end of a leg are small. This is most of the gap to the "
        "crawler, and it does not shrink with longer timeouts; longer batches (item 3) "
        "spread it thinner.\n"
        f"2. **Serial S3 round trips per batch.** Results PUT, checkpoint CAS and the "
        f"cancel HEAD run between batches with every thread idle: "
        f"{params['boundary_ms']:.1f} ms per batch on loopback "
        f"({_pct(br.get('batch_boundaries', 0) / run_s)} of the run), about "
        f"{o_real:.0f} ms against real S3, which caps budget use at b / (b + o) = "
        f"{_pct(real['budget_use'], 2)} at 900 s with real latencies (b = {b_real:.0f} ms). "
        f"Checking the cancel marker every few seconds instead of every batch would take "
        f"one of the three calls out (o about {o_two:.0f} ms: "
        f"{_pct(b_real / (b_real + o_two) if b_real else 0, 2)}); overlapping the results "
        "PUT with the next batch would take another.\n"
        f"3. **Batch length.** Batches stop at 8 x `BATON_BATCH_SIZE` = 200 tasks before "
        f"they reach `target_batch_ms` (5 s) when pages are fast (here "
        f"{tp['baton']['tasks_per_batch_median']} tasks in {tp['baton']['batch_ms_median']} "
        f"ms), so the per-batch cost weighs more; with o = {o_real:.0f} ms, 99 % needs b >= "
        f"{99 * o_real / 1000:.1f} s. (`largest_batch()` also bounds the one-task-at-a-time "
        "stretch after a leg dies, so a larger cap makes that recovery longer.)\n"
        f"4. **Per-leg calls.** A warm leg boundary costs {_f(r['hop_overhead_ms_warm'], 1)} "
        f"ms here and 8 S3/Lambda calls; at 900 s that is noise (under 0.1 %), at short "
        "timeouts it is the orphan LIST (priced as a PUT) and the run.json GET on every leg "
        "that could go (the LIST only matters after a leg died holding the run).\n"
        f"5. **The local runtime's REPORT overstates memory.** `Max Memory Used` is "
        "`ru_maxrss`, which a process started from a large parent inherits (Linux keeps it "
        f"over fork and exec): the containers reported {tp['baton']['report_max_memory_mb']} "
        f"MB while their own peak (VmHWM) was {tp['baton']['max_memory_used_mb']} MB. "
        "`worker/local/lambda_runtime.py` should read VmHWM from /proc/self/status.\n"
    )
    if variants:
        add(
            "What the proposed changes would give, by the same model at 900 s with S3 calls "
            f"at {params['s3_call_ms_real']:g} ms (budget_use, tasks per batch, billed ms "
            "per task):\n"
        )
        names = {
            "real_s3": "bench pages",
            "real_s3_and_pages": f"{params['page_ms_real']:g} ms pages",
        }
        labels = list(next(iter(variants.values())))
        add("| policy | " + " | ".join(names[k] for k in variants) + " |")
        add("| --- | " + " | ".join("---" for _ in variants) + " |")
        for label in labels:
            cells = [
                f"{_pct(v[label]['budget_use'], 2)}, {v[label]['tasks_per_batch_median']:g}, "
                f"{v[label]['billed_ms_per_task']}"
                for v in variants.values()
            ]
            add(f"| {label} | " + " | ".join(cells) + " |")
        add("")


def _pct(value: Any, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    return f"{float(value) * 100:.{digits}f} %"


def _f(value: Any, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    return f"{float(value):.{digits}f}"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
