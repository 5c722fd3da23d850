"""Hands the baton on: invokes itself asynchronously until `hops_left` reaches zero."""

from __future__ import annotations

import json
from typing import Any

import boto3

_lambda = boto3.client("lambda")


def handler(event: Any, context: Any) -> dict[str, int]:
    hops_left = int(event["hops_left"])
    if hops_left > 0:
        _lambda.invoke(
            FunctionName=context.invoked_function_arn,
            InvocationType="Event",
            Payload=json.dumps({"hops_left": hops_left - 1}),
        )
    return {"hops_left": hops_left}
