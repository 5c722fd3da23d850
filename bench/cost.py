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
from worker.prices import DEFAULT_PRICES, PRICES_READ

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


# --- fan-out: baton against what users would pick instead (bench/fanout.py) -----------

ALTERNATIVE_PRICES = {
    name: DEFAULT_PRICES[name]
    for name in ("sfn_transition", "sfn_express_request", "sfn_express_gb_s", "durable_operation")
}
"""The runtime's table (worker/prices.py); `PRICE_SOURCES` says where each was read."""
PRICE_SOURCES = {
    "read": PRICES_READ,
    "step_functions": (
        "https://aws.amazon.com/step-functions/pricing/: Standard $0.025 per 1,000 state "
        "transitions (retries count); Express $1.00 per million requests and $0.06 per GB-hour "
        "for the first 1,000 GB-hours a month ($0.00001667 per GB-s), duration rounded up to "
        "100 ms, memory billed in 64 MB chunks"
    ),
    "lambda": (
        "https://aws.amazon.com/lambda/pricing/: x86 $0.0000166667 per GB-s, $0.20 per "
        "million requests (as `PRICES`); durable functions $8.00 per million durable "
        "operations, as transcribed from that page by api-evangelist/aws-lambda "
        "(plans/aws-lambda-plans-pricing.yml, page read 2026-09-20); their data written and "
        "retained are charged per GB too, at rates not confirmed in what was read, so not priced"
    ),
    "s3": "S3 Standard: $0.005 per 1,000 PUT/COPY/POST/LIST, $0.0004 per 1,000 GET/HEAD",
}
PAGE_MS = 250.0
"""The work of one task (bench.budget.PAGE_MS_REAL): a real page's fetch, mostly waiting."""
ITEMS_PER_BATCH = 100
"""Distributed Map's ItemBatcher MaxItemsPerBatch in the batched rows."""
TRANSITIONS_PER_CHILD = 2
"""A child workflow with one Task state (invoke the worker): assumed two transitions."""
EXPRESS_MEMORY_MB = 64
"""An Express child's billed memory: 50 MB + definition + payload, in 64 MB chunks."""
LEG_S_PRODUCTION = 900.0
COMMIT_S = 10.0
"""worker.budget's commit interval: a leg commits about every 10 s."""


