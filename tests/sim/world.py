"""One seeded world: a bucket, a task list uploaded, the Lambda service, faults, until it settles.

Everything a seed decides is drawn from named streams (`random.Random(f"...:{seed}:{name}")`,
seeded through SHA-512, so no process's hash seed matters): the world's parameters,
the fault plan, the fault draws, the workload, Lambda's delays, S3's latencies and
the scheduler's tie-breaks.

The timeline: the list is uploaded and S3 notifies Lambda; the sweep ticks every
minute; world faults (extra sweeps, a cancel, a replaced list, a duplicate
notification, a deploy) happen at random moments until the world turns calm. From
then on only Lambda and the sweep act (and the operator redrives uploads from the
dead-letter queue), and every run must end: the world has settled when nothing is
queued or running and every run is terminal, summarised and tidied.
"""

from __future__ import annotations

import json
import logging
import random
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus

from botocore.exceptions import ClientError

from cache import ObjectCache
from tests.fakes import Killed
from tests.sim.executors import InlineExecutor, SimClock, SimInFlight, TaskPool
from tests.sim.faults import FaultPlan
from tests.sim.lam import Invocation, SimContainer, SimInvoker, SimLambda
from tests.sim.oracle import (
    OwnerLedger,
    Violation,
    chain_of,
    chain_of_rows,
    judge,
    runs_settled,
)
from tests.sim.processor import SimProcessor, TaskPlan, draw_plan
from tests.sim.s3 import MemoryS3, Stored, client_error
from tests.sim.scheduler import Actor, Scheduler
from tests.sim.trace import Trace
from worker.autoscale import Autoscaler
from worker.budget import TimeBudget
from worker.checkpoint import Checkpoint
from worker.config import Settings
from worker.container import Container
from worker.events import derive_run_id
from worker.store import SUMMARY_FILE, RunStore

BUCKET = "sim"
TICK_MS = 60_000
"""The EventBridge rule: rate(1 minute), the sweep tick."""
SETTLE_WITHIN_MS = 12 * 3_600_000
"""Virtual time after the calm within which every run must have ended."""
MAX_STEPS = 400_000
MAX_REDRIVES = 3


@dataclass
class Upload:
    key: str
    etag: str
    sequencer: str
    run_id: str
    version: int
    tasks: int

    @property
    def label(self) -> str:
        return f"{self.key} v{self.version} ({self.tasks} tasks)"


@dataclass(frozen=True)
class Params:
    """What a seed draws about its world, besides the faults."""

    tasks: int
    hosts: int
    timeout_ms: int
    settings: Settings
    commit_interval_ms: int
    reserved_concurrency: int
    max_event_age_ms: int
    calm_after_ms: int
    autoscaler_start: int
    key: str
    json_array: bool
    objects: bool
    bad_entry: bool

    @classmethod
    def draw(cls, rng: random.Random) -> Params:
        indexed = rng.random() < 0.25
        settings = Settings(
            bucket=BUCKET,
            batch_size=rng.randint(2, 10),
            concurrency=0 if rng.random() < 0.5 else rng.randint(1, 6),
            max_concurrency=8,
            per_host_concurrency=rng.randint(2, 8),
            margin_ms=rng.randint(300, 1_500),
            adaptive_margin=rng.random() < 0.8,
            max_legs=10_000 if rng.random() < 0.95 else rng.randint(3, 12),
            max_task_attempts=rng.choice((2, 3)),
            lease_slack_ms=rng.randint(500, 5_000),
            stall_after_ms=rng.randint(5_000, 120_000),
            request_timeout_s=round(rng.uniform(0.5, 5.0), 3),
            index_threshold_bytes=rng.randint(100, 1_500) if indexed else 32 * 1024 * 1024,
            check_recursion=False,
            metrics=False,
            log_format="text",
        )
        return cls(
            tasks=rng.randint(10, 60),
            hosts=rng.randint(1, 4),
            timeout_ms=rng.randint(3_000, 15_000),
            settings=settings,
            commit_interval_ms=rng.randint(500, 4_000),
            reserved_concurrency=rng.randint(1, 5),
            max_event_age_ms=rng.choice((60_000, 300_000, 3_600_000, 21_600_000)),
            calm_after_ms=rng.randint(10_000, 240_000),
            autoscaler_start=rng.randint(1, 8),
            key=rng.choice(("tasks/list.jsonl", "tasks/my list.jsonl", "tasks/a/b.jsonl")),
            json_array=not indexed and rng.random() < 0.1,
            objects=rng.random() < 0.3,
            bad_entry=rng.random() < 0.1,
        )


