"""Chaos on the embedded stack: prove a run cannot lose, duplicate, fork or loop.

    python -m devstack.chaos --seed 7 --runs 6 --tasks 300     # what `make chaos` runs

`ChaosStack` is an `EmbeddedStack` with every fault baton claims to survive
switched on, each at a seeded rate: S3 errors before a request reaches the
store (500 InternalError, 503 SlowDown) and after a write landed (the client
sees a 503 for a PUT or DELETE that happened), throttled, dropped and
duplicated asynchronous invokes (`LambdaFaults`), and, through the per-task
processor `process` below (`BATON_PROCESSOR=devstack.chaos:process`),
crashes (`os._exit` mid-batch), hangs that the runtime kills at the function's
timeout, and tasks deferred to the next leg (`OutOfTimeError`). The sweep ticks
all along, so lost hand-offs are resumed.

Faults are counted where they happen, not where they were planned: S3 faults by
the emulator (`EmbeddedS3.faults_injected`), invoke faults and timeouts by the
runtime (`FunctionStats`), crashes by the processor, which appends a line to a
faults file just before it exits. Every check reads S3 (through a second,
fault-free endpoint on the same store) and the legs' JSON log lines, never the
worker's own answers.

A crash or a hang is drawn per (seed, run tag, task index, attempt), so a task
that crashed is not doomed: its next attempt draws again. Tasks planted with the
option `"chaos": "killer"` crash on every attempt and must end up recorded as
failed ("task killed its leg N times; skipped"); `crash_once` and `hang_once`
fail their first attempt only.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import logging
import os
import random
import re
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import boto3
from botocore.config import Config

from devstack.demo import LegLog
from devstack.lambda_runtime import REGION, FunctionConfig, LambdaFaults
from devstack.s3server import (
    INTERNAL_ERROR,
    SLOW_DOWN,
    EmbeddedS3,
    FaultHook,
    RandomFaults,
    S3Call,
    S3Fault,
)
from devstack.stack import FAKE_CREDENTIAL, EmbeddedStack
from worker.checkpoint import TERMINAL, Checkpoint
from worker.exceptions import OutOfTimeError, RunNotFoundError, TransientError
from worker.processor import TaskContext
from worker.store import RunStore
from worker.tasks import Task

__all__ = [
    "CRASH_ONCE",
    "HANG_ONCE",
    "KILLER",
    "ChaosConfig",
    "ChaosReport",
    "ChaosS3Faults",
    "ChaosStack",
    "RunCheck",
    "Source",
    "main",
    "process",
    "run_chaos",
]

log = logging.getLogger(__name__)

KILLER = "killer"
"""Task option `"chaos": "killer"`: the task crashes its leg on every attempt."""
CRASH_ONCE = "crash_once"
HANG_ONCE = "hang_once"
AFTER_WRITE = S3Fault(503, "ServiceUnavailable", "Service is unable to handle request.", after=True)
"""The write landed, the client sees an error (and botocore retries it)."""
FAULT_KINDS = (
    "s3_500",
    "s3_503",
    "s3_after_write",
    "throttle",
    "drop",
    "duplicate",
    "crash",
    "timeout",
    "defer",
)
S3_CODES = {
    "s3_500": INTERNAL_ERROR.code,
    "s3_503": SLOW_DOWN.code,
    "s3_after_write": "ServiceUnavailable",
}
CHAIN_EXITS = frozenset(
    {"handed_off", "handoff_failed", "done", "failed", "cancelled", "superseded"}
)
"""Leg exits that carry the chain on (or end it): at most one per leg number of a run."""
RESULTS_PREFIX = "runs/"
KILLED_ERROR = re.compile(r"^task killed its leg (\d+) times; skipped$")
_POLL_S = 0.2


# --------------------------------------------------------------------------------------
# The chaotic per-task processor (runs inside the container processes)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ProcessorChaos:
    """The processor's side of the config, from `CHAOS_*` variables of the function."""

    directory: Path | None
    seed: int
    crash_rate: float
    hang_rate: float
    defer_rate: float
    task_ms: float
    hang_s: float

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> _ProcessorChaos:
        directory = env.get("CHAOS_DIR")
        return cls(
            directory=Path(directory) if directory else None,
            seed=int(env.get("CHAOS_SEED", "0")),
            crash_rate=float(env.get("CHAOS_CRASH_RATE", "0")),
            hang_rate=float(env.get("CHAOS_HANG_RATE", "0")),
            defer_rate=float(env.get("CHAOS_DEFER_RATE", "0")),
            task_ms=float(env.get("CHAOS_TASK_MS", "1")),
            hang_s=float(env.get("CHAOS_HANG_S", "60")),
        )

    def attempt(self, tag: str, index: int) -> int:
        """This task's attempt number, 1 first, counted across processes in a file."""
        if self.directory is None:
            _local_attempts[(tag, index)] += 1
            return _local_attempts[(tag, index)]
        path = self.directory / "attempts" / f"{_safe(tag)}-{index}"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, b".")
            return os.fstat(fd).st_size
        finally:
            os.close(fd)

    def record(self, kind: str, tag: str, index: int, attempt: int) -> None:
        """One line per fault, written (unbuffered) before the fault takes the process."""
        if self.directory is None:
            return
        line = f"{kind} {tag} {index} {attempt} {os.getpid()}\n".encode()
        fd = os.open(self.directory / "faults.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)


_local_attempts: Counter[tuple[str, int]] = Counter()
"""Attempts per task when no CHAOS_DIR is shared: counted in this process only."""


@functools.cache
def _chaos() -> _ProcessorChaos:
    return _ProcessorChaos.from_env(os.environ)


def process(task: Task, ctx: TaskContext) -> dict[str, Any]:
    """Cheap fake work that sometimes crashes the container, hangs past the timeout or
    defers itself to the next leg."""
    chaos = _chaos()
    tag = str(task.options.get("tag", ""))
    attempt = chaos.attempt(tag, task.index)
    plan = task.options.get("chaos")
    roll = random.Random(f"{chaos.seed}/{tag}/{task.index}/{attempt}").random()
    first = attempt == 1
    if plan == KILLER or (plan == CRASH_ONCE and first) or roll < chaos.crash_rate:
        chaos.record("crash", tag, task.index, attempt)
        os._exit(70)
    hang = chaos.crash_rate + chaos.hang_rate
    if (plan == HANG_ONCE and first) or roll < hang:
        chaos.record("hang", tag, task.index, attempt)
        time.sleep(chaos.hang_s)  # the runtime kills the container long before this ends
    elif roll < hang + chaos.defer_rate:
        chaos.record("defer", tag, task.index, attempt)
        raise OutOfTimeError("chaos: out of time before starting", tried=False)
    time.sleep(chaos.task_ms / 1000)
    return {"attempt": attempt}


def _safe(tag: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", tag)[:60] or "_"


# --------------------------------------------------------------------------------------
# The harness (the test process)
# --------------------------------------------------------------------------------------


FAULT_RATES = (
    "s3_error_rate",
    "s3_after_write_rate",
    "throttle_rate",
    "drop_rate",
    "duplicate_rate",
    "crash_rate",
    "hang_rate",
    "defer_rate",
)
"""ChaosConfig's fault rates, each in [0, 1]."""


@dataclass(frozen=True)
class ChaosConfig:
    """Rates are per opportunity: per S3 request, per invoke, per task attempt."""

    seed: int = 1
    runs: int = 2
    tasks: int = 200
    parallel: int = 2
    """Runs uploaded at once; `runs` are worked through in waves of this many."""
    killers: int = 1
    """Tasks per run planted to crash their leg on every attempt."""
    once: int = 1
    """Tasks per run planted to crash on their first attempt, and as many to hang on it."""
    s3_error_rate: float = 0.02
    s3_after_write_rate: float = 0.02
    throttle_rate: float = 0.15
    drop_rate: float = 0.1
    duplicate_rate: float = 0.15
    crash_rate: float = 0.006
    hang_rate: float = 0.004
    defer_rate: float = 0.01
    timeout_s: float = 2.5
    task_ms: float = 15.0
    batch_size: int = 6
    concurrency: int = 2
    max_concurrency: int = 4
    margin_ms: int = 1_000
    lease_slack_ms: int = 300
    stall_after_ms: int = 1_500
    sweep_interval_s: float = 0.5
    max_task_attempts: int = 3
    max_wait_s: float = 300.0
    """Per wave: a run not ended by then counts as unfinished."""
    environment: Mapping[str, str] = field(default_factory=dict)
    """Extra function variables (say BATON_MAX_LEGS), over the ones derived here."""

    @classmethod
    def quiet(cls, **overrides: Any) -> ChaosConfig:
        """No random faults at all: for scenarios that plant their own."""
        rates = dict.fromkeys(
            FAULT_RATES,
            0.0,
        )
        return cls(**{**rates, "killers": 0, "once": 0, **overrides})

    def function(self, bucket: str, directory: Path) -> FunctionConfig:
        environment = {
            "BATON_BUCKET": bucket,
            "BATON_PROCESSOR": "devstack.chaos:process",
            "BATON_BATCH_SIZE": str(self.batch_size),
            "BATON_CONCURRENCY": str(self.concurrency),
            "BATON_MARGIN_MS": str(self.margin_ms),
            "BATON_LEASE_SLACK_MS": str(self.lease_slack_ms),
            "BATON_STALL_AFTER_MS": str(self.stall_after_ms),
            "BATON_MAX_TASK_ATTEMPTS": str(self.max_task_attempts),
            "BATON_METRICS": "false",
            "BATON_LOG_FORMAT": "json",
            "CHAOS_DIR": str(directory),
            "CHAOS_SEED": str(self.seed),
            "CHAOS_CRASH_RATE": str(self.crash_rate),
            "CHAOS_HANG_RATE": str(self.hang_rate),
            "CHAOS_DEFER_RATE": str(self.defer_rate),
            "CHAOS_TASK_MS": str(self.task_ms),
            "CHAOS_HANG_S": str(self.timeout_s * 5),
            **self.environment,
        }
        return FunctionConfig(
            name="baton-worker",
            timeout_s=self.timeout_s,
            memory_mb=1024,
            environment=environment,
            max_concurrency=self.max_concurrency,
            max_retries=2,
            retry_delay_s=0.3,
            recursive_loop="Allow",
        )

    def lambda_faults(self) -> LambdaFaults:
        return LambdaFaults(
            throttle_rate=self.throttle_rate,
            drop_rate=self.drop_rate,
            duplicate_rate=self.duplicate_rate,
            seed=self.seed,
        )

    def enabled_kinds(self) -> list[str]:
        rates = {
            "s3_500": self.s3_error_rate,
            "s3_503": self.s3_error_rate,
            "s3_after_write": self.s3_after_write_rate,
            "throttle": self.throttle_rate,
            "drop": self.drop_rate,
            "duplicate": self.duplicate_rate,
            "crash": self.crash_rate + self.killers + self.once,
            "timeout": self.hang_rate + self.once,
            "defer": self.defer_rate,
        }
        return [kind for kind in FAULT_KINDS if rates[kind] > 0]


class ChaosS3Faults:
    """The S3 fault hook: seeded errors for the worker's requests, none for the harness's.

    The harness's uploads (PUTs under `tasks/`) and setup calls are spared: a
    retried upload would be a second upload, and that is a second run.
    """

    def __init__(
        self,
        bucket: str,
        error_rate: float,
        after_write_rate: float,
        seed: int,
        planted: FaultHook | None = None,
    ) -> None:
        self.bucket = bucket
        self.enabled = False
        self.planted = planted
        """Asked first: a scenario's own, targeted faults."""
        self.before = RandomFaults(
            error_rate, seed, (INTERNAL_ERROR, SLOW_DOWN), match=self._worker_call
        )
        self.after = RandomFaults(after_write_rate, seed + 1, (AFTER_WRITE,), match=self._write)

    def __call__(self, call: S3Call) -> S3Fault | None:
        if self.planted is not None and self._worker_call(call):
            fault = self.planted(call)
            if fault is not None:
                return fault
        return self.before(call) or self.after(call)

    def _worker_call(self, call: S3Call) -> bool:
        if not self.enabled or call.bucket != self.bucket:
            return False
        return not (call.method == "PUT" and (not call.key or call.key.startswith("tasks/")))

    def _write(self, call: S3Call) -> bool:
        return call.method in ("PUT", "DELETE") and bool(call.key) and self._worker_call(call)


@dataclass(frozen=True)
class Source:
    """One uploaded task list, and what the harness planted in it."""

    tag: str
    key: str
    etag: str
    total: int
    killers: frozenset[int] = frozenset()
    healthy: bool = True
    """Every task but the killers must succeed (False for lists with bad entries)."""


@dataclass
class RunCheck:
    """What S3 says about one run, checked against the invariants."""

    source: Source
    run_id: str | None
    status: str
    position: int = 0
    legs: int = 0
    lost: int = 0
    duplicated: int = 0
    forks: int = 0
    killers_skipped: int = 0
    false_kills: int = 0
    summary_ok: bool = False
    """summary.json exists and agrees with the final checkpoint."""
    problems: list[str] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.status == "done" and self.summary_ok

    def line(self) -> str:
        state = "ok" if not self.problems else "; ".join(self.problems)
        return (
            f"run {self.source.tag} {self.run_id}: {self.status} at {self.position}/"
            f"{self.source.total} in {self.legs} legs, killers skipped "
            f"{self.killers_skipped}/{len(self.source.killers)}: {state}"
        )


@dataclass
class ChaosReport:
    checks: list[RunCheck]
    faults: dict[str, int]
    enabled: list[str]
    elapsed_s: float = 0.0

    @property
    def tasks(self) -> int:
        return sum(check.source.total for check in self.checks)

    @property
    def lost(self) -> int:
        return sum(check.lost for check in self.checks)

    @property
    def duplicated(self) -> int:
        return sum(check.duplicated for check in self.checks)

    @property
    def forks(self) -> int:
        return sum(check.forks for check in self.checks)

    @property
    def unfinished(self) -> int:
        return sum(not check.finished for check in self.checks)

    @property
    def missing_faults(self) -> list[str]:
        """Enabled kinds of fault that never actually happened."""
        return [kind for kind in self.enabled if self.faults.get(kind, 0) == 0]

    @property
    def ok(self) -> bool:
        clean = (self.lost, self.duplicated, self.forks, self.unfinished) == (0, 0, 0, 0)
        return clean and not any(check.problems for check in self.checks)

    def lines(self) -> list[str]:
        """One line per run, a note on faults that never happened, and the summary line."""
        lines = [check.line() for check in self.checks]
        if self.missing_faults:
            lines.append(f"note: enabled faults that never happened: {self.missing_faults}")
        return [*lines, self.line()]

    def line(self) -> str:
        kinds = " ".join(f"{kind}={self.faults.get(kind, 0)}" for kind in FAULT_KINDS)
        return (
            f"chaos: runs={len(self.checks)} tasks={self.tasks} "
            f"faults={sum(self.faults.values())} ({kinds}) lost={self.lost} "
            f"duplicated={self.duplicated} forks={self.forks} unfinished={self.unfinished}"
        )


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
        (directory / "attempts").mkdir(parents=True, exist_ok=True)
        bucket = f"baton-chaos-{uuid.uuid4().hex[:12]}"
        self.s3_faults = ChaosS3Faults(
            bucket, config.s3_error_rate, config.s3_after_write_rate, config.seed, s3_fault_hook
        )
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
        self.legs = LegLog(self.log_path)
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

    def upload(self, tag: str, tasks: Sequence[Any], key: str | None = None) -> Source:
        """Upload a JSONL list under tasks/: its ObjectCreated event starts a run."""
        body = b"".join(json.dumps(task).encode() + b"\n" for task in tasks)
        killers = frozenset(
            i for i, t in enumerate(tasks) if isinstance(t, dict) and t.get("chaos") == KILLER
        )
        source = self.upload_body(tag, body, len(tasks), key, killers)
        return replace(source, healthy=True)

    def upload_body(
        self,
        tag: str,
        body: bytes,
        total: int,
        key: str | None = None,
        killers: frozenset[int] = frozenset(),
    ) -> Source:
        """Upload raw bytes (hostile ones too) as the task list `tag`, of `total` tasks."""
        key = key or f"tasks/{tag}.jsonl"
        etag = self.uploader.put_object(Bucket=self.bucket, Key=key, Body=body)["ETag"]
        return Source(tag, key, str(etag), total, killers, healthy=False)

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
            cp = self._checkpoint_or_none(run_id)
            if cp is not None and cp.status in TERMINAL:
                return cp
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} did not end within {timeout_s} s: {cp}")
            time.sleep(_POLL_S)

    def settle(self, timeout_s: float = 30.0) -> None:
        """Let late deliveries and retries run out, so their effects (if any) are seen."""
        self.stack.runtime.wait_idle(timeout_s)
        time.sleep(0.3)
        self.stack.runtime.wait_idle(timeout_s)

    # checking
    def rows(self, run_id: str) -> list[dict[str, Any]]:
        return [
            row for _, _, key in self.store.result_keys(run_id) for row in self.store.read_rows(key)
        ]

    def leg_lines(self) -> list[dict[str, Any]]:
        self.legs.poll()
        return list(self.legs.legs)

    def faults(self) -> dict[str, int]:
        """Faults that happened, by kind, counted where they happened."""
        injected = self.stack.s3.faults_injected
        stats = self.stack.runtime.stats(self.stack.function.name)
        counts = {kind: injected.get(code, 0) for kind, code in S3_CODES.items()}
        counts.update(
            throttle=stats.fault_throttles,
            drop=stats.fault_drops,
            duplicate=stats.fault_duplicates,
            crash=self.processor_faults().get("crash", 0),
            timeout=stats.timeouts,
            defer=self.processor_faults().get("defer", 0),
        )
        return counts

    def processor_faults(self) -> Counter[str]:
        path = self.directory / "faults.log"
        if not path.exists():
            return Counter()
        return Counter(line.split(" ", 1)[0] for line in path.read_text().splitlines() if line)

    def check(self, source: Source) -> RunCheck:
        """Every invariant, from S3 and the legs' log lines, for the run of one upload."""
        runs = self.store.runs_for_source(source.key, source.etag)
        if not runs:
            return RunCheck(source, None, "never started", problems=["no run started"])
        run_id = runs[0]
        cp = self._checkpoint_or_none(run_id)
        if cp is None:
            return RunCheck(source, run_id, "no checkpoint", problems=["run has no checkpoint"])
        check = RunCheck(source, run_id, cp.status, cp.position, cp.leg + 1)
        if len(runs) > 1:
            check.forks += len(runs) - 1
            check.problems.append(f"one upload started {len(runs)} runs: {runs}")
        start = self.store.load_run(run_id).start_position
        self._check_results(check, cp, start)
        self._check_legs(check, run_id)
        self._check_summary(check, cp, start)
        return check

    def _check_results(self, check: RunCheck, cp: Checkpoint, start: int) -> None:
        ranges = [(s, e) for s, e, _ in self.store.result_keys(cp.run_id)]
        ranges.sort()
        for (_, end), (nxt, nxt_end) in itertools.pairwise(ranges):
            if nxt <= end:
                check.forks += 1
                check.problems.append(f"results overlap: ..{end} and {nxt}..{nxt_end}")
        counts: Counter[int] = Counter()
        attempts_to_kill = self.config.max_task_attempts
        for row in self.rows(cp.run_id):
            index = int(row["index"])
            counts[index] += 1
            error = row.get("error")
            killed = KILLED_ERROR.match(str(error or ""))
            if index in check.source.killers:
                if killed and int(killed.group(1)) >= attempts_to_kill:
                    check.killers_skipped += 1
                else:
                    check.problems.append(f"killer task {index} ended {error!r}")
            elif killed:
                check.false_kills += 1
                check.problems.append(f"task {index} was skipped as a killer")
            elif error is not None and check.source.healthy:
                check.problems.append(f"task {index} failed: {error}")
        expected = range(start, cp.position)
        check.lost = sum(1 for i in expected if counts[i] == 0)
        check.duplicated = sum(n - 1 for n in counts.values() if n > 1)
        stray = sum(n for i, n in counts.items() if i not in expected)
        check.duplicated += stray
        if check.lost:
            check.problems.append(f"{check.lost} tasks lost")
        if check.duplicated:
            check.problems.append(f"{check.duplicated} duplicate or stray results")

    def _check_legs(self, check: RunCheck, run_id: str) -> None:
        chain: Counter[int] = Counter()
        ends = 0
        for leg in self.leg_lines():
            if leg.get("run_id") != run_id or leg.get("exit") not in CHAIN_EXITS:
                continue
            chain[int(leg["leg"])] += 1
            ends += leg["exit"] != "handed_off" and leg["exit"] != "handoff_failed"
        forked = {leg: n for leg, n in chain.items() if n > 1}
        if forked:
            check.forks += sum(n - 1 for n in forked.values())
            check.problems.append(f"legs carried on more than once: {forked}")
        if ends > 1:
            check.forks += ends - 1
            check.problems.append(f"the run ended {ends} times")

    def _check_summary(self, check: RunCheck, cp: Checkpoint, start: int) -> None:
        if cp.status not in TERMINAL:
            check.problems.append(f"run still {cp.status} at {cp.position}/{cp.total}")
            return
        summary = self.store.load_summary(cp.run_id)
        if summary is None:
            check.problems.append(f"summary.json missing for a {cp.status} run")
            return
        processed = cp.position - start
        if summary["status"] != cp.status or summary["ok"] + summary["failed"] != processed:
            check.problems.append(
                f"summary disagrees with the checkpoint: {summary['status']} "
                f"{summary['ok']}+{summary['failed']} vs {cp.status} {processed}"
            )
            return
        check.summary_ok = True

    # helpers
    def _ended(self, runs: list[str]) -> bool:
        cp = self._checkpoint_or_none(runs[0])
        return cp is not None and cp.status in TERMINAL

    def _checkpoint_or_none(self, run_id: str) -> Checkpoint | None:
        try:
            return self.checkpoint(run_id)
        except (RunNotFoundError, TransientError):  # not created yet
            return None

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


def run_chaos(config: ChaosConfig, directory: Path) -> ChaosReport:
    """Upload `config.runs` lists in waves, let them run under faults, then check them all."""
    started = time.monotonic()
    sources: list[Source] = []
    with ChaosStack(config, directory) as chaos:
        step = max(1, config.parallel)
        for first in range(0, config.runs, step):
            uploaded = [chaos.upload_run(n) for n in range(first, min(config.runs, first + step))]
            sources.extend(uploaded)
            chaos.wait(uploaded, config.max_wait_s)
        chaos.settle()
        checks = [chaos.check(source) for source in sources]
        faults = chaos.faults()
    return ChaosReport(checks, faults, config.enabled_kinds(), time.monotonic() - started)


_CLI = ("seed", "runs", "tasks", "parallel", "killers", "once", *FAULT_RATES, "timeout_s")


def main(argv: Sequence[str] | None = None) -> int:
    defaults = ChaosConfig(runs=6, tasks=300)
    parser = argparse.ArgumentParser(
        prog="python -m devstack.chaos",
        description="Run baton under seeded faults on the embedded stack and check every run.",
    )
    for name in _CLI:
        value = getattr(defaults, name)
        flag = "--" + name.removesuffix("_s").replace("_", "-")
        parser.add_argument(flag, dest=name, type=type(value), default=value)
    parser.add_argument(
        "--work-dir",
        type=Path,
        help="keep the logs and fault files here (default: a temporary "
        "directory, removed when every check passed)",
    )
    args = parser.parse_args(argv)
    config = replace(defaults, **{name: getattr(args, name) for name in _CLI})
    directory = args.work_dir or Path(tempfile.mkdtemp(prefix="baton-chaos-"))
    directory.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(directory / "harness.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        report = run_chaos(config, directory)
    finally:
        root.removeHandler(handler)
        handler.close()
    *details, summary = report.lines()
    print("\n".join(details))
    if report.ok and args.work_dir is None:
        shutil.rmtree(directory)
        print(f"{report.elapsed_s:.0f} s")
    else:
        print(f"{report.elapsed_s:.0f} s; logs and fault files in {directory}")
    print(summary)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
