"""Writes each event it receives to S3 under `seen/`, proving the container reaches S3."""

from __future__ import annotations

import json
from typing import Any

import boto3

_s3 = boto3.client("s3")


def handler(event: Any, context: Any) -> None:
    bucket = event["Records"][0]["s3"]["bucket"]["name"]
    _s3.put_object(
        Bucket=bucket, Key=f"seen/{context.aws_request_id}.json", Body=json.dumps(event).encode()
    )
