"""The embedded local stack: S3 and Lambda on loopback, wired like the SAM template.

`EmbeddedStack` starts an `EmbeddedS3` and a `LambdaRuntime`, creates the bucket,
registers the function (RecursiveLoop: Allow, as deployed) and delivers S3
ObjectCreated notifications for keys that match the trigger filter (prefix
`tasks/`, suffixes `.json` and `.jsonl`) as asynchronous invocations carrying a
real S3 event. No Docker, no AWS account: everything speaks HTTP on 127.0.0.1.

    with EmbeddedStack() as stack:
        stack.s3_client().put_object(Bucket=stack.bucket, Key="tasks/list.json", Body=b"[]")
        stack.runtime.wait_idle(30)
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import quote_plus

import boto3
from botocore.config import Config

from devstack.lambda_runtime import REGION, FunctionConfig, LambdaFaults, LambdaRuntime
from devstack.s3server import EmbeddedS3, FaultHook
from devstack.service import Service
from worker.clock import SYSTEM_CLOCK, Clock
from worker.names import FUNCTION_NAME, RESULTS_PREFIX, TASKS_PREFIX, TRIGGER_SUFFIXES
from worker.schedule import DUE_FORMAT

if TYPE_CHECKING:
    from mypy_boto3_lambda import LambdaClient
    from mypy_boto3_s3 import S3Client

__all__ = ["EmbeddedStack", "TriggerFilter", "default_function", "object_created_event"]

log = logging.getLogger(__name__)

FAKE_CREDENTIAL = "testing"
SWEEP_EVENT = {"action": "sweep"}


@dataclass(frozen=True)
class TriggerFilter:
    """The bucket notification's filter: one prefix, any of the suffixes (one rule each)."""

    prefix: str = TASKS_PREFIX
    suffixes: tuple[str, ...] = TRIGGER_SUFFIXES

    def matches(self, key: str) -> bool:
        return key.startswith(self.prefix) and key.endswith(self.suffixes)


def default_function(bucket: str) -> FunctionConfig:
    """baton's function as infra/template.yaml deploys it, with a local timeout and retries."""
    return FunctionConfig(
        name=FUNCTION_NAME,
        handler="handler.handler",
        timeout_s=30.0,
        memory_mb=1024,
        environment={
            "BATON_BUCKET": bucket,
            "BATON_TASKS_PREFIX": TASKS_PREFIX,
            "BATON_RESULTS_PREFIX": RESULTS_PREFIX,
        },
        max_retries=2,
        recursive_loop="Allow",
    )


def object_created_event(
    bucket: str,
    key: str,
    etag: str,
    size: int,
    *,
    sequencer: str,
    event_name: str = "ObjectCreated:Put",
    event_time: datetime | None = None,
) -> dict[str, Any]:
    """The notification S3 sends Lambda: key URL-encoded (quote_plus), ETag unquoted."""
    when = event_time or datetime.now(UTC)
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": REGION,
                "eventTime": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "eventName": event_name,
                "userIdentity": {"principalId": "AWS:LOCAL"},
                "requestParameters": {"sourceIPAddress": "127.0.0.1"},
                "responseElements": {
                    "x-amz-request-id": uuid.uuid4().hex[:16].upper(),
                    "x-amz-id-2": uuid.uuid4().hex,
                },
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "baton-tasks",
                    "bucket": {
                        "name": bucket,
                        "ownerIdentity": {"principalId": "LOCAL"},
                        "arn": f"arn:aws:s3:::{bucket}",
                    },
                    "object": {
                        "key": quote_plus(key, safe="/"),
                        "size": size,
                        "eTag": etag.strip('"'),
                        "sequencer": sequencer,
                    },
                },
            }
        ]
    }