@dataclass(frozen=True)
class Notice:
    run_id: str
    at_ms: int
    chains_finished: bool
    """Whether every chain's checkpoint was terminal when the notice went out."""


class SimNotifier:
    """Records each completion notice with what S3 held when it was sent."""

    def __init__(self, world: World) -> None:
        self.world = world

    def send(self, detail: dict[str, Any]) -> list[str]:
        world = self.world
        run_id = str(detail["run_id"])
        run = f"{world.settings.results_prefix}{run_id}/"
        keys = [k for k in world.s3.keys(world.bucket, run) if k.endswith("checkpoint.json")]
        finished = all(_terminal(world.s3.body(world.bucket, key)) for key in keys)
        world.notices.append(Notice(run_id, world.clock.now_ms(), bool(keys) and finished))
        world.trace.add("notice", f"{run_id} {detail['status']}")
        return ["sim"]


def _terminal(body: bytes | None) -> bool:
    return body is not None and Checkpoint.from_json(json.loads(body)).finished


class World:
    def __init__(self, seed: int) -> None:
        self.seed = seed

        def stream(name: str) -> random.Random:
            return random.Random(f"baton-sim:{seed}:{name}")

        self.params = Params.draw(stream("params"))
        self.settings = self.params.settings
        self.bucket = BUCKET
        self.timeout_ms = self.params.timeout_ms
        self.reserved_concurrency = self.params.reserved_concurrency
        self.max_event_age_ms = self.params.max_event_age_ms
        self.scheduler = Scheduler(stream("scheduler"))
        self.start_ms = self.scheduler.now
        self.trace = Trace(self.scheduler)
        self.faults = FaultPlan(stream("plan"), stream("faults"))
        self.lambda_rng = stream("lambda")
        self.s3_rng = stream("s3")
        self.workload_rng = stream("workload")
        self.world_rng = stream("world")
        self.clock = SimClock(self.scheduler)
        self.ledger = OwnerLedger()
        self.s3 = MemoryS3(SimNetwork(self), on_write=self._landed)
        self.s3.create_bucket(Bucket=BUCKET)
        self.recursion_cutoff = self.faults.switch("recursion_cutoff")
        self.lam = SimLambda(self)
        self.invoker = SimInvoker(self)
        self.plans: dict[str, TaskPlan] = {}
        self.processor = SimProcessor(self.clock, self.plans, self.faults)
        self.killer_deaths: Counter[str] = Counter()
        self.uploads: list[Upload] = []
        self.excused_strikes = 0
        self.redrives = 0
        self.settled = False
        self.stopped = ""
        self.violations: list[Violation] = []
        self.notes: list[str] = []
        self.notices: list[Notice] = []
        self.notifier = SimNotifier(self)

    # the world's moves
    def run(self) -> list[Violation]:
        params = self.params
        self.trace.add("world", self._describe())
        self.upload(version=1)
        calm_at = self.start_ms + params.calm_after_ms
        rng = self.world_rng

        def sometime() -> int:
            return self.start_ms + rng.randint(0, params.calm_after_ms)

        for _ in range(self.faults.occurrences("sweep")):
            self.scheduler.at(sometime(), self._extra_sweep)
        if self.faults.occurrences("cancel"):
            self.scheduler.at(sometime(), self._cancel)
        if self.faults.occurrences("replace_list"):
            self.scheduler.at(sometime(), lambda: self.upload(version=2))
        if self.faults.occurrences("duplicate_upload_event"):
            self.scheduler.at(sometime(), self._duplicate_notification)
        if self.faults.occurrences("deploy"):
            self.scheduler.at(sometime(), self._deploy)
        self.scheduler.at(calm_at, self._calm)
        self.scheduler.after(rng.randint(0, TICK_MS), self._tick)
        try:
            finished = self.scheduler.run(until_ms=calm_at + SETTLE_WITHIN_MS, max_steps=MAX_STEPS)
            if not finished:
                self.stopped = (
                    f"stopped after {self.scheduler.steps} steps at "
                    f"+{(self.scheduler.now - self.start_ms) / 1000:.1f} s"
                )
        finally:
            self.scheduler.finish()
        self.violations = judge(self)
        for violation in self.violations:
            self.trace.add("oracle", str(violation))
        return self.violations

    def upload(self, version: int) -> None:
        params = self.params
        total = (
            params.tasks if version == 1 else max(5, params.tasks + self.world_rng.randint(-8, 8))
        )
        entries: list[Any] = []
        for i in range(total):
            url = f"https://h{i % params.hosts}.sim.invalid/v{version}/{i}"
            self.plans[url] = draw_plan(self.workload_rng, self.faults.rates)
            entries.append({"url": url, "id": f"t{i}"} if params.objects else url)
        if params.bad_entry:
            entries[self.workload_rng.randrange(total)] = 42
        if params.json_array:
            body = json.dumps(entries).encode()
        else:
            body = "".join(json.dumps(e) + "\n" for e in entries).encode()
        etag = self.s3.put_object(Bucket=BUCKET, Key=params.key, Body=body)["ETag"]
        sequencer = f"{self.seed:08X}{version:08X}"
        run_id = derive_run_id(BUCKET, params.key, etag, sequencer)
        upload = Upload(params.key, etag, sequencer, run_id, version, total)
        self.uploads.append(upload)
        self.trace.add("world", f"upload {upload.label}: run {run_id}")
        self.lam.send(self._notification(upload), source="s3", by="s3")

    def _notification(self, upload: Upload) -> dict[str, Any]:
        obj = {
            "key": quote_plus(upload.key),
            "eTag": upload.etag.strip('"'),
            "size": 0,
            "sequencer": upload.sequencer,
        }
        return {
            "Records": [
                {
                    "eventVersion": "2.1",
                    "eventSource": "aws:s3",
                    "eventName": "ObjectCreated:Put",
                    "s3": {"bucket": {"name": BUCKET}, "object": obj},
                }
            ]
        }

    def _duplicate_notification(self) -> None:
        upload = self.world_rng.choice(self.uploads)
        self.trace.add("world", f"S3 notifies {upload.label} again")
        self.lam.send(self._notification(upload), source="s3", by="s3")

    def _extra_sweep(self) -> None:
        self.lam.send({"action": "sweep"}, source="schedule", by="world")

    def _cancel(self) -> None:
        run_id = self.uploads[0].run_id
        self.trace.add("world", f"user cancels {run_id}")
        RunStore.over(self.s3, BUCKET, self.settings.results_prefix).request_cancel(run_id)

    def _deploy(self) -> None:
        # Fan-out's deploy changes leg payloads to v2 mid-run; with v1 only, nothing to switch.
        self.trace.add("world", "deploy: the payload version stays 1 (no-op until fan-out)")

    def _calm(self) -> None:
        self.faults.active = False
        self.trace.add("world", "calm: no more faults; Lambda and the sweep carry on")

    def _tick(self) -> None:
        if not self.faults.active and self.lam.idle:
            if (
                any(e.source == "s3" for e in self.lam.dead_letters)
                and self.redrives < MAX_REDRIVES
            ):
                self.redrives += 1
                self.lam.redrive()
            elif runs_settled(RunStore.over(self.s3, BUCKET, self.settings.results_prefix)):
                self.settled = True
                self.trace.add("world", "settled: every run ended")
                return
        self.lam.send({"action": "sweep"}, source="schedule", by="tick")
        self.scheduler.after(TICK_MS, self._tick)

    # what the Lambda service asks of the world
    def new_container(self, number: int) -> SimContainer:
        settings = self.settings
        name = f"c{number}"
        container = Container.create(
            settings,
            s3=self.s3,
            lambda_client=object(),
            invoker=self.invoker,
            clock=self.clock,
            notifier=self.notifier,
        )
        container.instance_id = name
        container.cache = ObjectCache()
        container.pool = TaskPool(self.scheduler, self.clock, self.kill_by_task)
        container.io = InlineExecutor()
        container.in_flight = lambda: SimInFlight(self.scheduler)
        container.processor = self.processor
        container.budget = TimeBudget(
            margin_ms=settings.margin_ms,
            adaptive=settings.adaptive_margin,
            initial_plan=settings.batch_size,
            commit_interval_ms=float(self.params.commit_interval_ms),
        )
        use = self.lambda_rng.uniform(0.2, 1.2)
        clock = self.clock
        container.autoscaler = Autoscaler(
            maximum=settings.max_concurrency,
            start=self.params.autoscaler_start,
            fixed=settings.concurrency or None,
            cpu_seconds=lambda: clock.monotonic() * use,
        )
        return SimContainer(name, container)

    def kill_by_task(self, actor: Actor, reason: str) -> None:
        invocation: Invocation = actor.data
        if not invocation.alive or actor.killed is not None:
            return
        self.killer_deaths[reason] += 1
        self.faults.counts["task_killer"] += 1
        self.trace.add(invocation.name, f"KILLED: {reason}")
        self.scheduler.kill(actor, reason)

    def _landed(self, bucket: str, key: str, before: Stored | None, after: Stored | None) -> None:
        prefix = self.settings.results_prefix
        actor = self.scheduler.current
        writer: Invocation | None = actor.data if actor is not None else None
        if key.endswith("/" + SUMMARY_FILE):
            self.ledger.wrote_summary(key, after.body if after else None)
        rows = chain_of_rows(key, prefix)
        if rows is not None and writer is not None and after is not None:
            self.ledger.wrote_rows(rows, key, writer, self.scheduler.now - self.start_ms)
        chain = chain_of(key, prefix)
        if chain is None:
            return
        note = self.ledger.landed(
            chain,
            before.body if before else None,
            after.body if after else None,
            writer,
            self.scheduler.now - self.start_ms,
        )
        if note is None:
            return
        if writer is None:
            self.trace.add("world", note)
        else:
            self.notes.append(note)  # traced after the call that landed it

    def _describe(self) -> str:
        p, s = self.params, self.settings
        rates = self.faults.rates
        on = ", ".join(f"{k}={v:.3g}" for k, v in rates.items() if v and k != "recursion_cutoff")
        if self.recursion_cutoff:
            on += ", recursion cutoff after 16 hops"
        return (
            f"seed {self.seed}: {p.tasks} tasks on {p.hosts} hosts, timeout {p.timeout_ms} ms, "
            f"margin {s.margin_ms} ms, concurrency {s.concurrency or 'auto'}, "
            f"commit every {p.commit_interval_ms} ms, reserved concurrency "
            f"{p.reserved_concurrency}, event age {p.max_event_age_ms} ms, lease slack "
            f"{s.lease_slack_ms} ms, stall after {s.stall_after_ms} ms, max attempts "
            f"{s.max_task_attempts}, max legs {s.max_legs}, indexed "
            f"{s.index_threshold_bytes < 1_000_000}, calm after {p.calm_after_ms} ms; "
            f"faults: {on or 'none'}"
        )


