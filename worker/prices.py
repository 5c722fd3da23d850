"""Published prices, in one place: the run's cost section, `baton estimate` and the bench
all price with these (the bench imports them; the runtime never imports the bench).

US East (N. Virginia), on-demand, first pricing tier, no free tier, read 2026-11-29:

    Lambda        https://aws.amazon.com/lambda/pricing/   $0.20 per 1M requests;
                  x86_64 $0.0000166667, arm64 $0.0000133334 per GB-second (INIT included)
    S3 Standard   https://aws.amazon.com/s3/pricing/       PUT, COPY, POST, LIST $0.005 per
                  1,000; GET, HEAD $0.0004 per 1,000; DELETE free
    Step Functions https://aws.amazon.com/step-functions/pricing/   Standard $0.025 per
                  1,000 state transitions; Express $1.00 per 1M requests and $0.00001667 per
                  GB-second, billed in 64 MB chunks and 100 ms steps. A Distributed Map is
                  charged one state transition per child workflow execution it starts
                  (https://docs.aws.amazon.com/step-functions/latest/dg/concepts-transitions.html)
    Lambda durable functions  https://aws.amazon.com/lambda/pricing/   $8.00 per 1M durable
                  operations (steps, waits, callbacks), on top of the function's own
                  requests and duration; their data written and retained are priced too, and
                  left out here (a few hundred bytes per step)
    CloudWatch Logs  $0.50 per GB ingested (the bench's log cost)

`BATON_PRICES` overrides any of them (`lambda_gb_s_arm64=0.0000133334,s3_put=0.000005`).
"""

from __future__ import annotations

import platform
from collections.abc import Mapping

PRICES_READ = "2026-11-29"
PRICES_REGION = "us-east-1"
ARCHITECTURES = ("x86_64", "arm64")

DEFAULT_PRICES: dict[str, float] = {
    "lambda_request": 0.20 / 1e6,
    "lambda_gb_s_x86_64": 0.0000166667,
    "lambda_gb_s_arm64": 0.0000133334,
    "s3_put": 0.005 / 1000,  # PUT, COPY, POST and LIST requests
    "s3_get": 0.0004 / 1000,  # GET, HEAD and the rest (DELETE is free)
    "sfn_transition": 0.025 / 1000,
    "sfn_express_request": 1.00 / 1e6,
    "sfn_express_gb_s": 0.00001667,
    "durable_operation": 8.00 / 1e6,
    "logs_gb": 0.50,
}
S3_PRICE_OF = {
    "get": "s3_get",
    "head": "s3_get",
    "put": "s3_put",
    "copy": "s3_put",
    "list": "s3_put",
    "delete": None,
}
"""Which price each request kind pays (DELETE is free)."""
SOURCES = {
    "lambda": "https://aws.amazon.com/lambda/pricing/",
    "s3": "https://aws.amazon.com/s3/pricing/",
    "step_functions": "https://aws.amazon.com/step-functions/pricing/",
    "durable_functions": "https://aws.amazon.com/lambda/pricing/",
}


def parse_overrides(text: str) -> dict[str, float]:
    """`name=value,...` over DEFAULT_PRICES; ValueError names what is wrong."""
    out: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in DEFAULT_PRICES:
            raise ValueError(
                f"{part!r}: expected name=price with a name from {', '.join(DEFAULT_PRICES)}"
            )
        price = float(value)
        if price < 0:
            raise ValueError(f"{name}: a price cannot be negative")
        out[name] = price
    return out


def architecture(setting: str = "", machine: str | None = None) -> str:
    """The setting, else the machine this runs on (arm64 Lambda runs on aarch64)."""
    if setting:
        return setting
    machine = (machine or platform.machine()).lower()
    return "arm64" if machine in ("aarch64", "arm64") else "x86_64"


def price_table(overrides: Mapping[str, float] | None = None) -> dict[str, float]:
    return {**DEFAULT_PRICES, **(overrides or {})}
