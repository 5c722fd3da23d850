"""Dollars per million tasks on Lambda and S3 prices, from the measured and modelled legs.

    legs/M    = 1e6 / tasks_per_leg            commits/M = 1e6 / tasks_per_commit
    compute   = legs/M * leg_s * GB * $/GB-s   requests  = legs/M * $0.20/1e6
    S3 PUT    = (2 * commits/M + put_per_leg * legs/M) * $0.005/1000
    S3 GET    = (1 * commits/M + get_per_leg * legs/M) * $0.0004/1000
    logs      = 1e6 * log_bytes_per_task / 1e9 * $0.50

`cost_model` gathers the inputs from a throughput run, the hop probe and the budget
model; `cost_rows` prices them (and is all `recompute` needs, so the table can be
redone from bench/results.json without measuring).
"""

from __future__ import annotations

from typing import Any

from bench.throughput import BatonRun
from worker.prices import DEFAULT_PRICES

PRICES = {
    "lambda_gb_s": DEFAULT_PRICES["lambda_gb_s_x86_64"],
    "lambda_request": DEFAULT_PRICES["lambda_request"],
    "s3_put": DEFAULT_PRICES["s3_put"],
    "s3_get": DEFAULT_PRICES["s3_get"],
    "logs_gb": DEFAULT_PRICES["logs_gb"],
}
"""x86 Lambda and S3 Standard request prices (us-east-1); CloudWatch Logs ingestion: the
runtime's one table (worker/prices.py, with the date they were read)."""
MEMORY_MB = 1024
"""infra/template.yaml's default MemorySize."""
VCPU_FULL_AT_MB = 1769
"""Lambda allocates CPU in proportion to memory: one full vCPU at 1,769 MB."""
BATCH_REQUESTS = {"put": 2, "get": 1}
"""Per commit (worker/leg.py, `Leg._commit_state`): results PUT and checkpoint CAS; the
cancel HEAD (GET tier)."""
MEMORY_SIZES = (MEMORY_MB, 512, 256, 128)
"""The headline's memory size and the smaller ones the table scales to."""
_MEASURED_INPUTS = (
    "memory_mb",
    "requests_per_batch",
    "requests_per_leg",
    "requests_per_run_residual",
    "s3_requests_measured",
    "log_bytes_per_task",
)


def cost_model(
    tp: dict[str, Any], run: BatonRun, hop: dict[str, Any], bud: dict[str, Any]
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


def recompute(results: dict[str, Any]) -> dict[str, Any]:
    """The cost of earlier results at today's prices, from the inputs they recorded."""
    baton = results["throughput"]["baton"]
    inputs = {key: results["cost"][key] for key in _MEASURED_INPUTS} | {
        "prices": PRICES,
        "cpu_ms_per_page": baton["cpu_ms_per_page"] or 0.0,
        "max_memory_used_mb": baton["max_memory_used_mb"],
    }
    return cost_rows(inputs, results["budget"]["model"]["scenarios"])


def cost_rows(inputs: dict[str, Any], scenarios: dict[str, Any]) -> dict[str, Any]:
    """The cost table from the inputs above and the model's legs (no measuring)."""
    per_leg, log_bytes = inputs["requests_per_leg"], inputs["log_bytes_per_task"]
    real = scenarios["real_s3_and_pages"]
    pages_per_s = real["tasks"] / (real["leg_ms"] / 1000)
    rows = {
        f"real_{memory}mb": _cost(real, memory, per_leg, log_bytes)
        | {"vcpu_share_used": round(_vcpu_share(pages_per_s, inputs, memory), 3)}
        for memory in MEMORY_SIZES
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
    tasks_per_batch = tasks_per_leg / max(1, leg.get("commits") or leg.get("batches") or 1)
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
