"""BENCHMARKS.md from bench/results.json: figures formatted here, words in bench/templates/.

`render(results)` fills `templates/BENCHMARKS.md` (string.Template) with the figures
formatted as people read them; the pieces that appear only when their figures exist
(a breakdown, a hop table, the proposed variants, ...) are in `templates/fragments.md`.
Nothing here measures: `python -m bench.run_all --render-only` redoes the file from the
last results.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from string import Template
from typing import Any

TEMPLATES = Path(__file__).resolve().parent / "templates"

BREAKDOWN_LABELS = {
    "tasks_busy": "tasks (packed onto the threads)",
    "batch_idle": (
        "slots idle inside legs (a leg's fixed start, its drain at the end, "
        "new starts held during commits)"
    ),
    "batch_boundaries": (
        "between commit intervals of a leg (none: each starts where the last ended)"
    ),
    "leg_hops": "between legs (hand-off, dispatch to the next leg)",
    "first_batch_wait": "run created to leg 0's start",
    "after_last_batch": "after the last commit (final checkpoint)",
}
COST_LABELS = {
    "lambda_compute": "Lambda compute (GB-seconds)",
    "lambda_requests": "Lambda requests (one per leg)",
    "s3_put_list": "S3 PUT/LIST",
    "s3_get_head": "S3 GET/HEAD",
    "cloudwatch_logs": "CloudWatch Logs",
}
LIST_CACHE = {True: "304 hit", False: "downloaded", None: "-"}


def render(r: dict[str, Any]) -> str:
    """The whole of BENCHMARKS.md, from the results."""
    values = (
        _header(r)
        | _headline(r)
        | _throughput(r["throughput"])
        | _budget(r["budget"], r["throughput"]["config"])
        | _hop(r["hop_overhead"])
        | {"external": _external(r["external"])}
        | _cost(r["cost"], r["budget"]["model"]["parameters"])
        | _findings(r)
        | _versus(r)
        | {"profile": _profile(r.get("profile"), r.get("runtime"))}
        | _fanout(r.get("fanout"))
        | _prefix(r.get("prefix"))
        | {"crawl": _crawl(r.get("crawl"))}
    )
    return _template("BENCHMARKS.md").substitute(values)


# --- one function per part of the document, each returning its placeholders ------------


def _header(r: dict[str, Any]) -> dict[str, Any]:
    m = r["machine"]
    changed = m["uncommitted_worker_changes"]
    return {
        "mode": " --quick" if r["quick"] else "",
        "seconds": f"{r['seconds']:.0f}",
        "date": m["date"],
        "commit": m["commit"],
        "uncommitted": " "
        + fragment("uncommitted", paths=", ".join(c.split()[-1] for c in changed))
        if changed
        else "",
        "cpu_model": m["cpu_model"],
        "nproc": m["nproc"],
        "memory": m["memory"],
        "python": m["python"],
        "platform": m["platform"],
        "contention": contention_line(m),
    }


def contention_line(m: dict[str, Any]) -> str:
    """How busy the rest of the machine was while each bench ran."""
    other = m.get("other_runnable_processes") or {}
    parts = [
        fragment(
            "contention_part",
            label=label,
            mean_runnable=f"{v['mean_runnable']:.2f}",
            busy_share=pct(v["busy_share"], 0),
            seconds=v["seconds"],
        )
        for label, v in other.items()
        if label != "setup"
    ]
    if not parts:
        return ""
    busy = (other.get("throughput") or {}).get("mean_runnable", 0.0)
    verdict = " " + fragment("contention_verdict") if busy >= 0.2 else ""
    return fragment("contention", parts="; ".join(parts), verdict=verdict)


def _headline(r: dict[str, Any]) -> dict[str, Any]:
    tp, hop, bud = r["throughput"], r["hop_overhead"], r["budget"]
    base, baton, cfg = tp["baseline"], tp["baton"], tp["config"]
    params = bud["model"]["parameters"]
    probe = hop["probe"]
    head = r["cost"]["headline"]
    parsers = parse_cost_line(r["external"].get("parse_cost", {}).get("data"))
    return {
        "throughput_ratio": num(r["throughput_ratio"], 3),
        "base_pages_per_s": base["pages_per_s"],
        "baton_pages_per_s": baton["pages_per_s"],
        "baton_legs": baton["legs"],
        "timeout_s": f"{cfg['timeout_s']:g}",
        "concurrency": cfg["concurrency"],
        "throughput_ratio_e2e": num(r["throughput_ratio_e2e"], 3),
        "base_e2e_pages_per_s": base["e2e_pages_per_s"],
        "baton_e2e_pages_per_s": baton["e2e_pages_per_s"],
        "budget_timeout_s": f"{bud['measured']['timeout_s']:g}",
        "budget_use": pct(r["budget_use"]),
        "budget_use_min": pct(bud["measured"]["budget_use_min"]),
        "budget_use_900s_model": pct(r["budget_use_900s_model"], 2),
        "budget_use_900s_model_real_s3": pct(r["budget_use_900s_model_real_s3"], 2),
        "s3_call_ms_real": f"{params['s3_call_ms_real']:g}",
        "page_ms_real": f"{params['page_ms_real']:g}",
        "hop_overhead_ms_warm": num(r["hop_overhead_ms_warm"], 1),
        "warm_legs": probe["warm_legs"],
        "chain_ms_warm": num(hop["chain_ms_warm"], 1),
        "hop_overhead_ms_cold": num(r["hop_overhead_ms_cold"], 1),
        "cold_runs": probe["cold_runs"],
        "chain_ms_cold": num(hop["chain_ms_cold"], 1),
        "peak_rss_mb_10m": num(r["peak_rss_mb_10m"], 1),
        "peak_rss_mb_10m_note": r["peak_rss_mb_10m_note"],
        "parse_row": "\n" + fragment("parse_row", parsers=parsers) if parsers else "",
        "baton_cpu_ms_per_page": baton["cpu_ms_per_page"],
        "base_cpu_ms_per_page": base["cpu_ms_per_page"],
        "cost_total_usd": f"{head['total_usd']:.3f}",
        "cost_memory_mb": head["memory_mb"],
    }


def _throughput(tp: dict[str, Any]) -> dict[str, Any]:
    base, baton, cfg = tp["baseline"], tp["baton"], tp["config"]
    br = tp.get("time_breakdown_s") or {}
    breakdown = ""
    if br:
        run = br["run"]
        ideal = base["elapsed_s"] * base["fill"]
        breakdown = optional(
            fragment(
                "breakdown",
                rows=rows(
                    [label, f"{br.get(key, 0):.2f}", pct(br.get(key, 0) / run if run else 0)]
                    for key, label in BREAKDOWN_LABELS.items()
                ),
                idle_share=pct(1 - base["fill"]),
                idle_s=f"{base['elapsed_s'] - ideal:.2f}",
            )
        )
    return {
        "pages": f"{cfg['pages']:,}",
        "page_kb_low": cfg["page_bytes"][0] // 1000,
        "page_kb_high": cfg["page_bytes"][1] // 1000,
        "latency_median_ms": f"{cfg['latency_median_ms']:g}",
        "latency_sigma": f"{cfg['latency_sigma']:g}",
        "latency_max_ms": f"{cfg['latency_max_ms']:g}",
        "memory_mb": cfg["memory_mb"],
        "base_rounds": ", ".join(str(x) for x in base.get("rounds_pages_per_s", [])),
        "base_elapsed_s": base["elapsed_s"],
        "baton_duration_s": baton["duration_s"],
        "base_fill": pct(base["fill"]),
        "baton_fill": pct(baton["fill"]),
        "baton_batches": baton["batches"],
        "tasks_per_batch_median": baton["tasks_per_batch_median"],
        "batch_ms_median": baton["batch_ms_median"],
        "cold_starts": baton["cold_starts"],
        "warm_starts": baton["warm_starts"],
        "timeouts": baton["timeouts"],
        "retries": baton["retries"],
        "base_pages": base["pages"],
        "results_rows": baton["results_rows"],
        "duplicate_rows": baton["duplicate_rows"],
        "missing_rows": baton["missing_rows"],
        "base_peak_rss_mb": base["peak_rss_mb"],
        "baton_max_memory_used_mb": baton["max_memory_used_mb"],
        "breakdown": breakdown,
    }


def _budget(bud: dict[str, Any], cfg: dict[str, Any]) -> dict[str, Any]:
    measured, model = bud["measured"], bud["model"]
    params, scen, val = model["parameters"], model["scenarios"], model["validation"]["model"]
    names = {
        "measured": "as measured (loopback S3, bench pages)",
        "real_s3": f"S3 calls at {params['s3_call_ms_real']:g} ms",
        "real_pages": f"pages at {params['page_ms_real']:g} ms mean",
        "real_s3_and_pages": "both",
    }
    scenarios = []
    for key, label in names.items():
        row = scen[key]
        lat = params["task_latency_ms_mean"] * row["assumptions"]["latency_scale"]
        scenarios.append(
            [
                label,
                f"{row['assumptions']['commit_ms']:.1f}",
                f"{lat:.0f} ms",
                f"{row['tasks_per_commit']:g}",
                pct(row["fill"], 2),
                f"**{pct(row['budget_use'], 2)}**",
                pct(row["timeout_use"], 2),
                row["billed_ms_per_task"],
            ]
        )
    return {
        "leg_rows": rows(
            [
                leg["leg"],
                leg["exit"],
                leg["elapsed_ms"],
                pct(leg["budget_use"]),
                leg["remaining_ms"],
                leg["processed"],
                leg["batches"],
                LIST_CACHE[leg["cache_hit"]],
            ]
            for leg in measured["legs"]
        ),
        "billed_task_share": pct(measured["billed_task_share"]),
        "timeout_use_median": pct(measured["timeout_use_median"]),
        "remaining_at_handoff_ms_median": measured["remaining_at_handoff_ms_median"],
        "commit_interval_ms": num(params.get("commit_interval_ms"), 0),
        "max_plan": params.get("max_plan", "n/a"),
        "model_concurrency": params["concurrency"],
        "head_ms": f"{params['head_ms']:.1f}",
        "tail_ms": f"{params['tail_ms']:.1f}",
        "commit_ms": f"{params['commit_ms']:.1f}",
        "put_ms": f"{params['put_ms']:.1f}",
        "validation_budget_use": pct(val["budget_use"]),
        "validation_fill": pct(val["fill"]),
        "validation_tasks": val["tasks"],
        "median_tasks": _median_tasks(measured),
        "scenario_rows": rows(scenarios),
        "s3_call_ms_local": f"{params['s3_call_ms_local']:.1f}",
    }


def _median_tasks(measured: dict[str, Any]) -> str:
    handed = [leg["processed"] for leg in measured["legs"] if leg["exit"] == "handed_off"]
    return f"{sorted(handed)[len(handed) // 2]}" if handed else "-"


def _hop(hop: dict[str, Any]) -> dict[str, Any]:
    chain, probe = hop["chain"] or {}, hop["probe"]
    chain_table = ""
    if chain.get("hops"):
        chain_table = optional(
            fragment(
                "chain_table",
                rows=rows(
                    [
                        f"{h['from_leg']} -> {h['from_leg'] + 1}",
                        "new (cold)" if h["cold"] else "warm",
                        h["gap_ms"],
                        h["overhead_ms"],
                    ]
                    for h in chain["hops"]
                ),
            )
        )
    ops, parts = probe["warm_ops"], probe["cold_parts_ms"]
    return {
        "commit_gap_ms_median": num(chain.get("commit_gap_ms_median"), 1),
        "commit_gaps": chain.get("commit_gaps", 0),
        "chain_table": chain_table,
        "warm_op_rows": rows(
            [name, ops["calls_per_leg"].get(name, ""), ms] for name, ms in ops["ms_per_leg"].items()
        ),
        "other_ms": ops["other_ms"],
        "warm_ms_median": probe["warm_ms_median"],
        "warm_ms_p90": probe["warm_ms_p90"],
        "process_start_ms": parts["process_start"],
        "imports_ms": parts["imports"],
        "container_create_ms": parts["container_create"],
        "first_leg_ms": parts["first_leg"],
        "cold_ms_median": probe["cold_ms_median"],
    }


def _external(external: dict[str, Any]) -> str:
    """Whatever bench/tasklist_scaling.py and bench/parse_cost.py reported, as tables."""
    if not external:
        return fragment("external_skipped") + "\n"
    out: list[str] = []
    add = out.append
    for name, found in external.items():
        add(f"### {name}\n")
        add(
            fragment(
                "external_status",
                status=found.get("status"),
                seconds=f", {found['seconds']:.0f} s" if found.get("seconds") else "",
                command=f", `{' '.join(found['command'])}`" if found.get("command") else "",
            )
            + "\n"
        )
        data = found.get("data")
        if not isinstance(data, dict):
            add(fragment("external_missing") + "\n" if data is None else f"`{str(data)[:500]}`\n")
            continue
        scalars = {k: v for k, v in data.items() if not isinstance(v, dict | list)}
        if scalars:
            add(", ".join(f"{k}: {cell(v)}" for k, v in scalars.items()) + ".\n")
        for key, value in data.items():
            if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
                add(table([dict(v) for v in value]))
            elif (
                isinstance(value, dict)
                and value
                and all(isinstance(v, dict) for v in value.values())
            ):
                add(table([{key: name} | dict(v) for name, v in value.items()]))
            elif isinstance(value, list | dict):
                add(f"{key}: `{json.dumps(value)[:300]}`\n")
        if found.get("previous_10m_rows"):
            add(fragment("external_previous_10m", written=found.get("previous_10m_written")) + "\n")
            add(table(found["previous_10m_rows"]))
    return "\n".join(out)


def table(records: list[dict[str, Any]]) -> str:
    """A Markdown table of every scalar field in the records, with a blank line after."""
    keys: list[str] = []
    for record in records:
        keys += [k for k, v in record.items() if k not in keys and not isinstance(v, dict | list)]
    return "\n".join(
        [
            "| " + " | ".join(keys) + " |",
            "| " + " | ".join("---" for _ in keys) + " |",
            rows([cell(record.get(k, "")) for k in keys] for record in records),
            "",
        ]
    )


def parse_cost_line(data: Any) -> str:
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


def _cost(cost: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    head, prices = cost["headline"], cost["prices"]
    per_leg, residual = cost["requests_per_leg"], cost["requests_per_run_residual"]
    meas = cost["s3_requests_measured"]
    variants = []
    for key, row in cost["rows"].items():
        label = f"{row['memory_mb']} MB, " + (
            "loopback latencies as measured" if key.startswith("loopback") else "real latencies"
        )
        if key == f"real_{head['memory_mb']}mb":
            label += " (headline)"
        warn = " (CPU-bound)" if row["vcpu_share_used"] > 0.7 else ""
        variants.append(
            [
                label,
                f"{row['total_usd']:.3f}",
                pct(row["share"]["lambda_compute"]),
                f"{pct(row['vcpu_share_used'])}{warn}",
            ]
        )
    return {
        "lambda_gb_s": f"{prices['lambda_gb_s']:.10f}",
        "logs_gb": f"{prices['logs_gb']:.2f}",
        "per_leg_put": per_leg["put"],
        "per_leg_get": per_leg["get"],
        "measured_put": meas.get("put", 0),
        "measured_list": meas.get("list", 0),
        "measured_get": meas.get("get", 0),
        "measured_batches": meas["batches"],
        "measured_legs": meas["legs"],
        "residual_put": residual["put"],
        "residual_get": residual["get"],
        "log_bytes_per_task": cost["log_bytes_per_task"],
        "component_rows": rows(
            [label, f"{head['usd'][key]:.4f}", pct(head["share"][key])]
            for key, label in COST_LABELS.items()
        ),
        "tasks_per_leg": f"{head['tasks_per_leg']:,}",
        "leg_s": head["leg_s"],
        "tasks_per_batch": head["tasks_per_batch"],
        "billed_ms_per_task": head["billed_ms_per_task"],
        "legs_per_million": head["legs_per_million"],
        "batches_per_million": f"{head['batches_per_million']:.0f}",
        "variant_rows": rows(variants),
        "cost_cpu_ms_per_page": cost["cpu_ms_per_page"],
        "pages_per_s_per_leg": cost["pages_per_s_per_leg"],
        "cost_max_memory_used_mb": cost["max_memory_used_mb"],
    }


def _findings(r: dict[str, Any]) -> dict[str, Any]:
    tp, bud = r["throughput"], r["budget"]
    params, scen = bud["model"]["parameters"], bud["model"]["scenarios"]
    br = tp.get("time_breakdown_s") or {}
    run_s = br.get("run") or 1.0
    real = scen["real_s3_and_pages"]
    interval_ms = float(params.get("commit_interval_ms") or 10_000.0)
    o_real = float(params["commit_ms_real_s3"])
    variants = bud.get("variants") or {}
    v = r.get("versus") if isinstance(r.get("versus"), dict) else None
    values = {
        "idle_share": pct(br.get("batch_idle", 0) / run_s),
        "commit_ms": f"{params['commit_ms']:.1f}",
        "o_real": f"{o_real:.0f}",
        "commit_interval_s": f"{interval_ms / 1000:g}",
        "commit_share": pct(o_real / (interval_ms + o_real), 2),
        "real_fill": pct(real["fill"], 2),
        "real_budget_use": pct(real["budget_use"], 2),
        "hop_warm_1": num(r["hop_overhead_ms_warm"], 1),
        "report_max_memory_mb": tp["baton"].get("report_max_memory_mb", "n/a"),
        "level_finding": (level_finding(v) + _tickfix_note(r.get("profile")))
        if v
        else fragment("versus_absent_short"),
        "cpu_finding": cpu_finding(v) if v else fragment("versus_absent_short"),
        "variants": "",
    }
    if variants:
        names = {
            "real_s3": "bench pages",
            "real_s3_and_pages": f"{params['page_ms_real']:g} ms pages",
        }
        labels = list(next(iter(variants.values())))
        values["variants"] = optional(
            fragment(
                "variants",
                s3_call_ms_real=f"{params['s3_call_ms_real']:g}",
                columns=" | ".join(names[k] for k in variants),
                separators=" | ".join("---" for _ in variants),
                rows=rows(
                    [label]
                    + [
                        f"{pct(v[label]['budget_use'], 2)}, {pct(v[label]['fill'], 2)}, "
                        f"{v[label]['tasks_per_commit']:g}, {v[label]['billed_ms_per_task']}"
                        for v in variants.values()
                    ]
                    for label in labels
                ),
            )
        )
    return values


def _median_runs(v: dict[str, Any], origin: str, key: str) -> dict[str, Any] | None:
    """The run of `key` on `origin` with the median rate (the one the table's median is)."""
    mine = [x for x in v.get("runs") or [] if x["origin"] == origin and x["contender"] == key]
    mine = [x for x in mine if not x.get("error")]
    if not mine:
        return None
    return sorted(mine, key=lambda x: x["pages_per_s"])[(len(mine) - 1) // 2]


def _cell_value(v: dict[str, Any], origin: str, key: str, field: str) -> float | None:
    value = ((v.get("table") or {}).get(origin) or {}).get(key, {}).get(field)
    return float(value) if isinstance(value, int | float) else None


def level_finding(v: dict[str, Any]) -> str:
    """Did the autoscaler grow on the latency origin? With the rates it gives and needs."""
    run = _median_runs(v, "latency", "baton_default")
    seen = [lv for lv in (run or {}).get("levels") or [] if lv[1] is not None]
    if run is None or not seen:
        return fragment("level_unknown")
    rate = float(run["pages_per_s"])
    uses = [lv[4] for lv in seen if len(lv) > 4 and lv[4] is not None]
    levels = [int(lv[1]) for lv in seen]
    weights = [max(1, int(lv[2])) for lv in seen]
    mean_level = sum(lv * w for lv, w in zip(levels, weights, strict=True)) / sum(weights)
    latency_ms = 1000 * mean_level / rate if rate else 0.0
    cpu_use = pct(statistics.median(uses), 0) if uses else "n/a"
    if max(levels) <= levels[0]:
        crawlee = _cell_value(v, "latency", "crawlee_default", "pages_per_s_median") or 0.0
        aiohttp = _cell_value(v, "latency", "aiohttp_64", "pages_per_s_median") or 0.0
        return fragment(
            "level_flat",
            levels="-".join(str(x) for x in sorted({min(levels), max(levels)})),
            level=levels[0],
            cpu_use=cpu_use,
            rate=f"{rate:.1f}",
            latency_ms=f"{latency_ms:.0f}",
            crawlee2=f"{2 * crawlee:.0f}",
            need_crawlee=f"{2 * crawlee * latency_ms / 1000:.0f}",
            aiohttp08=f"{0.8 * aiohttp:.0f}",
            need_aiohttp=f"{0.8 * aiohttp * latency_ms / 1000:.0f}",
        )
    return fragment(
        "level_grows",
        first=levels[0],
        high=max(levels),
        cpu_use=pct(uses[-1], 0) if uses else "n/a",
        rate=f"{rate:.1f}",
        mean_level=f"{mean_level:.0f}",
        latency_ms=f"{latency_ms:.0f}",
    )


def _tickfix_note(profile: Any) -> str:
    """What the profile's "tickfix" tree (the proposed one-line change) did by default."""
    runs = (profile or {}).get("runs") if isinstance(profile, dict) else None
    mine = [x for x in runs or [] if x["contender"] == "tickfix" and x["case"] == "default"]
    if not mine or not mine[0].get("levels"):
        return ""
    levels = mine[0]["levels"]
    return " " + fragment(
        "tickfix_note",
        rate=_profile_rate(mine[0]),
        levels=" -> ".join(str(x) for x in levels),
    )


def cpu_finding(v: dict[str, Any]) -> str:
    """CPU per page against the plain loop, and what it means on the fast origin."""
    ours = _cell_value(v, "latency", "baton_default", "cpu_ms_per_page_median")
    plain = _cell_value(v, "latency", "plain_64", "cpu_ms_per_page_median")
    fast_rate = _cell_value(v, "fast", "baton_default", "pages_per_s_median")
    fast_cpu = _cell_value(v, "fast", "baton_default", "cpu_ms_per_page_median")
    aio_rate = _cell_value(v, "fast", "aiohttp_64", "pages_per_s_median")
    aio_cpu = _cell_value(v, "fast", "aiohttp_64", "cpu_ms_per_page_median")
    need = aio_cpu / 0.7 if aio_cpu else None
    return fragment(
        "cpu_finding",
        baton_cpu=num(ours, 2),
        plain_cpu=num(plain, 2),
        baton_crawl=num(_cell_value(v, "latency", "baton_default", "crawl_cpu_ms_per_page_median")),
        plain_crawl=num(_cell_value(v, "latency", "plain_64", "crawl_cpu_ms_per_page_median")),
        fast_rate=num(fast_rate, 0),
        fast_cpu=num(fast_cpu, 2),
        aio_rate=num(aio_rate, 0),
        aio_cpu=num(aio_cpu, 2),
        need_cpu=num(need, 2),
    )


def _verdict(v: dict[str, Any]) -> str:
    """Each key against its target: met, or missed by how much."""
    parts = []
    for name, ratio in v["ratios"].items():
        value, target = ratio["value"], float(ratio["target"])
        if value is None:
            continue
        if value >= target:
            parts.append(fragment("target_met", key=name, value=num(value), target=f"{target:g}"))
        else:
            parts.append(
                fragment(
                    "target_missed",
                    key=name,
                    value=num(value),
                    target=f"{target:g}",
                    gap=num(target - value),
                    share=pct(1 - value / target, 0),
                )
            )
    ours, plain = v.get("cpu_ms_per_page"), v.get("cpu_ms_per_page_plain_loop")
    if ours is not None and plain is not None:
        parts.append(
            fragment(
                "cpu_target",
                value=num(ours),
                verdict="is at most" if ours <= plain else "is above",
                plain=num(plain),
            )
        )
    return " ".join(parts)


def _threads_note(v: dict[str, Any]) -> str:
    default = _cell_value(v, "fast", "baton_default", "pages_per_s_median")
    tuned = _cell_value(v, "fast", "baton_64", "pages_per_s_median")
    if default is None or tuned is None:
        return fragment("threads_unknown")
    return fragment(
        "threads_fewer" if tuned < default else "threads_more",
        fast_64_rate=f"{tuned:.0f}",
        fast_default_rate=f"{default:.0f}",
    )


def _throttle_notes(v: dict[str, Any], labels: dict[str, str]) -> str:
    notes = []
    cfg = v["config"]
    for t in v.get("throttle") or []:
        if t.get("error"):
            continue
        if t["contender"] == "baton_default" and not t["throttled"]:
            notes.append(
                fragment(
                    "throttle_capped",
                    above=cfg["throttle_above"],
                    requests=t["origin_requests"],
                    pages=t["pages"],
                )
            )
        elif t["contender"] == "baton_64_host_64":
            notes.append(
                fragment(
                    "throttle_lifted",
                    label=labels.get(t["contender"], t["contender"]),
                    throttled=t["throttled"],
                    requests=t["origin_requests"],
                    failed=t["failed"],
                    rate=num(t["pages_per_s"], 1),
                )
            )
    return " ".join(notes)


def _versus(r: dict[str, Any]) -> dict[str, Any]:
    """The comparison with other crawlers (bench/versus.py), and its headline rows."""
    v = r.get("versus")
    headline = {
        key: num(r.get(key), 2)
        for key in (
            "latency_vs_crawlee_default",
            "latency_vs_scrapy_default",
            "latency_vs_aiohttp_64",
            "fast_vs_aiohttp_64",
        )
    } | {
        "versus_cpu_ms_per_page": num(r.get("cpu_ms_per_page"), 2),
        "cpu_ms_per_page_plain_loop": num(r.get("cpu_ms_per_page_plain_loop"), 2),
    }
    if not isinstance(v, dict):
        return headline | {"versus": fragment("versus_absent") + "\n"}
    cfg, table, labels = v["config"], v["table"], v["contenders"]
    keys = list(labels)
    origin_names = {"latency": "100-300 ms latency", "fast": "no latency"}

    def cells(origin: str, field: str, digits: int) -> list[str]:
        out = []
        for key in keys:
            c = table[origin][key]
            if "skipped" in c or "missing" in c:
                out.append("n/a")
            else:
                low, mid = c.get(f"{field}_min"), c.get(f"{field}_median")
                out.append(f"{num(low, digits)} / {num(mid, digits)}")
        return out

    runs = v.get("runs") or []
    crawl = [
        f"{labels[k]} {num(table['latency'][k].get('crawl_cpu_ms_per_page_median'), 2)}"
        for k in keys
        if table["latency"][k].get("crawl_cpu_ms_per_page_median") is not None
    ]
    ratio_rows = rows(
        [
            f"`{name}` ({labels.get(ratio['against'], ratio['against'])}, "
            f"{origin_names[ratio['origin']]})",
            f"**{num(ratio['value'], 2)}**",
            num(ratio["of_minimums"], 2),
            f">= {ratio['target']:g}",
        ]
        for name, ratio in v["ratios"].items()
    )
    level_round, level_tables = _level_tables(v, runs)
    all_labels = labels | (v.get("throttle_labels") or {})
    values = {
        "pages": f"{cfg['pages']:,}",
        "page_kb": "-".join(dict.fromkeys(str(b // 1000) for b in cfg["page_bytes"])),
        "latency_origin": v["origins"]["latency"],
        "fast_origin": v["origins"]["fast"],
        "throttle_origin": v["origins"]["throttle"],
        "rounds": cfg["rounds"],
        "column_labels": " | ".join(labels[k] for k in keys),
        "column_separators": " | ".join("---" for _ in keys),
        "rate_rows": rows(
            [origin_names[o], *cells(o, "pages_per_s", 1)] for o in ("latency", "fast")
        ),
        "cpu_rows": rows(
            [origin_names[o], *cells(o, "cpu_ms_per_page", 2)] for o in ("latency", "fast")
        ),
        "ratio_rows": ratio_rows,
        "cpu_ms_per_page": num(v.get("cpu_ms_per_page"), 2),
        "cpu_ms_per_page_plain_loop": num(v.get("cpu_ms_per_page_plain_loop"), 2),
        "fields": _fields_line(v.get("fields_agree") or {}),
        "skipped": " "
        + fragment(
            "skipped",
            peers="; ".join(f"{labels[k]} ({why})" for k, why in v["skipped"].items()),
        )
        if v.get("skipped")
        else "",
        "hosts": cfg["hosts"],
        "latency_net": 1,
        "fast_net": 2,
        "latency_range": "-".join(f"{ms:g}" for ms in cfg["latency_ms"]),
        "timeout_s": f"{cfg['function_timeout_s']:g}",
        "memory_mb": f"{cfg['memory_mb']:,}",
        "tuned": cfg["tuned"],
        "crawl_cpu": ", ".join(crawl) or "n/a",
        "startup_cpu_s": num((v.get("baton_startup") or {}).get("cpu_s"), 2),
        "versions": ", ".join(f"{k} {ver}" for k, ver in v.get("versions", {}).items()) or "n/a",
        "contention": _versus_contention(runs),
        "level_round": level_round,
        "throttle_rows": rows(
            [
                all_labels.get(t["contender"], t["contender"]),
                num(t["pages_per_s"], 1),
                t["failed"],
                t["throttled"],
                t["origin_requests"],
                _level_range(t["levels"]),
            ]
            for t in v.get("throttle") or []
        ),
        "level_tables": level_tables,
        "throttle_notes": _throttle_notes(v, all_labels),
        "verdict": _verdict(v),
        "threads_note": _threads_note(v),
        "level_finding": level_finding(v) + _tickfix_note(r.get("profile")),
        "cpu_finding": cpu_finding(v),
    }
    return headline | {"versus": _template("versus.md").substitute(values)}


def _fields_line(agree: dict[str, Any]) -> str:
    if not agree:
        return ""
    if all(a["agree"] for a in agree.values()):
        counts = {str(next(iter(a["links"].values()), "n/a")) for a in agree.values()}
        return fragment("fields_agree", links=" and ".join(sorted(counts)))
    detail = "; ".join(
        f"{origin}: links {a['links']}" for origin, a in agree.items() if not a["agree"]
    )
    return fragment("fields_differ", detail=detail)


def _versus_contention(runs: list[dict[str, Any]]) -> str:
    means = [r["contention"]["mean_runnable"] for r in runs if r.get("contention")]
    if not means:
        return "The machine's other work was not sampled."
    return fragment(
        "versus_contention",
        median=f"{statistics.median(means):.2f}",
        low=f"{min(means):.2f}",
        high=f"{max(means):.2f}",
    )


LEVEL_ROWS = 12
"""Longest level table: a longer run shows every k-th commit, its first and last included."""


def _level_tables(v: dict[str, Any], runs: list[dict[str, Any]]) -> tuple[str, str]:
    mine = [r for r in runs if r["origin"] == "latency" and r["contender"] == "baton_default"]
    latency = mine[-1] if mine else None
    throttle = [t for t in v.get("throttle") or [] if t["contender"] == "baton_default"]
    tables = []
    for title, run in (
        ("baton default, latency origin", latency),
        ("baton default, throttling origin", throttle[0] if throttle else None),
    ):
        if run is None or not run.get("levels"):
            continue
        levels = run["levels"]
        step = max(1, -(-len(levels) // LEVEL_ROWS))
        shown = levels[::step]
        if shown[-1] is not levels[-1]:
            shown.append(levels[-1])
        note = (
            f"all {len(levels)} commits"
            if step == 1
            else (f"every {step}th of {len(levels)} commits and the last")
        )
        tables.append(
            fragment(
                "level_table",
                title=title,
                note=note,
                rows=rows(
                    [
                        f"{lv[0]:.1f}",
                        "n/a" if lv[1] is None else lv[1],
                        lv[2],
                        _dash(lv[3]),
                        pct(lv[4], 0) if len(lv) > 4 and lv[4] is not None else "n/a",
                    ]
                    for lv in shown
                ),
            )
        )
    round_ = str(latency["round"] + 1) if latency else "n/a"
    return round_, "\n\n".join(tables) or "No batch lines were read."


def _level_range(levels: list[list[Any]]) -> str:
    seen = [lv[1] for lv in levels if lv[1] is not None]
    if not seen:
        return "n/a"
    return f"{min(seen)}-{max(seen)}" if min(seen) != max(seen) else str(seen[0])


def _dash(value: Any) -> str:
    return "-" if value is None else str(value)


PROFILE_ORDER = ("before", "tickfix", "after", "plain")
"""Columns of the profile table within a case: earlier trees first, the plain loop last."""


def _profile(p: Any, runtime: dict[str, Any] | None) -> str:
    """bench/profile_leg.py's figures: CPU ms per page by stage, per tree and case."""
    if not isinstance(p, dict) or not p.get("runs"):
        return fragment("profile_absent") + "\n"
    cases = [c["name"] for c in p["cases"]]
    order = {name: i for i, name in enumerate(PROFILE_ORDER)}
    runs = sorted(
        (x for x in p["runs"] if x.get("stage_ms")),
        key=lambda x: (cases.index(x["case"]), order.get(x["contender"], 2)),
    )
    stages = list(p["stages"])
    table_rows = []
    for stage in stages:
        cells = [num(x["stage_ms"][stage]) if stage in x["stage_ms"] else "-" for x in runs]
        if any(c != "-" for c in cells):
            table_rows.append([stage, *cells])
    table_rows.append(["**total**", *(f"**{num(x['cpu_ms'])}**" for x in runs)])
    table_rows.append(["pages/s (wall, unprofiled)", *(_profile_rate(x) for x in runs)])
    trees = p.get("trees") or {}
    after = trees.get("after") or {}
    stale = ""
    head = (runtime or {}).get("trees", {}).get("worker")
    if head and after.get("worker_tree") and after["worker_tree"] != head:
        stale = " " + fragment(
            "profile_stale",
            measured=after["worker_tree"][:7],
            commit=after.get("commit"),
            head=head[:7],
        )
    mine = [x for x in runs if x["contender"] == "after" and x.get("overhead")]
    where: dict[tuple[str, str], dict[str, float]] = {}
    for x in mine:
        python_ms = float(x["cpu_ms"])
        for stage, at, share in x["overhead"]:
            where.setdefault((at, stage), {})[x["case"]] = python_ms * float(share)
    top = sorted(where.items(), key=lambda kv: -max(kv[1].values()))[:12]
    return _template("profile.md").substitute(
        pages=f"{p['pages']:,}",
        memory_mb=f"{p['memory_mb']:,}",
        trees="; ".join(
            f"**{label}** = commit `{t.get('commit')}` "
            f"(worker tree `{str(t.get('worker_tree'))[:7]}`"
            + (", with uncommitted changes" if t.get("uncommitted") else "")
            + ")"
            for label, t in trees.items()
        ),
        stale=stale,
        repeat=p["repeat"],
        profiled_runs=p.get("profiled_runs", 1),
        profiler=p.get("profiler") or "no profiler",
        rate=p["rate"],
        columns=" | ".join(f"{x['contender']}, {x['case']}" for x in runs),
        separators=" | ".join("---" for _ in runs),
        rows=rows(table_rows),
        stage_notes="Stages: "
        + "; ".join(f"**{name}**: {what}" for name, what in p["stages"].items())
        + ".",
        overhead_tree="after",
        overhead_columns=" | ".join(x["case"] for x in mine),
        overhead_separators=" | ".join("---" for _ in mine),
        overhead_rows=rows(
            [f"`{at}`", stage, *(num(ms.get(x["case"])) if x["case"] in ms else "-" for x in mine)]
            for (at, stage), ms in top
        ),
        profile_contention=_profile_contention(runs),
    )


def _profile_rate(run: dict[str, Any]) -> str:
    walls = run.get("wall_s") or []
    if not walls or not run.get("pages"):
        return "n/a"
    return f"{run['pages'] / statistics.median(walls):.0f}"


def _profile_contention(runs: list[dict[str, Any]]) -> str:
    means = [x["contention"]["mean_runnable"] for x in runs if x.get("contention")]
    if not means:
        return ""
    return fragment(
        "versus_contention",
        median=f"{statistics.median(means):.2f}",
        low=f"{min(means):.2f}",
        high=f"{max(means):.2f}",
    )


FANOUT_COST_LABELS = {
    "baton": "baton, as measured here",
    "baton_900s": "baton, 900 s legs",
    "sfn_standard": "Step Functions Distributed Map, standard children, a task each",
    "sfn_standard_batched": "... standard children, 100 tasks each",
    "sfn_express": "... express children, a task each",
    "sfn_express_batched": "... express children, 100 tasks each",
    "durable": "Lambda durable functions, a step per task",
}


def _fanout(f: Any) -> dict[str, Any]:
    """bench/fanout.py's figures: scaling over chains, stragglers, cost against the others."""
    headline = {
        "fanout_efficiency_16": num((f or {}).get("fanout_efficiency_16")),
        "fanout_efficiency_4": num((f or {}).get("fanout_efficiency_4")),
        "fanout_efficiency_64": num((f or {}).get("fanout_efficiency_64")),
        "straggler_wall_ratio": num((f or {}).get("straggler_wall_ratio")),
    }
    if not isinstance(f, dict) or not f.get("scaling"):
        return headline | {
            "fanout": fragment("fanout_absent") + "\n",
            "fanout_wall_1": "n/a",
            "fanout_tasks": "n/a",
            "fanout_concurrency": "n/a",
            "fanout_cost_usd": "n/a",
            "fanout_cost_900_usd": "n/a",
            "fanout_sfn_usd": "n/a",
            "fanout_sfn_batched_usd": "n/a",
            "fanout_durable_usd": "n/a",
        }
    cfg, scaling, eff = f["config"], f["scaling"], f["efficiency"]
    cost = f.get("cost") or {}
    cost_rows = cost.get("rows") or {}
    mean_ms = sum(cfg["latency_ms"]) / 2

    def usd(key: str) -> str:
        row = cost_rows.get(key)
        return f"{row['total_usd']:.2f}" if row else "n/a"

    def minmed(cell: dict[str, Any]) -> str:
        if "missing" in cell:
            return "n/a"
        return f"{cell['wall_s_min']:.2f} / {cell['wall_s_median']:.2f}"

    def other(cell: dict[str, Any]) -> str:
        value = cell.get("other_runnable_median")
        return "n/a" if value is None else f"{value:.2f}"

    scaling_rows = []
    overheads = []
    for c, cell in scaling.items():
        if "missing" in cell:
            scaling_rows.append([c, "n/a", num(cell.get("ideal_wall_s")), *["n/a"] * 9])
            continue
        e = eff.get(c) or {}
        scaling_rows.append(
            [
                c,
                minmed(cell),
                num(cell["ideal_wall_s"]),
                num(cell["pages_per_s_median"], 1),
                f"**{num(e.get('value'))}**; {num(e.get('of_minimums'))}",
                _fmt(cell["legs_median"]),
                f"{_fmt(cell['ranges_median'])} ({_fmt(cell['steals_median'])})",
                _fmt(cell["invocations_median"]),
                f"{cell['cold_starts']} ({cell.get('timeouts', 0)})",
                _ends(cell.get("chain_ends_s") or []),
                f"{num(cell['cpu_s_median'], 1)} ({num(cell['cpu_ms_per_page_median'], 1)})",
                other(cell),
            ]
        )
        overheads.append(f"{num(cell['wall_s_median'] - cell['ideal_wall_s'], 1)} s at C={c}")
    value = f.get("fanout_efficiency_16")
    verdict = ""
    if value is not None:
        verdict = (
            fragment("fanout_met", value=num(value))
            if value >= 0.8
            else fragment("fanout_missed", value=num(value), gap=num(0.8 - value))
        )
    cpu_note = _fanout_cpu_note(scaling)
    firsts, tails = [], []
    for c, cell in scaling.items():
        ends = cell.get("chain_ends_s") or []
        if "missing" in cell or not ends:
            continue
        firsts.append(f"{ends[0]:.1f} s at C={c} (ideal {cell['ideal_wall_s']:.2f} s)")
        tails.append(f"{cell['wall_s_min'] - ends[-1]:.1f} s at C={c}")
    verdict += " " + fragment(
        "fanout_why",
        overheads=", ".join(overheads),
        cpu_note=cpu_note,
        first_ends=", ".join(firsts) or "n/a",
        tails=", ".join(tails) or "n/a",
        legs_1=_fmt((scaling.get("1") or {}).get("legs_median")),
    )
    strag = f.get("straggler") or {}
    on, off = strag.get("steal") or {}, strag.get("no_steal") or {}
    straggler_rows = [
        [
            label,
            minmed(cell),
            _fmt(cell.get("legs_median")),
            f"{_fmt(cell.get('ranges_median'))} ({_fmt(cell.get('steals_median'))})",
            _ends(cell.get("chain_ends_s") or []),
            other(cell),
        ]
        for label, cell in (("on", on), ("off", off))
        if "missing" not in cell and cell
    ]
    straggler_verdict = ""
    if f.get("straggler_wall_ratio") is not None:
        straggler_verdict = fragment(
            "straggler_verdict",
            ratio=num(f["straggler_wall_ratio"]),
            off_s=num(off["wall_s_median"]),
            on_s=num(on["wall_s_median"]),
            steals=_fmt(on["steals_median"]),
            on_spread=num(_spread(on.get("chain_ends_s") or []), 1),
            off_spread=num(_spread(off.get("chain_ends_s") or []), 1),
        )
    if on and "missing" not in on and not on.get("steals_median"):
        fast_rate = cfg["concurrency"] / (mean_ms / 1000)
        slow_rate = cfg["concurrency"] / (sum(cfg["slow_latency_ms"]) / 2 / 1000)
        horizon = cfg.get("leg_s", cfg["timeout_s"]) - 3
        straggler_verdict += "\n\n" + fragment(
            "straggler_no_steals",
            steals=_fmt(on.get("steals_median")),
            slow_legs=f", though its legs did {', '.join(map(str, legs))} tasks each"
            if (legs := on.get("chain0_leg_tasks"))
            else "",
            slow_tasks=f["slow_tasks"],
            fast_rate=f"{fast_rate:.0f}",
            concurrency=cfg["concurrency"],
            fast_ms=f"{mean_ms:g}",
            slow_rate=f"{slow_rate:.1f}",
            horizon_s=f"{horizon:g}",
            planned=f"{fast_rate * horizon:.0f}",
        )
    count_rows = [
        [
            c,
            f"{cell['per_task']['legs']:.4f}",
            f"{cell['per_task']['invocations']:.4f}",
            f"{cell['per_task']['s3_put_list']:.3f}",
            f"{cell['per_task']['s3_get_head']:.3f}",
        ]
        for c, cell in scaling.items()
        if "missing" not in cell
    ]
    rows_cost = []
    for key, label in FANOUT_COST_LABELS.items():
        row = cost_rows.get(key)
        if not row:
            continue
        parts = row["usd"]
        rows_cost.append(
            [
                label,
                _usd(parts.get("orchestration")),
                _usd(parts.get("lambda_compute")),
                _usd(parts.get("lambda_requests")),
                _usd(parts.get("s3_requests")),
                f"**{row['total_usd']:.2f}**",
            ]
        )
    assumptions = cost.get("assumptions") or {}
    per_task = cost.get("per_task_measured") or {}
    legs_900 = num(cost.get("legs_900s_per_million"), 0)
    warm = f.get("warm")
    slow_low, slow_high = cfg["slow_latency_ms"]
    slow_alone = f["slow_tasks"] * (slow_low + slow_high) / 2 / 1000 / cfg["concurrency"]
    contention = f.get("machine", {}).get("other_runnable_processes") or {}
    runs_load = [
        cell.get("other_runnable_median")
        for cell in [*scaling.values(), on, off]
        if cell.get("other_runnable_median") is not None
    ]
    return headline | {
        "fanout_wall_1": num((scaling.get("1") or {}).get("wall_s_median"), 1),
        "fanout_tasks": f"{cfg['tasks']:,}",
        "fanout_concurrency": cfg["concurrency"],
        "fanout_cost_usd": usd("baton"),
        "fanout_cost_900_usd": usd("baton_900s"),
        "fanout_sfn_usd": usd("sfn_standard"),
        "fanout_sfn_batched_usd": usd("sfn_standard_batched"),
        "fanout_durable_usd": usd("durable"),
        "fanout": _template("fanout.md").substitute(
            tasks=f"{cfg['tasks']:,}",
            origin=f["origins"]["fanout"],
            slow_origin=f["origins"]["fanout-slow"],
            concurrency=cfg["concurrency"],
            timeout_s=f"{cfg['timeout_s']:g}",
            leg_s=f"{cfg.get('leg_s', cfg['timeout_s']):g}",
            max_concurrency=cfg["max_concurrency"],
            warm=fragment(
                "fanout_warm",
                containers=warm["containers"],
                step=4,
                seconds=f"{warm['seconds']:.0f}",
                target=warm["target"],
            )
            if warm
            else fragment("fanout_cold"),
            rounds=cfg["rounds"],
            mean_ms=f"{mean_ms:g}",
            scaling_rows=rows(scaling_rows),
            verdict=verdict,
            straggler_chains=cfg["straggler_chains"],
            slow_tasks=f["slow_tasks"],
            slow_alone_s=f"{slow_alone:.0f}",
            straggler_rows=rows(straggler_rows),
            straggler_verdict=straggler_verdict,
            count_rows=rows(count_rows),
            sweep_s=f"{cfg.get('sweep_s', 0):g}",
            cost_at=f.get("cost_counts_at", "n/a"),
            prices_read=(cost.get("sources") or {}).get("read", "n/a"),
            page_ms=f"{assumptions.get('page_ms', 0):g}",
            memory_mb=f"{assumptions.get('memory_mb', 0):,}",
            cost_rows=rows(rows_cost),
            cost_notes=fragment(
                "fanout_cost_notes",
                leg_s=f"{cfg.get('leg_s', cfg['timeout_s']):g}",
                legs_per_million=f"{per_task.get('legs', 0) * 1e6:,.0f}",
                legs_900=legs_900,
                transitions=assumptions.get("transitions_per_child", "n/a"),
                express_mb=assumptions.get("express_memory_mb", "n/a"),
            ),
            sources="; ".join(
                f"{name}: {text}"
                for name, text in (cost.get("sources") or {}).items()
                if name != "read"
            ),
            contention=(
                fragment(
                    "versus_contention",
                    median=f"{statistics.median(runs_load):.2f}",
                    low=f"{min(runs_load):.2f}",
                    high=f"{max(runs_load):.2f}",
                )
                if runs_load
                else ""
            )
            + (
                f" Over the whole bench: {contention['fanout']['mean_runnable']:.2f} "
                f"runnable threads outside it on average, some in "
                f"{pct(contention['fanout']['busy_share'], 0)} of "
                f"{contention['fanout']['seconds']} s."
                if contention.get("fanout")
                else ""
            ),
        ),
    }


def _fanout_cpu_note(scaling: dict[str, Any]) -> str:
    """Were the larger Cs short of CPU? Their CPU seconds against the wall time."""
    cells = {int(c): cell for c, cell in scaling.items() if "missing" not in cell}
    parts = []
    for c in sorted({16, max(cells, default=0)} & set(cells)):
        cell = cells[c]
        cores = cell["cpu_s_median"] / cell["wall_s_median"] if cell["wall_s_median"] else 0.0
        parts.append(
            f"at C={c} the containers and the stack used {num(cell['cpu_s_median'], 1)} CPU s "
            f"in {num(cell['wall_s_median'], 1)} s ({num(cores, 2)} cores, with "
            f"{num(cell.get('other_runnable_median'))} runnable threads of other work on the 2)"
        )
    return "; ".join(parts) + "." if parts else ""


def _ends(ends: list[float]) -> str:
    if not ends:
        return "n/a"
    return f"{ends[0]:.1f}, {statistics.median(ends):.1f}, {ends[-1]:.1f}"


def _spread(ends: list[float]) -> float | None:
    return ends[-1] - ends[0] if ends else None


def _usd(value: Any) -> str:
    return "-" if value is None else f"{float(value):.3f}"


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _prefix(f: Any) -> dict[str, Any]:
    """bench/prefix.py's figures: baton's prefix runs against a plain boto3 loop."""
    headline = {
        key: num((f or {}).get(key), 3)
        for key in ("prefix_ratio", "prefix_ratio_sha256", "prefix_speedup_16")
    }
    if not isinstance(f, dict) or not f.get("plain"):
        return headline | {"prefix": fragment("prefix_absent") + "\n"}
    cfg, plain, baton = f["config"], f["plain"], f["baton"]

    def row(side: str, what: str, cell: dict[str, Any], chains: int | None) -> list[str]:
        if "missing" in cell:
            return [side, what, *["n/a"] * 10]
        load = cell.get("other_runnable_median")
        per_chain = cell.get("per_chain")
        unit = "keys/s" if what.startswith("presign") else "MB/s"
        return [
            side,
            what,
            f"{cell['objects']:,}",
            num(cell["wall_s_median"]),
            num(cell["keys_per_s_median"], 0),
            num(cell["mb_per_s_median"], 3) if what.startswith("sha256") else "",
            f"{num(per_chain, 3 if unit == 'MB/s' else 0)} {unit}" if chains else "",
            _fmt(cell.get("legs_median")) if chains else "",
            _listed(cell) if chains else "",
            num(cell.get("work_busy_s_median"), 1) if chains else "",
            num(cell.get("cpu_ms_per_key_median"), 3),
            "n/a" if load is None else f"{load:.2f}",
        ]

    table = [
        row("plain loop", what, plain[what], None)
        for what in ("list", "presign", "sha256")
        if what in plain
    ]
    for c, cells in baton.items():
        for what, cell in cells.items():
            table.append(row("baton", f"{what}, C={c}", cell, int(c)))
    presign_1 = (baton.get("1") or {}).get("presign") or {}
    segments = presign_1.get("segments", "n/a")
    segment_pages = f.get("segment_pages", 10)
    verdict = ""
    if f.get("prefix_ratio") is not None:
        value = float(f["prefix_ratio"])
        verdict = (
            f"`prefix_ratio` {num(value, 3)} meets its target (>= 0.9)."
            if value >= 0.9
            else f"`prefix_ratio` {num(value, 3)} misses its target (>= 0.9) by "
            f"{num(0.9 - value, 3)}."
        )
        wall = presign_1.get("wall_s_median")
        busy = presign_1.get("work_busy_s_median")
        verdict += " " + fragment(
            "prefix_why",
            segment_pages=segment_pages,
            baton_cpu=num(presign_1.get("cpu_ms_per_key_median"), 3),
            plain_cpu=num((plain.get("presign") or {}).get("cpu_ms_per_key_median"), 3),
            segments=segments,
            lister_rate=num(presign_1.get("lister_keys_per_s_median"), 0),
            plain_list_rate=num((plain.get("list") or {}).get("keys_per_s_median"), 0),
            busy_s=num(busy, 0),
            wall_s=num(wall, 0),
            idle=pct(1 - busy / wall, 0) if busy and wall else "n/a",
        )
    contention = contention_line(f.get("machine") or {})
    return headline | {
        "prefix": _template("prefix.md").substitute(
            objects=f"{cfg['objects']:,}",
            checksum_objects=f"{cfg['checksum_objects']:,}",
            size_low=cfg["sizes"][0],
            size_high=cfg["sizes"][1],
            rounds=cfg["rounds"],
            leg_s=f"{cfg['leg_s']:g}",
            segment_pages=segment_pages,
            segments=segments,
            rows=rows(table),
            verdict=verdict + ("\n\n" + contention if contention else ""),
            **headline,
        )
    }


def _listed(cell: dict[str, Any]) -> str:
    rate = cell.get("lister_keys_per_s_median")
    if not rate:
        return "n/a"
    return f"{cell['objects'] / rate:.1f} ({rate:,.0f})"


# --- templates and cells ---------------------------------------------------------------


def _crawl(c: Any) -> str:
    """bench/crawl.py's figures: baton's crawl mode against Crawlee on a many-host site."""
    if not isinstance(c, dict) or not c.get("table"):
        return _template("crawl_absent.md").substitute() + "\n"
    site, cfg, table = c["site"], c["config"], c["table"]
    reachable = site["reachable"]

    def minmed(cell: dict[str, Any], field: str, digits: int) -> str:
        low, mid = cell.get(f"{field}_min"), cell.get(f"{field}_median")
        return f"{num(low, digits)} / {num(mid, digits)}" if mid is not None else "n/a"

    rows = []
    for key, label in c["contenders"].items():
        cell = table.get(key) or {}
        if "skipped" in cell or "missing" in cell:
            why = cell.get("skipped") or cell.get("missing")
            rows.append(f"| {label} | {why} |" + " |" * 10)
            continue
        asked, ran = cell.get("chains_asked"), cell.get("chains_ran")
        chains = f"{asked} / {', '.join(map(str, ran))}" if asked and ran else "-"
        rows.append(
            f"| {label} | {minmed(cell, 'pages_per_s', 1)} | {num(cell['elapsed_s_median'], 1)} "
            f"| {num(cell['e2e_s_median'], 1)} | {minmed(cell, 'cpu_ms_per_page', 2)} "
            f"| {num(cell.get('bench_cpu_s_median'), 1)} "
            f"| {', '.join(map(str, cell['found']))} | {num(cell['fetches_per_page_median'])} "
            f"| {chains} | {num(cell['mean_in_flight_median'], 1)} / {cell['max_per_host']} "
            f"| {num(cell.get('peak_rss_mb_max'), 1)} "
            f"| {len(cell['errors'])} / {cell['short_of_oracle']} |"
        )
    ratios = c.get("ratios") or {}
    r1, r16 = ratios.get("crawl_vs_crawlee") or {}, ratios.get("crawl_vs_crawlee_16") or {}
    ran16 = r16.get("chains_ran")
    ran_text = f"chains that ran: {', '.join(map(str, ran16))}" if ran16 else "chains: n/a"
    labels = c["contenders"]
    context_rows = [
        f"| {key} | {num(ratio.get('value'))} | {num(ratio.get('of_minimums'))} | | "
        f"{labels.get(ratio['ours'], ratio['ours'])} / {labels.get(ratio['against'])} "
        "(medians; no target, for context) |"
        for key, ratio in ratios.items()
        if ratio.get("target") is None and ratio.get("against") in labels
    ]
    verdict = []
    for key, ratio in ratios.items():
        value, target = ratio.get("value"), ratio.get("target")
        if target is None:
            continue
        if value is None:
            verdict.append(f"`{key}` is missing (a contender had no clean run).")
        else:
            met = "meets" if value >= target else "misses"
            verdict.append(f"`{key}` {num(value)} {met} its target {num(target, 1)}.")
    if ran16 and max(ran16) < 16:
        verdict.append(
            f"The runs asked for 16 chains ran on {max(ran16)}: `crawl_vs_crawlee_16` measures "
            "what ran, not host-partitioned chains."
        )
    errors = [e for cell in table.values() for e in cell.get("errors") or ()]
    notes = [
        "16 chains share this machine's 2 cores with the S3 emulator, the site and the bench; "
        "on Lambda each chain has its own CPU."
    ]
    one, many = table.get("baton_1") or {}, table.get("baton_16") or {}
    if one.get("cpu_ms_per_page_median") and many.get("cpu_ms_per_page_median"):

        def cores(cell: dict[str, Any]) -> str:
            return num(cell["cpu_ms_per_page_median"] * cell["pages_per_s_median"] / 1000)

        def busy(cell: dict[str, Any]) -> str:
            return num((cell.get("bench_cpu_s_median") or 0) / cell["elapsed_s_median"])

        notes.append(
            f"Here the 16-chain runs' containers used {cores(many)} cores on average and kept "
            f"{num(many['mean_in_flight_median'], 1)} requests in flight (one chain: "
            f"{cores(one)} cores, {num(one['mean_in_flight_median'], 1)} in flight); the bench's "
            f"process (the S3 emulator and the Lambda API; the site has its own) used "
            f"{num(many.get('bench_cpu_s_median'), 1)} CPU s a run against "
            f"{num(one.get('bench_cpu_s_median'), 1)} for one chain, "
            f"{busy(many)} of a core over the 16-chain run's working time: one Python process, "
            "so its interpreter lock holds it to about one core, and the S3 emulator is a possible "
            "bound here that real S3 is not (a chain's commits then take longer, and its tasks "
            "wait for the links a commit adds). Links also cross between chains: a chain commits "
            "every 2 s and takes in its inbox every second or when it runs dry; how much each "
            "costs is not measured here."
        )
    default, tuned = table.get("crawlee_default") or {}, table.get("crawlee_64") or {}
    if default.get("mean_in_flight_median") is not None:
        notes.append(
            f"Crawlee default had {num(default['mean_in_flight_median'], 1)} requests in flight "
            f"on average as the site saw them (Crawlee 64: "
            f"{num(tuned.get('mean_in_flight_median'), 1)}): its AutoscaledPool sizes itself by "
            "`psutil.cpu_percent()`, the whole machine's CPU, which other people's work kept busy "
            "here, so its default figure is low and moves with their load; the ratios against "
            "Crawlee 64 do not depend on that."
        )
    for key, label in c["contenders"].items():
        cell = table.get(key) or {}
        if key.startswith("baton") and cell.get("max_per_host", 0) > cfg["per_host_concurrency"]:
            notes.append(
                f"{label}: the site saw {cell['max_per_host']} requests at once on one host, "
                f"above `per_host_concurrency` {cfg['per_host_concurrency']}."
            )
    if errors:
        notes.append("Runs left out of the cells: " + "; ".join(sorted(set(errors))[:6]) + ".")
    for key, label in c["contenders"].items():
        cell = table.get(key) or {}
        if cell.get("short_of_oracle"):
            shown = ", ".join(f"`{d}`" for d in cell.get("differences") or ())
            notes.append(
                f"{label}: {cell['short_of_oracle']} of {cell['rounds']} runs fetched a set other "
                f"than the oracle's ({shown}; - missing, + extra); their pages/s counts what they "
                "fetched."
            )
    memory = c.get("memory") or {}
    contention = ((c.get("machine") or {}).get("other_runnable_processes") or {}).get("crawl")
    text = _template("crawl.md").substitute(
        reachable=f"{reachable:,}",
        hosts=site["hosts"],
        pages_per_host=site["pages_per_host"],
        links_per_page=site["links_per_page"],
        deepest=site["deepest"],
        max_depth=(site.get("spec") or {}).get("max_depth", site["deepest"]),
        per_host=cfg["per_host_concurrency"],
        tuned=cfg["tuned"],
        rounds=cfg["rounds"],
        crawlee_version=(c.get("versions") or {}).get("crawlee", ""),
        scrapy_version=(c.get("versions") or {}).get("scrapy", ""),
        rows="\n".join(rows),
        crawl_vs_crawlee=num(c.get("crawl_vs_crawlee")),
        crawl_vs_crawlee_min=num(r1.get("of_minimums")),
        crawl_vs_scrapy=num(c.get("crawl_vs_scrapy")),
        crawl_vs_scrapy_min=num((ratios.get("crawl_vs_scrapy") or {}).get("of_minimums")),
        crawl_vs_crawlee_16=num(c.get("crawl_vs_crawlee_16")),
        crawl_vs_crawlee_16_min=num(r16.get("of_minimums")),
        chains_16_ran=ran_text,
        code=(
            f"commit `{code['commit'][:12]}`'s runtime (handler, worker, cache, exported with "
            "`git archive` as the function's `code_dir`, so files edited in the worktree "
            "meanwhile are not what is measured)"
            if (code := c.get("code") or {}).get("commit")
            else "the checkout's files as they were (the function's `code_dir`)"
        ),
        context_rows="\n".join(context_rows),
        rss_100k=num(c.get("crawl_peak_rss_mb_100k"), 1),
        rss_1m=num(c.get("crawl_peak_rss_mb_1m"), 1),
        memory_status=str(memory.get("status", "n/a")),
        verdict=" ".join(verdict),
        notes=" ".join(notes),
        contention=(
            f"Runnable threads outside the bench meanwhile: {contention['mean_runnable']:.2f} "
            f"on average, some in {pct(contention['busy_share'], 0)} of {contention['seconds']} s."
            if contention
            else ""
        ),
    )
    return text + "\n"


@cache
def _template(name: str) -> Template:
    return Template((TEMPLATES / name).read_text(encoding="utf-8"))


@cache
def _fragments() -> dict[str, Template]:
    """`templates/fragments.md`, split at its `@@ name` lines."""
    found: dict[str, Template] = {}
    text = (TEMPLATES / "fragments.md").read_text(encoding="utf-8")
    for block in text.split("\n@@ ")[1:]:
        name, _, body = block.partition("\n")
        found[name.strip()] = Template(body.rstrip("\n"))
    return found


def fragment(name: str, **values: Any) -> str:
    return _fragments()[name].substitute(values)


def optional(block: str) -> str:
    """A block set off by blank lines, for a placeholder on a line of its own."""
    return f"\n{block}\n"


def rows(records: Iterable[Iterable[Any]]) -> str:
    """Markdown table rows, one line each."""
    return "\n".join("| " + " | ".join(str(c) for c in record) + " |" for record in records)


def pct(value: Any, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    return f"{float(value) * 100:.{digits}f} %"


def num(value: Any, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    return f"{float(value):.{digits}f}"


def cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)
