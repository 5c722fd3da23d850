"""`ChaosStack`: the embedded stack running baton under every fault it claims to survive.

Each kind in `faults.FAULTS` is switched on at its seeded rate: S3 errors
before a worker's request reaches the store and after a write landed
(`ChaosS3Faults`), throttled, dropped and duplicated asynchronous invokes
(`LambdaFaults`), and crashes, hangs and deferrals inside the containers
(`processor.process`). The sweep ticks all along, so lost hand-offs are resumed.

The harness drives (uploads, waits) and counts faults where they happened: S3
faults by the emulator, invoke faults and timeouts by the runtime, crashes and
deferrals by the processor's faults file. Judging a run is the `Oracle`'s, which
reads S3 through `observer`, a second, fault-free endpoint on the same store.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import boto3
from botocore.config import Config

from devstack.chaos.config import ChaosConfig
from devstack.chaos.faults import RATES, Seen, counts, kinds_of
from devstack.chaos.oracle import Oracle, RunCheck, Source
from devstack.chaos.processor import CRASH_ONCE, HANG_ONCE, KILLER, recorded
from devstack.lambda_runtime import REGION
from devstack.s3server import EmbeddedS3, FaultHook, RandomFaults, S3Call, S3Fault
from devstack.stack import FAKE_CREDENTIAL, EmbeddedStack
from worker.checkpoint import TERMINAL, Checkpoint
from worker.listing import SPEC_SUFFIX
from worker.names import RESULTS_PREFIX, TASKS_PREFIX
from worker.start import CHAINS_METADATA
from worker.store import RunStore

__all__ = ["ChaosS3Faults", "ChaosStack"]

_POLL_S = 0.2


class ChaosS3Faults:
    """The S3 fault hook: seeded errors for the worker's requests, none for the harness's.

    One `RandomFaults` per rate of the S3 kinds, answering their responses; the
    harness's uploads (PUTs under `tasks/`) and setup calls are spared: a
    retried upload would be a second upload, and that is a second run.
    """

    def __init__(self, bucket: str, config: ChaosConfig, planted: FaultHook | None = None) -> None:
        self.bucket = bucket
        self.enabled = False
        self.planted = planted
        """Asked first: a scenario's own, targeted faults."""
        self.random: list[RandomFaults] = []
        for rate in RATES:
            kinds = kinds_of(rate)
            responses = [kind.response for kind in kinds if kind.response is not None]
            if responses:
                # A response after the write is for writes; one rate's responses agree.
                match = self._write if responses[0].after else self._worker_call
                seed = config.seed + len(self.random)
                self.random.append(RandomFaults(config.rate(kinds[0]), seed, responses, match))

    def __call__(self, call: S3Call) -> S3Fault | None:
        if self.planted is not None and self._worker_call(call):
            fault = self.planted(call)
            if fault is not None:
                return fault
        for hook in self.random:
            fault = hook(call)
            if fault is not None:
                return fault
        return None

    def _worker_call(self, call: S3Call) -> bool:
        if not self.enabled or call.bucket != self.bucket:
            return False
        return not (call.method == "PUT" and (not call.key or call.key.startswith(TASKS_PREFIX)))

    def _write(self, call: S3Call) -> bool:
        return call.method in ("PUT", "DELETE") and bool(call.key) and self._worker_call(call)