class EmbeddedStack(Service):
    """S3 + Lambda on loopback with the bucket notification wired; a context manager."""

    def __init__(
        self,
        function: FunctionConfig | None = None,
        *,
        bucket: str | None = None,
        trigger: TriggerFilter | None = None,
        faults: LambdaFaults | None = None,
        s3_fault_hook: FaultHook | None = None,
        log_file: Path | None = None,
        sweep_interval_s: float | None = None,
        s3_port: int = 0,
        lambda_port: int = 0,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.bucket = bucket or f"baton-local-{uuid.uuid4().hex[:12]}"
        """Unique by default: moto's state is per process, shared by every stack in it."""
        self.function = function or default_function(self.bucket)
        self.trigger = trigger or TriggerFilter()
        self.s3 = EmbeddedS3(port=s3_port, on_object_created=self.notify, fault_hook=s3_fault_hook)
        self.runtime = LambdaRuntime(port=lambda_port, faults=faults, log_file=log_file)
        self.runtime.register(self.function)
        self.sweep_interval_s = sweep_interval_s
        """The template's SweepTick (every minute there); None sends none."""
        self.clock = clock
        """What time a tick says it is (EventBridge's `time`): a test moves it to make a
        schedule due without waiting."""
        self._sequence = itertools.count()
        self._stopping = threading.Event()
        self._ticker: threading.Thread | None = None
        self._notice_queue = ""

    def start(self) -> Self:
        s3_url = self.s3.start()
        try:
            self.runtime.s3_endpoint_url = s3_url
            self.runtime.start()
            client = self.s3_client()
            try:
                client.create_bucket(Bucket=self.bucket)
            finally:
                client.close()
            self._notice_queue = self._route_notices()
            if self.sweep_interval_s is not None:
                self._ticker = threading.Thread(
                    target=self._tick_every, args=(self.sweep_interval_s,), daemon=True
                )
                self._ticker.start()
        except BaseException:
            self.stop()
            raise
        log.info(
            "embedded stack up: S3 %s, Lambda %s, bucket %s, function %s",
            s3_url,
            self.runtime.endpoint_url,
            self.bucket,
            self.function.name,
        )
        return self

    def stop(self) -> None:
        """The ticker, then the runtime, so no container writes to S3 once it is gone."""
        self._stopping.set()
        if self._ticker is not None:
            self._ticker.join()
            self._ticker = None
        self.runtime.stop()
        self.s3.stop()

    @property
    def s3_endpoint_url(self) -> str:
        return self.s3.endpoint_url

    @property
    def lambda_endpoint_url(self) -> str:
        return self.runtime.endpoint_url

    def client_environment(self) -> dict[str, str]:
        """Variables that point boto3, the AWS CLI and `python -m baton` at this stack."""
        return {
            "AWS_ENDPOINT_URL_S3": self.s3_endpoint_url,
            "AWS_ENDPOINT_URL_EVENTBRIDGE": self.s3_endpoint_url,
            "AWS_ENDPOINT_URL_SQS": self.s3_endpoint_url,
            "AWS_ENDPOINT_URL_LAMBDA": self.lambda_endpoint_url,
            "AWS_ACCESS_KEY_ID": FAKE_CREDENTIAL,
            "AWS_SECRET_ACCESS_KEY": FAKE_CREDENTIAL,
            "AWS_SESSION_TOKEN": FAKE_CREDENTIAL,
            "AWS_DEFAULT_REGION": REGION,
            "BATON_BUCKET": self.bucket,
            "BATON_FUNCTION": self.function.name,
        }

    def notices(self, wait_s: float = 0.0) -> list[dict[str, Any]]:
        """Completion notices EventBridge delivered for this stack's bucket (each once):
        a rule on the default bus sends them to an SQS queue, as a user's target would."""
        sqs = self._client("sqs", self.s3_endpoint_url, None)
        try:
            answer = sqs.receive_message(
                QueueUrl=self._notice_queue,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=max(0, min(20, int(wait_s))),
            )
            messages = answer.get("Messages", [])
            for message in messages:
                sqs.delete_message(
                    QueueUrl=self._notice_queue, ReceiptHandle=message["ReceiptHandle"]
                )
        finally:
            sqs.close()
        return [json.loads(message["Body"]) for message in messages]

    def _route_notices(self) -> str:
        sqs = self._client("sqs", self.s3_endpoint_url, None)
        events = self._client("events", self.s3_endpoint_url, None)
        try:
            queue = sqs.create_queue(QueueName=f"notices-{self.bucket}")["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])[
                "Attributes"
            ]["QueueArn"]
            rule = f"notices-{self.bucket}"[:64]
            pattern = {"source": ["baton"], "detail": {"bucket": [self.bucket]}}
            events.put_rule(Name=rule, EventPattern=json.dumps(pattern))
            events.put_targets(Rule=rule, Targets=[{"Id": "queue", "Arn": arn}])
        finally:
            sqs.close()
            events.close()
        return str(queue)

    def s3_client(self, config: Config | None = None) -> S3Client:
        """A real boto3 S3 client on the stack, with fake credentials; close() it when done."""
        client: S3Client = self._client("s3", self.s3_endpoint_url, config)
        return client

    def lambda_client(self, config: Config | None = None) -> LambdaClient:
        """A real boto3 Lambda client on the stack's runtime; close() it when done."""
        client: LambdaClient = self._client("lambda", self.lambda_endpoint_url, config)
        return client

    def _client(self, service: str, endpoint_url: str, config: Config | None) -> Any:
        return boto3.client(
            service,  # type: ignore[call-overload]
            endpoint_url=endpoint_url,
            region_name=REGION,
            config=config,
            aws_access_key_id=FAKE_CREDENTIAL,
            aws_secret_access_key=FAKE_CREDENTIAL,
            aws_session_token=FAKE_CREDENTIAL,
        )

    def notify(self, bucket: str, key: str, etag: str, size: int) -> dict[str, Any] | None:
        """S3's ObjectCreated notification: invoke the function if the filter matches.

        EmbeddedS3 calls this after each write. Returns the event sent (None if filtered
        out); invoking with it again is how S3's rare duplicate delivery looks.
        """
        if bucket != self.bucket or not self.trigger.matches(key):
            return None
        sequencer = f"{time.time_ns():016X}{next(self._sequence) % 256:02X}"
        event = object_created_event(bucket, key, etag, size, sequencer=sequencer)
        request_id = self.runtime.invoke_async(self.function.name, event)
        log.info("s3://%s/%s created: event %s queued", bucket, key, request_id)
        return event

    def sweep(self) -> str:
        """Send one tick, as the EventBridge rule does (with its `time`, from the stack's
        clock); returns its request id."""
        return self.runtime.invoke_async(self.function.name, self.tick_event())

    def tick_event(self) -> dict[str, Any]:
        at = datetime.fromtimestamp(self.clock.now_ms() // 1000, UTC)
        return {**SWEEP_EVENT, "time": at.strftime(DUE_FORMAT)}

    def _tick_every(self, interval_s: float) -> None:
        while not self._stopping.wait(interval_s):
            self.sweep()