class SimNetwork:
    """The path of an invocation's S3 call: a yield point, a latency, and the faults."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.scheduler = world.scheduler
        self.faults = world.faults
        self.rng = world.s3_rng
        self.trace = world.trace

    def in_actor(self) -> bool:
        return self.scheduler.current is not None

    def now_ms(self) -> int:
        return self.scheduler.now

    def call(self, op: str, params: dict[str, Any], write: bool, apply: Callable[[], Any]) -> Any:
        scheduler, faults, rng = self.scheduler, self.faults, self.rng
        actor = scheduler.current
        assert actor is not None
        invocation: Invocation = actor.data
        who = invocation.name
        what = _describe(op, params)
        key = params.get("Key") or params.get("Prefix", "")
        latency = rng.randint(3, 40)
        if faults.hit("s3_throttle"):
            latency += rng.randint(100, 2_000)
            invocation.faults.append(("s3_throttle", op, key))
        if faults.hit("kill_before"):
            self.trace.add(who, f"{what}: KILLED before it left")
            raise Killed(f"killed before {what}")
        scheduler.block(scheduler.now + latency)
        if faults.hit("s3_error_before"):
            code = rng.choice(("SlowDown", "InternalError"))
            invocation.faults.append(("s3_error_before", op, key))
            self.trace.add(who, f"{what} -> {code} (fault, nothing done)")
            raise client_error(code, op)
        try:
            result = apply()
        except ClientError as exc:
            self.trace.add(who, f"{what} -> {_code(exc)}")
            raise
        if write:
            if faults.hit("kill_after"):
                self.trace.add(who, f"{what} -> landed, then KILLED")
                self._notes(who)
                raise Killed(f"killed after {what}")
            if faults.hit("s3_lost_answer"):
                invocation.faults.append(("s3_lost_answer", op, key))
                self.trace.add(who, f"{what} -> landed, answer LOST; botocore retries")
                self._notes(who)
                scheduler.block(scheduler.now + rng.randint(3, 200))
                try:
                    result = apply()
                except ClientError as exc:
                    self.trace.add(who, f"{what} (retry) -> {_code(exc)}")
                    self._notes(who)
                    raise
            elif faults.hit("s3_error_after"):
                invocation.faults.append(("s3_error_after", op, key))
                self.trace.add(who, f"{what} -> landed, then InternalError (fault)")
                self._notes(who)
                raise client_error("InternalError", op)
        self.trace.add(who, f"{what} -> {_brief(op, result)}")
        self._notes(who)
        return result

    def _notes(self, who: str) -> None:
        notes = self.world.notes
        while notes:
            self.trace.add(who, notes.pop(0))


def _short(etag: Any) -> str:
    return str(etag).strip('"')[:8]


def _describe(op: str, params: dict[str, Any]) -> str:
    key = params.get("Key", "")
    if op == "PutObject":
        cond = ""
        if "IfMatch" in params:
            cond = f" if-match {_short(params['IfMatch'])}"
        elif params.get("IfNoneMatch") == "*":
            cond = " if-none-match *"
        return f"PUT {key}{cond}"
    if op == "GetObject":
        cond = ""
        if "IfMatch" in params:
            cond += f" if-match {_short(params['IfMatch'])}"
        if "IfNoneMatch" in params:
            cond += f" if-none-match {_short(params['IfNoneMatch'])}"
        if "Range" in params:
            cond += f" {params['Range']}"
        return f"GET {key}{cond}"
    if op == "ListObjectsV2":
        after = params.get("StartAfter") or params.get("ContinuationToken")
        tail = f" after {after.rsplit('/', 1)[-1]}" if after else ""
        if params.get("Delimiter"):
            tail += f" delimiter {params['Delimiter']}"
        return f"LIST {params.get('Prefix', '')}{tail}"
    if op == "HeadObject":
        return f"HEAD {key}"
    if op == "DeleteObject":
        return f"DELETE {key}"
    return f"{op} {key}"


def _brief(op: str, result: Any) -> str:
    if op == "PutObject":
        return f"200 {_short(result['ETag'])}"
    if op == "GetObject":
        return f"200 {result['ContentLength']} bytes {_short(result['ETag'])}"
    if op == "ListObjectsV2":
        keys = [c["Key"].rsplit("/", 1)[-1] for c in result.get("Contents", [])]
        keys += [c["Prefix"] for c in result.get("CommonPrefixes", [])]
        return f"{len(keys)}: {' '.join(keys[:6])}{' ...' if len(keys) > 6 else ''}"
    if op == "HeadObject":
        return "200"
    return "204" if op == "DeleteObject" else "200"


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "?"))


@contextmanager
def quiet_logs() -> Iterator[None]:
    """The runtime logs a lot; a simulation reads its trace instead (and runs faster)."""
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(previous)


def simulate(seed: int) -> World:
    """Run one seeded world to the end and judge it."""
    with quiet_logs():
        world = World(seed)
        world.run()
    return world