class ChaosStack:
    """An `EmbeddedStack` running baton under `ChaosConfig`'s faults; a context manager.

    Reads go through `observer`, a second S3 endpoint on the same (process-wide)
    store that injects nothing, so checking never disturbs the run nor spends
    its faults.
    """

    def __init__(
        self, config: ChaosConfig, directory: Path, s3_fault_hook: FaultHook | None = None
    ) -> None:
        self.config = config
        self.directory = directory
        config.processor(directory).prepare()
        bucket = f"baton-chaos-{uuid.uuid4().hex[:12]}"
        self.s3_faults = ChaosS3Faults(bucket, config, s3_fault_hook)
        self.log_path = directory / "containers.log"
        self.stack = EmbeddedStack(
            config.function(bucket, directory),
            bucket=bucket,
            faults=config.lambda_faults(),
            s3_fault_hook=self.s3_faults,
            log_file=self.log_path,
            sweep_interval_s=config.sweep_interval_s,
        )
        self.observer = EmbeddedS3()
        self._clients: list[Any] = []

    @property
    def bucket(self) -> str:
        return self.stack.bucket

    def start(self) -> Self:
        self.stack.start()
        try:
            self.observer.start()
            self.s3 = self._client(self.observer.endpoint_url)
            self.uploader = self._client(self.stack.s3_endpoint_url)
            self.store = RunStore.over(self.s3, self.bucket, RESULTS_PREFIX)
            self.oracle = Oracle(self.store, self.log_path, self.config.max_task_attempts)
        except BaseException:
            self.stop()
            raise
        self.s3_faults.enabled = True
        return self

    def stop(self) -> None:
        self.s3_faults.enabled = False
        for client in self._clients:
            client.close()
        self._clients.clear()
        self.stack.stop()
        self.observer.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # driving
    def tasks(self, tag: str, count: int, killers: Iterable[int] = ()) -> list[dict[str, Any]]:
        planted = set(killers)
        return [
            {"url": f"https://chaos.invalid/{tag}/{i}", "tag": tag}
            | ({"chaos": KILLER} if i in planted else {})
            for i in range(count)
        ]

    def upload(
        self, tag: str, tasks: Sequence[Any], key: str | None = None, chains: int | None = None
    ) -> Source:
        """Upload a JSONL list under tasks/: its ObjectCreated event starts a run."""
        body = b"".join(json.dumps(task).encode() + b"\n" for task in tasks)
        killers = frozenset(
            i for i, t in enumerate(tasks) if isinstance(t, dict) and t.get("chaos") == KILLER
        )
        source = self.upload_body(tag, body, len(tasks), key, killers=killers, chains=chains)
        return replace(source, healthy=True)

    def upload_body(
        self,
        tag: str,
        body: bytes,
        total: int,
        key: str | None = None,
        *,
        killers: frozenset[int] = frozenset(),
        chains: int | None = None,
    ) -> Source:
        """Upload raw bytes (hostile ones too) as the task list `tag`, of `total` tasks."""
        key = key or f"{TASKS_PREFIX}{tag}.jsonl"
        chains = chains or self.config.chains
        metadata = {CHAINS_METADATA: str(chains)} if chains > 1 else {}
        etag = self.uploader.put_object(Bucket=self.bucket, Key=key, Body=body, Metadata=metadata)[
            "ETag"
        ]
        return Source(tag, key, str(etag), total, killers, healthy=False)

    def upload_prefix(self, tag: str, count: int, chains: int | None = None) -> Source:
        """`count` objects under `chaos-data/{tag}/`, then a spec `tasks/{tag}.prefix.json`
        whose upload starts a prefix run of them (the function's processor: the chaos one).

        The objects go through `observer` (no faults: a retried seed PUT is not what is
        tested), a second before the spec (S3 keeps whole seconds; the run's cutoff must
        follow them). `Source.total` is the objects the run must list.
        """
        prefix = f"chaos-data/{tag}/"
        for i in range(count):
            self.s3.put_object(Bucket=self.bucket, Key=f"{prefix}{i:05d}", Body=f"{tag} {i}")
        time.sleep(1.1)
        spec = json.dumps({"prefix": prefix}).encode()
        key = f"{TASKS_PREFIX}{tag}{SPEC_SUFFIX}"
        source = self.upload_body(tag, spec, count, key, chains=chains)
        return replace(source, healthy=True)

    def upload_run(self, number: int) -> Source:
        """Run `number` of a chaos session: `config.tasks` tasks, plantings at seeded places."""
        config = self.config
        rng = random.Random(f"{config.seed}/planted/{number}")
        planted = rng.sample(
            range(config.tasks), min(config.tasks, config.killers + 2 * config.once)
        )
        tag = f"r{number}"
        tasks = self.tasks(tag, config.tasks, planted[: config.killers])
        for i, index in enumerate(planted[config.killers :]):
            tasks[index]["chaos"] = CRASH_ONCE if i % 2 == 0 else HANG_ONCE
        return self.upload(tag, tasks)

    def run_id(self, source: Source, timeout_s: float = 30.0) -> str | None:
        """The run its upload started, once it exists."""
        deadline = time.monotonic() + timeout_s
        while True:
            runs = self.store.runs_for_source(source.key, source.etag)
            if runs or time.monotonic() > deadline:
                return runs[0] if runs else None
            time.sleep(_POLL_S)

    def checkpoint(self, run_id: str) -> Checkpoint:
        return self.store.load_checkpoint(run_id).checkpoint

    def wait(self, sources: Sequence[Source], timeout_s: float) -> None:
        """Until every run has ended (done, failed, cancelled, superseded) or time is up."""
        deadline = time.monotonic() + timeout_s
        pending = list(sources)
        while pending and time.monotonic() < deadline:
            still = []
            for source in pending:
                runs = self.store.runs_for_source(source.key, source.etag)
                if not runs or not self._ended(runs):
                    still.append(source)
            pending = still
            if pending:
                time.sleep(_POLL_S)

    def wait_status(self, run_id: str, timeout_s: float = 60.0) -> Checkpoint:
        deadline = time.monotonic() + timeout_s
        while True:
            cp = self.oracle.checkpoint_or_none(run_id)
            if cp is not None and cp.status in TERMINAL and self.store.load_summary(run_id):
                return cp
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} did not end within {timeout_s} s: {cp}")
            time.sleep(_POLL_S)

    def settle(self, timeout_s: float = 30.0) -> None:
        """Let late deliveries and retries run out, so their effects (if any) are seen."""
        self.stack.runtime.wait_idle(timeout_s)
        time.sleep(0.3)
        self.stack.runtime.wait_idle(timeout_s)

    # counting and checking
    def faults(self) -> dict[str, int]:
        """Faults that happened, by kind, counted where they happened."""
        seen = Seen(
            s3=self.stack.s3.faults_injected,
            runtime=self.stack.runtime.stats(self.stack.function.name),
            processor=self.processor_faults(),
        )
        return counts(seen)

    def processor_faults(self) -> Counter[str]:
        return recorded(self.directory)

    def check(self, source: Source) -> RunCheck:
        return self.oracle.check(source)

    def rows(self, run_id: str) -> list[dict[str, Any]]:
        return self.oracle.rows(run_id)

    def leg_lines(self) -> list[dict[str, Any]]:
        return self.oracle.leg_lines()

    # helpers
    def _ended(self, runs: list[str]) -> bool:
        """A run has ended once its summary is written (after its last chain's CAS)."""
        return self.store.load_summary(runs[0]) is not None

    def _client(self, endpoint_url: str) -> Any:
        client = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=REGION,
            config=Config(retries={"mode": "standard", "max_attempts": 10}),
            aws_access_key_id=FAKE_CREDENTIAL,
            aws_secret_access_key=FAKE_CREDENTIAL,
            aws_session_token=FAKE_CREDENTIAL,
        )
        self._clients.append(client)
        return client
