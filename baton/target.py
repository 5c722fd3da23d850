"""Where the CLI's commands go: which S3 and Lambda endpoints, which bucket and function.

In order: `--endpoint-url` (one endpoint for both, as LocalStack serves them);
else the environment (`AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL_LAMBDA`,
`AWS_ENDPOINT_URL`, honoured by boto3 itself); else a stack kept running by
`baton stack up` in this directory (`.baton/stack.json`); else AWS.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config

from devstack.statefile import StackState, load
from worker.container import BOTO_CONFIG
from worker.names import FUNCTION_NAME, RESULTS_PREFIX
from worker.store import RunStore

ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_LAMBDA")


class CliError(Exception):
    """A mistake the user can fix; printed without a traceback."""


@dataclass(frozen=True)
class Target:
    s3_endpoint: str | None = None
    lambda_endpoint: str | None = None
    bucket: str | None = None
    function: str = FUNCTION_NAME
    prefix: str = RESULTS_PREFIX
    local: dict[str, str] = field(default_factory=dict)
    """The local stack's fake credentials and region; empty for AWS (boto3's own chain)."""
    stack: StackState | None = None

    @classmethod
    def resolve(
        cls,
        endpoint_url: str | None,
        bucket: str | None,
        function: str | None,
        prefix: str | None,
    ) -> Target:
        env = os.environ
        endpoint_url = endpoint_url or env.get("BATON_ENDPOINT_URL")
        stack = None
        if not endpoint_url and not any(env.get(name) for name in ENDPOINT_VARIABLES):
            stack = load()
        s3_endpoint = lambda_endpoint = endpoint_url
        if stack is not None:
            s3_endpoint, lambda_endpoint = stack.s3_endpoint_url, stack.lambda_endpoint_url
        return cls(
            s3_endpoint=s3_endpoint,
            lambda_endpoint=lambda_endpoint,
            bucket=bucket or env.get("BATON_BUCKET") or (stack.bucket if stack else None),
            function=function
            or env.get("BATON_FUNCTION")
            or (stack.function if stack else FUNCTION_NAME),
            prefix=prefix or env.get("BATON_RESULTS_PREFIX") or RESULTS_PREFIX,
            local=stack.environment() if stack is not None else {},
            stack=stack,
        )

    def require_bucket(self) -> str:
        if not self.bucket:
            raise CliError(
                "no bucket: pass --bucket, set BATON_BUCKET, or start a local stack here "
                "with `baton stack up`"
            )
        return self.bucket

    def s3(self) -> Any:
        return self._client("s3", self.s3_endpoint, BOTO_CONFIG)

    def lambda_client(self, config: Config) -> Any:
        return self._client("lambda", self.lambda_endpoint, config)

    def _client(self, service: str, endpoint: str | None, config: Config) -> Any:
        return boto3.session.Session(
            aws_access_key_id=self.local.get("AWS_ACCESS_KEY_ID"),
            aws_secret_access_key=self.local.get("AWS_SECRET_ACCESS_KEY"),
            aws_session_token=self.local.get("AWS_SESSION_TOKEN"),
            region_name=self.local.get("AWS_DEFAULT_REGION"),
        ).client(service, endpoint_url=endpoint, config=config)  # type: ignore[call-overload]

    def store(self) -> RunStore:
        return RunStore.over(self.s3(), self.require_bucket(), self.prefix)
