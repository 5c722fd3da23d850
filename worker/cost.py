"""A run's cost: its usage (summed over chains) priced on Lambda and S3, and the same work
priced on Step Functions Distributed Map and on Lambda durable functions.

How the same work is priced elsewhere (the assumptions, printed with the numbers):

- Step Functions Distributed Map, Standard children: one child workflow per task, a
  single Task state invoking a Lambda function: 2 state transitions per task (the
  child execution the Map starts, and its Task state) plus 3 for the parent; each
  task's invocation is billed for the task's own elapsed time at the same memory.
- Express children: the same Map (1 transition per child), and each child is an
  Express request billed for the task's time, in 100 ms steps, at 64 MB.
- Lambda durable functions: one durable execution working the list with one step
  per task ($ per durable operation), billed for the same Lambda time baton used
  (replays would add some), one request per leg.

Each alternative also pays for its Lambda invocations; none of them pays baton's
checkpoint and results S3 requests (a Map has its own ItemReader/ResultWriter
requests, left out).
"""

from __future__ import annotations

import math
from typing import Any

from worker.prices import PRICES_READ, PRICES_REGION, S3_PRICE_OF, SOURCES, price_table
from worker.usage import Usage

SFN_STANDARD_TRANSITIONS_PER_TASK = 2
SFN_PARENT_TRANSITIONS = 3
SFN_EXPRESS_MB = 64
SFN_EXPRESS_STEP_MS = 100


def pricing_config(architecture: str, overrides: dict[str, float]) -> dict[str, Any]:
    """What run.json pins at the start: the run is priced as it was started."""
    return {"architecture": architecture, "prices": price_table(overrides), "read": PRICES_READ}


def cost_section(usage: Usage, pricing: dict[str, Any] | None, memory_mb: int) -> dict[str, Any]:
    """The summary's `cost`; `memory_mb` is the size the alternatives' invocations get."""
    pricing = pricing or pricing_config("x86_64", {})
    prices = price_table(pricing.get("prices"))
    arch = str(pricing.get("architecture") or "x86_64")
    gb_s = usage.mb_ms / 1024 / 1000
    s3 = usage.s3()
    lambda_usd = {
        "compute": gb_s * prices[f"lambda_gb_s_{arch}"],
        "requests": usage.requests * prices["lambda_request"],
        "s3": sum(n * prices[p] for kind, n in s3.items() if (p := S3_PRICE_OF[kind])),
    }
    return {
        "lambda": {
            "requests": usage.requests,
            "billed_s": round(usage.billed_ms / 1000, 3),
            "init_s": round(usage.init_ms / 1000, 3),
            "dead_legs_s": round(usage.dead_ms / 1000, 3),
            "gb_s": round(gb_s, 3),
            "invokes": usage.invokes,
            "architecture": arch,
        },
        "s3_requests": s3,
        "usd": _rounded(lambda_usd),
        "usd_total": round(sum(lambda_usd.values()), 6),
        "alternatives": alternatives(usage, prices, arch, memory_mb),
        "prices": {
            "region": PRICES_REGION,
            "read": pricing.get("read", PRICES_READ),
            "sources": SOURCES,
            **prices,
        },
        "not_counted": "duplicate deliveries that exit at once, the sweep's own ticks, and the "
        "completion's requests after the summary (manifest, notice)",
    }


def alternatives(
    usage: Usage, prices: dict[str, float], arch: str, memory_mb: int
) -> dict[str, Any]:
    tasks = usage.items
    gb_s_price = prices[f"lambda_gb_s_{arch}"]
    per_task_lambda = (
        usage.item_ms / 1000 * memory_mb / 1024 * gb_s_price + tasks * prices["lambda_request"]
    )
    transitions = SFN_STANDARD_TRANSITIONS_PER_TASK * tasks + SFN_PARENT_TRANSITIONS
    standard = transitions * prices["sfn_transition"] + per_task_lambda
    mean_ms = usage.item_ms / tasks if tasks else 0.0
    express_ms = math.ceil(mean_ms / SFN_EXPRESS_STEP_MS) * SFN_EXPRESS_STEP_MS * tasks
    express = (
        (tasks + SFN_PARENT_TRANSITIONS) * prices["sfn_transition"]
        + tasks * prices["sfn_express_request"]
        + express_ms / 1000 * SFN_EXPRESS_MB / 1024 * prices["sfn_express_gb_s"]
        + per_task_lambda
    )
    durable = (
        tasks * prices["durable_operation"]
        + usage.mb_ms / 1024 / 1000 * gb_s_price
        + usage.requests * prices["lambda_request"]
    )
    return {
        "step_functions_standard": {
            "usd": round(standard, 6),
            "state_transitions": transitions,
            "lambda_requests": tasks,
        },
        "step_functions_express": {
            "usd": round(express, 6),
            "state_transitions": tasks + SFN_PARENT_TRANSITIONS,
            "express_requests": tasks,
            "lambda_requests": tasks,
        },
        "lambda_durable_functions": {
            "usd": round(durable, 6),
            "durable_operations": tasks,
            "lambda_requests": usage.requests,
        },
        "assumptions": "one child workflow (or durable step) per task; each task's "
        "invocation billed for its own elapsed time at the run's memory; see worker/cost.py",
    }


def _rounded(values: dict[str, float]) -> dict[str, float]:
    return {name: round(value, 6) for name, value in values.items()}
