"""What one Lambda container keeps warm: settings, clients, the fetcher, the pool."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from cache import ObjectCache, object_cache
from worker.autoscale import Autoscaler, cpu_share
from worker.budget import TimeBudget
from worker.clock import SYSTEM_CLOCK, Clock
from worker.config import Settings
from worker.crawl.steps import CrawlMemory
from worker.exceptions import ConfigError
from worker.fetch import Fetcher, FetchPolicy
from worker.handoff import Invoker, LambdaInvoker
from worker.hosts import Hosts
from worker.inflight import InFlight
from worker.netguard import NetPolicy
from worker.notice import AwsNotifier, Notifier
from worker.processor import Processor, load_processor
from worker.s3 import ObjectStore

BOTO_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 5},
    connect_timeout=5,
    read_timeout=30,
    max_pool_connections=32,
    signature_version="s3v4",
)
"""SigV4 everywhere, presigned URLs included (their lifetime is capped at 7 days)."""
INVOKE_CONFIG = Config(
    retries={"total_max_attempts": 1},
    connect_timeout=5,
    read_timeout=10,
    max_pool_connections=16,
)
IO_THREADS = 16
"""S3 and Lambda calls beside the work: a commit's PUT and the cancel check, and a
fan-out start's checkpoint creates and leg invokes (a thousand chains in seconds)."""
"""The hand-off's one retry policy is worker.handoff's, bounded by the leg's time left;
botocore must not retry underneath it."""


@dataclass
class Container:
    settings: Settings
    s3: ObjectStore
    invoker: Invoker
    lambda_client: Any
    fetcher: Fetcher
    processor: Processor
    pool: ThreadPoolExecutor
    budget: TimeBudget
    autoscaler: Autoscaler
    hosts: Hosts
    notifier: Notifier
    io: ThreadPoolExecutor
    """Small S3 reads that overlap the leg's own S3 writes."""
    cache: ObjectCache = field(default_factory=object_cache)
    clock: Clock = SYSTEM_CLOCK
    in_flight: Callable[[], InFlight] = InFlight
    """A leg's set of tasks in flight (the simulator's waits in virtual time)."""
    crawl: CrawlMemory = field(default_factory=CrawlMemory)
    """Crawl runs' logs, seen-sets and robots rules, kept for the next leg."""
    recursion_checked: bool = False
    instance_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    """Tells this container's legs from another's: duplicate deliveries share a request id."""
    legs_started: int = 0
    signer: ObjectStore | None = None
    """Signs presigned URLs when not the function's own credentials (see the README)."""
    _named: dict[str, Processor] = field(default_factory=dict)
    invocations: int = 0
    unmetered_init_ms: int = 0
    """The container's INIT time, set at its first invocation (whatever it is) and taken by
    the first meter of that same invocation; any later invocation finds 0."""

    def named_processor(self, name: str) -> Processor:
        """A processor a run names (a prefix run's `presign`, `sha256`), loaded once."""
        if name not in self._named:
            self._named[name] = load_processor(name)
        return self._named[name]

    def begin_invocation(self, init_ms: Callable[[], int]) -> None:
        """Called once per invocation, before anything is metered: INIT belongs to the
        container's first invocation only (a sweep or an ignored event takes it unbilled
        to any run, rather than a later leg charging the whole process age as INIT)."""
        self.invocations += 1
        self.unmetered_init_ms = init_ms() if self.invocations == 1 else 0

    def take_init_ms(self) -> int:
        taken, self.unmetered_init_ms = self.unmetered_init_ms, 0
        return taken

    def next_owner_suffix(self) -> str:
        """Unique per leg: this container's id and its count of legs."""
        self.legs_started += 1
        return f"{self.instance_id}.{self.legs_started}"

    @classmethod
    def create(
        cls,
        settings: Settings,
        *,
        s3: Any | None = None,
        lambda_client: Any | None = None,
        invoker: Invoker | None = None,
        clock: Clock = SYSTEM_CLOCK,
        notifier: Notifier | None = None,
    ) -> Container:
        """Production defaults; tests pass their own clients, fakes and clock."""
        s3 = s3 if s3 is not None else boto3.client("s3", config=BOTO_CONFIG)
        if lambda_client is None:
            lambda_client = boto3.client("lambda", config=INVOKE_CONFIG)
        max_in_flight = settings.concurrency or settings.max_concurrency
        policy = FetchPolicy(
            attempts=settings.fetch_attempts,
            request_timeout_s=settings.request_timeout_s,
            max_bytes=settings.max_page_bytes,
            max_redirects=settings.max_redirects,
            user_agent=settings.user_agent,
        )
        return cls(
            settings=settings,
            signer=signing_store(settings.signing_secret_id)
            if settings.signing_secret_id
            else None,
            s3=ObjectStore(s3),
            lambda_client=lambda_client,
            clock=clock,
            invoker=invoker or LambdaInvoker(lambda_client, settings.handoff_attempts),
            fetcher=Fetcher(
                policy,
                NetPolicy.from_cidrs(settings.allow_nets),
                pool_size=settings.per_host_concurrency,
            ),
            processor=load_processor(settings.processor),
            pool=ThreadPoolExecutor(max_in_flight, thread_name_prefix="task"),
            io=ThreadPoolExecutor(IO_THREADS, thread_name_prefix="io"),
            budget=TimeBudget(
                margin_ms=settings.margin_ms,
                adaptive=settings.adaptive_margin,
                initial_plan=settings.batch_size,
            ),
            autoscaler=Autoscaler(
                maximum=settings.max_concurrency,
                fixed=settings.concurrency or None,
                share=cpu_share(),
            ),
            hosts=Hosts(per_host=settings.per_host_concurrency),
            notifier=notifier
            or AwsNotifier(
                boto3.client("events", config=INVOKE_CONFIG) if settings.event_bus else None,
                settings.event_bus,
                settings.webhook_url,
                settings.webhook_secret,
            ),
        )

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.io.shutdown(wait=True)
        self.fetcher.close()


def signing_store(secret_id: str) -> ObjectStore:
    """An S3 door that only signs, with a dedicated IAM user's long-term keys.

    URLs signed with the function role's temporary credentials stop working when that
    session ends (hours); an IAM user's keys keep them valid for their whole expiry.
    """
    try:
        raw = boto3.client("secretsmanager", config=INVOKE_CONFIG).get_secret_value(
            SecretId=secret_id
        )["SecretString"]
        keys = json.loads(raw)
        client = boto3.client(
            "s3",
            aws_access_key_id=keys["access_key_id"],
            aws_secret_access_key=keys["secret_access_key"],
            config=BOTO_CONFIG,
        )
    except (BotoCoreError, ClientError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"BATON_SIGNING_SECRET_ID {secret_id!r}: cannot read signing keys from it "
            f'(want a JSON secret {{"access_key_id", "secret_access_key"}}): {exc}'
        ) from exc
    return ObjectStore(client)
