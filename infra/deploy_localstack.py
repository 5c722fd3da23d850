"""Deploy baton to LocalStack, mirroring infra/template.yaml: bucket, function, triggers.

    docker compose up -d          # LocalStack on localhost:4566 (docker-compose.yml)
    python -m infra.deploy_localstack

Safe to run again: it updates the function's code and configuration in place.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import localstack_client.session as boto3_ls
from botocore.config import Config
from botocore.exceptions import ClientError

from infra.package import DEFAULT_OUT, build_zip
from worker.names import (
    FUNCTION_NAME,
    RESULTS_PREFIX,
    TASKS_PREFIX,
    TICK_RATE,
    TRIGGER_SUFFIXES,
)

# What the function's own boto3 calls use, from inside LocalStack's Lambda container.
INTERNAL_ENDPOINT = "http://localhost.localstack.cloud:4566"
# LocalStack does not enforce IAM by default; the role only has to look like one.
ROLE_ARN = "arn:aws:iam::000000000000:role/baton-worker"
SUFFIXES = TRIGGER_SUFFIXES
SWEEP_SCHEDULE = TICK_RATE
"""As the template's SweepTick: the sweep and the schedule tick, every minute."""


def deploy(
    session: Any, bucket: str, function: str, zip_path: Path, timeout: int, *, allow_nets: str = ""
) -> str:
    """Create or update everything; returns the function's ARN."""
    s3 = session.client("s3", config=Config(s3={"addressing_style": "path"}))
    lam = session.client("lambda")
    if not _exists(lambda: s3.head_bucket(Bucket=bucket)):
        s3.create_bucket(Bucket=bucket)

    settings: dict[str, Any] = {
        "Runtime": "python3.12",
        "Handler": "handler.handler",
        "Role": ROLE_ARN,
        "Timeout": timeout,
        "MemorySize": 1024,
        "Environment": {
            "Variables": {
                "AWS_ENDPOINT_URL": INTERNAL_ENDPOINT,
                "BATON_BUCKET": bucket,
                "BATON_TASKS_PREFIX": TASKS_PREFIX,
                "BATON_RESULTS_PREFIX": RESULTS_PREFIX,
                **({"BATON_ALLOW_NETS": allow_nets} if allow_nets else {}),
            }
        },
    }
    code = zip_path.read_bytes()
    if _exists(lambda: lam.get_function(FunctionName=function)):
        lam.update_function_code(FunctionName=function, ZipFile=code)
        lam.get_waiter("function_updated_v2").wait(FunctionName=function)
        lam.update_function_configuration(FunctionName=function, **settings)
        lam.get_waiter("function_updated_v2").wait(FunctionName=function)
    else:
        lam.create_function(FunctionName=function, Code={"ZipFile": code}, **settings)
        lam.get_waiter("function_active_v2").wait(FunctionName=function)
    arn: str = lam.get_function(FunctionName=function)["Configuration"]["FunctionArn"]

    try:
        lam.put_function_recursion_config(FunctionName=function, RecursiveLoop="Allow")
    except ClientError as exc:  # older LocalStack releases lack the API; the chain still runs
        print(f"warning: could not set RecursiveLoop=Allow: {exc}", file=sys.stderr)

    _allow(lam, function, "s3-tasks", "s3.amazonaws.com", f"arn:aws:s3:::{bucket}")
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "LambdaFunctionConfigurations": [
                {
                    "Id": f"baton-tasks{suffix.replace('.', '-')}",
                    "LambdaFunctionArn": arn,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {
                        "Key": {
                            "FilterRules": [
                                {"Name": "prefix", "Value": TASKS_PREFIX},
                                {"Name": "suffix", "Value": suffix},
                            ]
                        }
                    },
                }
                for suffix in SUFFIXES
            ]
        },
    )

    events = session.client("events")
    rule = events.put_rule(Name=f"{function}-sweep", ScheduleExpression=SWEEP_SCHEDULE)
    _allow(lam, function, "sweep-tick", "events.amazonaws.com", rule["RuleArn"])
    events.put_targets(
        Rule=f"{function}-sweep",
        Targets=[{"Id": "worker", "Arn": arn, "Input": json.dumps({"action": "sweep"})}],
    )
    return arn


def _exists(call: Callable[[], object]) -> bool:
    try:
        call()
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("404", "NoSuchBucket", "ResourceNotFoundException"):
            return False
        raise
    return True


def _allow(lam: Any, function: str, sid: str, principal: str, source_arn: str) -> None:
    try:
        lam.add_permission(
            FunctionName=function,
            StatementId=sid,
            Action="lambda:InvokeFunction",
            Principal=principal,
            SourceArn=source_arn,
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceConflictException":  # already granted
            raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.deploy_localstack", description=__doc__)
    parser.add_argument("--bucket", default="baton-local")
    parser.add_argument("--function", default=FUNCTION_NAME)
    parser.add_argument("--timeout", type=int, default=60, help="seconds per leg")
    parser.add_argument("--zip", type=Path, default=DEFAULT_OUT, help="built unless it exists")
    parser.add_argument("--localstack-host", default=None, help="host:port, default localhost:4566")
    parser.add_argument(
        "--allow-nets", default="", help="BATON_ALLOW_NETS, e.g. to crawl a site on the Docker host"
    )
    args = parser.parse_args(argv)

    if not args.zip.exists():
        print(f"building {args.zip} ...")
        build_zip(args.zip)
    session = boto3_ls.Session(localstack_host=args.localstack_host)
    arn = deploy(
        session, args.bucket, args.function, args.zip, args.timeout, allow_nets=args.allow_nets
    )
    print(f"deployed {arn}")
    print("next:")
    print(f"  awslocal s3 cp my-urls.json s3://{args.bucket}/{TASKS_PREFIX}my-urls.json")
    print(f"  awslocal s3 ls --recursive s3://{args.bucket}/{RESULTS_PREFIX}")
    print(f"  awslocal logs tail /aws/lambda/{args.function} --follow")
    print("  (rebuild with `python -m infra.package` and rerun this script after code changes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