def fanout_cost(per_task: dict[str, float], *, concurrency: int) -> dict[str, Any]:
    """Dollars per million tasks at fan-out: baton from the counts measured per task, the
    alternatives from their published prices; every row does the same work (a task is
    `PAGE_MS` of mostly waiting in a Lambda at `MEMORY_MB`, `concurrency` at a time where
    one invocation works many tasks, one at a time where an invocation has one task)."""
    p, a = PRICES, ALTERNATIVE_PRICES
    million = 1e6
    gb = MEMORY_MB / 1024

    def work(in_flight: int) -> float:
        return million * PAGE_MS / 1000 / in_flight * gb * p["lambda_gb_s"]

    def row(basis: str, **parts: float) -> dict[str, Any]:
        total = sum(parts.values())
        return {
            "basis": basis,
            "usd": {k: round(v, 4) for k, v in parts.items()},
            "total_usd": round(total, 4),
        }

    legs = per_task.get("legs") or 0.0
    s3_put, s3_get = per_task.get("s3_put_list", 0.0), per_task.get("s3_get_head", 0.0)
    invokes = per_task.get("invocations", 0.0)
    # 900 s legs: the per-leg requests measured here (chain overheads included) over far
    # more tasks a leg, plus each leg's extra commits (results PUT, CAS; cancel HEAD).
    tasks_per_leg = (LEG_S_PRODUCTION - 2.0) * concurrency / (PAGE_MS / 1000)
    legs_900 = million / tasks_per_leg
    commits_900 = legs_900 * (LEG_S_PRODUCTION / COMMIT_S - 1)
    per_leg = {
        "put": s3_put / legs if legs else 0.0,
        "get": s3_get / legs if legs else 0.0,
        "invokes": invokes / legs if legs else 0.0,
    }
    single = million * PAGE_MS / 1000 * gb * p["lambda_gb_s"]  # one task per invocation
    batches = million / ITEMS_PER_BATCH
    batch_s = ITEMS_PER_BATCH * PAGE_MS / 1000 / concurrency
    express_gb = EXPRESS_MEMORY_MB / 1024
    rows = {
        "baton": row(
            f"as measured: {invokes:.4f} invocations, {s3_put:.4f} S3 PUT/LIST and "
            f"{s3_get:.4f} GET/HEAD per task (legs of this bench's short timeout)",
            lambda_compute=work(concurrency),
            lambda_requests=million * invokes * p["lambda_request"],
            s3_requests=million * (s3_put * p["s3_put"] + s3_get * p["s3_get"]),
        ),
        "baton_900s": row(
            f"the same per leg, legs of 900 s ({legs_900:.0f} legs and "
            f"{commits_900:.0f} more commits per million)",
            lambda_compute=work(concurrency),
            lambda_requests=legs_900 * per_leg["invokes"] * p["lambda_request"],
            s3_requests=legs_900 * (per_leg["put"] * p["s3_put"] + per_leg["get"] * p["s3_get"])
            + commits_900
            * (BATCH_REQUESTS["put"] * p["s3_put"] + BATCH_REQUESTS["get"] * p["s3_get"]),
        ),
        "sfn_standard": row(
            f"Distributed Map, a standard child workflow per task ({TRANSITIONS_PER_CHILD} "
            "transitions), each invoking the worker Lambda for its one task",
            orchestration=million * TRANSITIONS_PER_CHILD * a["sfn_transition"],
            lambda_compute=single,
            lambda_requests=million * p["lambda_request"],
        ),
        "sfn_standard_batched": row(
            f"the same with ItemBatcher, {ITEMS_PER_BATCH} tasks per child, the Lambda working "
            f"{concurrency} at a time",
            orchestration=batches * TRANSITIONS_PER_CHILD * a["sfn_transition"],
            lambda_compute=work(concurrency),
            lambda_requests=batches * p["lambda_request"],
        ),
        "sfn_express": row(
            f"Distributed Map, an express child per task ({EXPRESS_MEMORY_MB} MB, its "
            "duration the task's, rounded up to 100 ms)",
            orchestration=million
            * (a["sfn_express_request"] + _up_100ms(PAGE_MS) * express_gb * a["sfn_express_gb_s"]),
            lambda_compute=single,
            lambda_requests=million * p["lambda_request"],
        ),
        "sfn_express_batched": row(
            f"express children of {ITEMS_PER_BATCH} tasks, the Lambda working {concurrency} "
            "at a time",
            orchestration=batches
            * (
                a["sfn_express_request"]
                + _up_100ms(batch_s * 1000) * express_gb * a["sfn_express_gb_s"]
            ),
            lambda_compute=work(concurrency),
            lambda_requests=batches * p["lambda_request"],
        ),
        "durable": row(
            f"a durable function, one step (one durable operation) per task, {concurrency} "
            "steps at a time; its checkpoint data not priced",
            orchestration=million * a["durable_operation"],
            lambda_compute=work(concurrency),
            lambda_requests=legs_900 * p["lambda_request"],
        ),
    }
    return {
        "prices": PRICES | ALTERNATIVE_PRICES,
        "sources": PRICE_SOURCES,
        "assumptions": {
            "page_ms": PAGE_MS,
            "memory_mb": MEMORY_MB,
            "concurrency": concurrency,
            "items_per_batch": ITEMS_PER_BATCH,
            "transitions_per_child": TRANSITIONS_PER_CHILD,
            "express_memory_mb": EXPRESS_MEMORY_MB,
        },
        "per_task_measured": per_task,
        "per_leg_measured": {k: round(v, 3) for k, v in per_leg.items()},
        "legs_900s_per_million": round(legs_900, 1),
        "rows": rows,
    }


def _up_100ms(ms: float) -> float:
    """Express duration: seconds, rounded up to the next 100 ms."""
    return -(-ms // 100) / 10
