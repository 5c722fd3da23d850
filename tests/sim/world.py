"""One seeded world: a bucket, a task list uploaded, the Lambda service, faults, until it settles.

Everything a seed decides is drawn from named streams (`random.Random(f"...:{seed}:{name}")`,
seeded through SHA-512, so no process's hash seed matters): the world's parameters,
the fault plan, the fault draws, the workload, Lambda's delays, S3's latencies and
the scheduler's tie-breaks.

The timeline: the list is uploaded and S3 notifies Lambda (or the user sends the
manual payload `{"bucket", "key", "chains"}`); the sweep ticks every minute; world
faults (extra sweeps, a cancel, a replaced list, a duplicate notification) happen at
random moments until the world turns calm. About half the worlds start a run of one
chain and the rest C = 2..8 chains (a few up to 32), asked for the ways users do:
the upload's `baton-chains` metadata (sometimes above `BATON_MAX_CHAINS`, or not a
number), the manual payload, or `BATON_CHAINS`. A world with a `deploy` started its
first run on 0.1: layout 1 (one `runs/{id}/checkpoint.json`), worked by old legs,
then deployed, with the old code's v1 leg payloads still in Lambda's queue. From
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
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote_plus

from botocore.exceptions import ClientError

from cache import ObjectCache
from tests.fakes import Killed
from tests.sim import prefix
from tests.sim.crawl import CrawlWorld
from tests.sim.executors import ShuffledIo, SimClock, SimInFlight, TaskPool
from tests.sim.faults import FaultPlan
from tests.sim.lam import USER_SOURCES, Invocation, SimContainer, SimInvoker, SimLambda
from tests.sim.oracle import (
    OwnerLedger,
    Violation,
    chain_of,
    judge,
    rows_of,
    runs_settled,
    unended,
)
from tests.sim.processor import SimProcessor, TaskPlan, draw_plan
from tests.sim.s3 import MemoryS3, Stored, client_error
from tests.sim.scheduler import Actor, Scheduler
from tests.sim.trace import Trace
from worker.autoscale import Autoscaler
from worker.budget import TimeBudget
from worker.checkpoint import RunStatus
from worker.config import Settings
from worker.container import Container
from worker.events import derive_run_id
from worker.notice import NoticeError
from worker.start import CHAINS_METADATA
from worker.store import MANIFEST_FILE, SUMMARY_FILE, RunStore
from worker.summary import tally_failures
from worker.tasks import Task, parse_task_list

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
    manual: bool = False
    """Started by the manual payload instead of the upload's notification."""

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
    chains: int = 1
    """The chains the user asks for (C = 1 for about half the worlds)."""
    chains_by: str = "none"
    """How: `metadata` (baton-chains on the upload), `payload` (the manual start),
    `setting` (BATON_CHAINS), `bad-metadata` (not a number: ignored), `none`."""

    @classmethod
    def draw(cls, rng: random.Random) -> Params:
        params = cls._draw(rng)
        return params._fan_out(rng)  # drawn last: the fields above are as they were

    def _fan_out(self, rng: random.Random) -> Params:
        roll = rng.random()
        chains = 1 if roll < 0.5 else rng.randint(2, 8) if roll < 0.97 else rng.randint(9, 32)
        # Kept small (the CI budget): a fanned-out world costs about twice a one-chain world
        # of the same size; wide worlds get at least two tasks a chain.
        if chains == 1:
            tasks = self.tasks
        elif chains <= 8:
            tasks = min(self.tasks, rng.randint(2 * chains, 36))
        else:
            tasks = 2 * chains + rng.randint(0, 16)
        how = rng.random()
        max_chains = 1_000 if rng.random() < 0.85 else rng.randint(2, 8)
        if chains == 1:
            by = "metadata" if how < 0.1 else "bad-metadata" if how < 0.13 else "none"
        else:
            by = "metadata" if how < 0.5 else "payload" if how < 0.75 else "setting"
            if by == "metadata" and how < 0.05:
                by = "bad-metadata"
        if by in ("payload", "setting"):
            max_chains = max(max_chains, chains)  # above the cap, these are refused outright
        settings = replace(
            self.settings, chains=chains if by == "setting" else 1, max_chains=max_chains
        )
        return replace(self, tasks=tasks, chains=chains, chains_by=by, settings=settings)

    @classmethod
    def _draw(cls, rng: random.Random) -> Params:
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
    status: str
    delivered: bool
    """The target took it (it may still have answered with an error)."""
    unended: str | None
    """Why the run had not ended when the notice was sent (None: every chain had)."""


class SimNotifier:
    """Records each completion notice with what S3 held when it was sent; the target refuses
    some (`notice_refused`), or takes one and answers with an error."""

    def __init__(self, world: World) -> None:
        self.world = world

    def send(self, detail: dict[str, Any]) -> list[str]:
        world = self.world
        run_id = str(detail["run_id"])
        why = unended(world.s3, world.bucket, world.settings.results_prefix, run_id)
        refused = world.faults.hit("notice_refused")
        delivered = not refused or world.faults.rng.random() < 0.5
        at = world.clock.now_ms() - world.start_ms
        world.notices.append(Notice(run_id, at, str(detail["status"]), delivered, why))
        actor = world.scheduler.current
        who = actor.name if actor is not None else "notice"
        if refused:
            what = "delivered, answer lost" if delivered else "refused"
            world.trace.add(who, f"notice {run_id} {detail['status']}: {what} (fault)")
            raise NoticeError(f"notice {what} (simulated)")
        world.trace.add(who, f"notice {run_id} {detail['status']}")
        return ["sim"]


class World:
    def __init__(self, seed: int) -> None:
        self.seed = seed

        def stream(name: str) -> random.Random:
            return random.Random(f"baton-sim:{seed}:{name}")

        self.params = Params.draw(stream("params"))
        self.crawl = CrawlWorld.draw(seed, self.params)
        """A crawl world's crawl (`tests.sim.crawl`); None in a world of task lists."""
        self.prefix = None if self.crawl else prefix.draw(stream("prefix"), self.params.tasks)
        """A prefix world's plan (None: the world's run is of a task list, or a crawl)."""
        if self.crawl is not None:
            self.params = self.crawl.params
        if self.prefix is not None:
            self.params = _prefix_params(self.params, self.prefix)
        self.settings = self.params.settings
        self.bucket = BUCKET
        self.timeout_ms = self.params.timeout_ms
        self.reserved_concurrency = self.params.reserved_concurrency
        self.max_event_age_ms = self.params.max_event_age_ms
        self.scheduler = Scheduler(stream("scheduler"))
        self.start_ms = self.scheduler.now
        self.trace = Trace(self.scheduler)
        self.faults = FaultPlan(stream("plan"), stream("faults"))
        CrawlWorld.plan_faults(self.faults, crawl=self.crawl is not None)
        if self.prefix is not None:
            self.faults.off("deploy", "replace_list")  # of task lists
        self.lambda_rng = stream("lambda")
        self.s3_rng = stream("s3")
        self.workload_rng = stream("workload")
        self.world_rng = stream("world")
        self.io_rng = stream("io")
        self.clock = SimClock(self.scheduler)
        self.ledger = OwnerLedger()
        self.s3 = MemoryS3(SimNetwork(self), on_write=self._landed)
        self.s3.create_bucket(Bucket=BUCKET)
        self.recursion_cutoff = self.faults.switch("recursion_cutoff")
        self.lam = SimLambda(self)
        self.invoker = SimInvoker(self)
        self.plans: dict[str, TaskPlan] = {}
        self.processor = SimProcessor(self.clock, self.plans, self.faults, self._task_started)
        if self.crawl is not None:
            self.processor = self.crawl.processor(self.processor)
        self.killer_deaths: Counter[tuple[str, str]] = Counter()
        """Deaths by (run, the killer task's reason): a list started twice has two runs."""
        self.uploads: list[Upload] = []
        self.old_upload: tuple[Upload, bytes] | None = None
        self.excused_strikes = 0
        self.redrives = 0
        self.settled = False
        self.stopped = ""
        self.violations: list[Violation] = []
        self.resumers: dict[str, list[Invocation]] = {}
        """Starts that swapped one of a run's chains from an ending back to running."""
        self.raced: set[str] = set()
        """Runs completed while a start was resuming them (soak.KNOWN_FINDINGS)."""
        self.notes: list[str] = []
        self.notices: list[Notice] = []
        self.notifier = SimNotifier(self)
        self.legacy = bool(self.faults.occurrences("deploy"))
        """The first run was made by 0.1 (layout 1, v1 legs), and a deploy came mid-run."""

    # the world's moves
    def run(self) -> list[Violation]:
        # The runtime's retry policies draw their jitter from the global RNG (tenacity's
        # `wait_exponential_jitter`): seeded here, one world's waits are the same in
        # every process.
        random.seed(f"baton-sim:{self.seed}:jitter")
        params = self.params
        self.trace.add("world", self._describe())
        if self.crawl is not None:
            self.crawl.start(self)
        elif self.legacy:
            self.upload(version=1, by_old_code=True)
            self._deploy()  # at the world's start: 0.1's legs are its past
        elif self.prefix is not None:
            self._start_prefix(self.prefix)
        else:
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

    def upload(self, version: int, by_old_code: bool = False) -> None:
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
        metadata = {}
        if params.chains_by == "metadata" and not by_old_code:
            metadata[CHAINS_METADATA] = str(params.chains)  # as `baton submit --chains` does
        elif params.chains_by == "bad-metadata" and not by_old_code:
            metadata[CHAINS_METADATA] = "many"
        etag = self.s3.put_object(Bucket=BUCKET, Key=params.key, Body=body, Metadata=metadata)[
            "ETag"
        ]
        sequencer = f"{self.seed:08X}{version:08X}"
        manual = params.chains_by == "payload" and not by_old_code
        run_id = derive_run_id(BUCKET, params.key, etag, "" if manual else sequencer)
        upload = Upload(params.key, etag, sequencer, run_id, version, total, manual)
        self.uploads.append(upload)
        asked = f", {CHAINS_METADATA}={metadata[CHAINS_METADATA]}" if metadata else ""
        self.trace.add("world", f"upload {upload.label}{asked}: run {run_id}")
        if by_old_code:
            self.old_upload = (upload, body)
        elif manual:
            self._manual_start(upload)
        else:
            self.lam.send(self._notification(upload), source="s3", by="s3")

    def _manual_start(self, upload: Upload) -> None:
        payload: dict[str, Any] = {
            "bucket": BUCKET,
            "key": upload.key,
            "chains": self.params.chains,
        }
        if self.crawl is not None:
            payload = self.crawl.payload()
        elif self.prefix is not None:
            payload = self.prefix.payload(BUCKET, self.params.chains)
        self.lam.send(payload, source="manual", by="user")

    def _start_prefix(self, plan: prefix.PrefixPlan) -> None:
        """Objects under the prefix, the manual start, and later writes it must leave out."""
        prefix.seed(self.s3, BUCKET, plan)
        source = plan.source
        run_id = derive_run_id(BUCKET, source.prefix, source.digest(), "")
        upload = Upload(source.prefix, source.digest(), "", run_id, 1, plan.objects, True)
        self.uploads.append(upload)
        self.trace.add(
            "world",
            f"{plan.objects} objects under {source.prefix} ({len(plan.multipart)} multipart), "
            f"pages of {plan.page_size}, {plan.segment_pages} a segment; start {plan.processor} "
            f"over {self.params.chains} chains: run {run_id}",
        )
        self._manual_start(upload)
        rng = self.world_rng
        for _ in range(plan.late):
            self.scheduler.at(
                self.start_ms + rng.randint(2_000, max(2_000, self.params.calm_after_ms)),
                self._write_late,
            )

    def _write_late(self) -> None:
        key = prefix.late_key(self.world_rng)
        self.s3.put_object(Bucket=BUCKET, Key=key, Body=prefix.body_of(key))
        self.trace.add("world", f"a new object {key}, after the run's start")

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
        if upload.manual:
            self.trace.add("world", f"the user sends the start of {upload.label} again")
            self._manual_start(upload)
            return
        self.trace.add("world", f"S3 notifies {upload.label} again")
        self.lam.send(self._notification(upload), source="s3", by="s3")

    def _extra_sweep(self) -> None:
        self.lam.send({"action": "sweep"}, source="schedule", by="world")

    def _cancel(self) -> None:
        run_id = self.uploads[0].run_id
        self.trace.add("world", f"user cancels {run_id}")
        RunStore.over(self.s3, BUCKET, self.settings.results_prefix).request_cancel(run_id)

    def _deploy(self) -> None:
        """0.1 took the upload and worked some legs; now the current code is deployed.

        What 0.1 left, written as it wrote it: run.json without a layout version, the
        one checkpoint `runs/{id}/checkpoint.json` (0.1's fields: no chain, range or
        holes), a results object per batch it worked, `_active/` and `_sources/`
        markers. Its last leg handed off: that v1 payload (no `chain`) waits in
        Lambda's queue (sometimes with an older leg's late duplicate, sometimes lost:
        the sweep resumes the run), and the current code must finish the run as chain
        0000 of a one-chain run.
        """
        assert self.old_upload is not None
        upload, body = self.old_upload
        rng, prefix = self.world_rng, self.settings.results_prefix
        run_id, now = upload.run_id, self.clock.now_ms()
        tasks = parse_task_list(body)
        position = rng.randint(0, len(tasks) - 1)
        leg = rng.randint(0, 3) + (position > 0)
        created = now - rng.randint(1_000, 60_000)

        def put(key: str, data: Any) -> None:
            raw = data if isinstance(data, bytes) else json.dumps(data).encode()
            self.s3.put_object(Bucket=BUCKET, Key=f"{prefix}{key}", Body=raw)

        record = {
            "run_id": run_id,
            "bucket": BUCKET,
            "key": upload.key,
            "etag": upload.etag,
            "total": len(tasks),
            "start_position": 0,
            "created_ms": created,
            "source": "s3",
            "config": {"batch_size": self.settings.batch_size, "processor": "default"},
        }
        put(f"{run_id}/run.json", record)
        rows = [_old_row(task) for task in tasks[:position]]
        size = self.settings.batch_size
        for first in range(0, position, size):
            batch = rows[first : first + size]
            lines = b"".join(json.dumps(r).encode() + b"\n" for r in batch)
            put(f"{run_id}/results/{first:010d}-{first + len(batch) - 1:010d}.jsonl", lines)
        kinds: dict[str, int] = {}
        samples: list[dict[str, Any]] = []
        failed = tally_failures(kinds, samples, rows)
        checkpoint = {
            "run_id": run_id,
            "total": len(tasks),
            "position": position,
            "leg": leg,
            "status": "running",
            "ok": position - failed,
            "failed": failed,
            "owner": None,
            "lease_until_ms": 0,
            "handed_off_ms": now,
            "heartbeat_ms": now,
            "strikes": 0,
            "careful_until": 0,
            "batch_end": position,
            "sweeps": 0,
            "crashes": 0,
            "failure_kinds": kinds,
            "failure_samples": samples,
            "reason": None,
            "started_ms": created,
            "finished_ms": 0,
            "leg_ms_total": now - created,
            "task_ms_total": 0,
        }
        put(f"{run_id}/checkpoint.json", checkpoint)
        self.s3.put_object(Bucket=BUCKET, Key=f"{prefix}_active/{run_id}", Body=b"")  # 0.1's
        store = RunStore.over(self.s3, BUCKET, prefix)
        store.mark_source(run_id, upload.key, upload.etag)
        self.trace.add(
            "world",
            f"deploy: 0.1 made {run_id} (layout 1) and worked it to {position} in {leg} legs; "
            "the current code takes over",
        )

        def v1(at: int, of_leg: int) -> dict[str, Any]:
            return {
                "v": 1,
                "run_id": run_id,
                "bucket": BUCKET,
                "key": upload.key,
                "etag": upload.etag,
                "position": at,
                "leg": of_leg,
            }

        roll = rng.random()
        if roll < 0.15:
            self.trace.add("world", "0.1's last hand-off was lost: the sweep must resume it")
        else:
            self.lam.send(v1(position, leg), source="invoke", hop=leg, by="0.1")
        if leg > 0 and rng.random() < 0.25:
            earlier = max(0, position - rng.randint(1, size))
            self.lam.send(v1(earlier, leg - 1), source="invoke", hop=leg - 1, by="0.1")

    def _calm(self) -> None:
        self.faults.active = False
        self.trace.add("world", "calm: no more faults; Lambda and the sweep carry on")

    def _tick(self) -> None:
        if not self.faults.active and self.lam.idle:
            if (
                any(e.source in USER_SOURCES for e in self.lam.dead_letters)
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
        container.io = ShuffledIo(self.io_rng)
        container.in_flight = lambda: SimInFlight(self.scheduler)
        container.processor = self.processor
        container._named.update(prefix.processors(self._task_started))
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
        self.killer_deaths[str(invocation.event.payload.get("run_id")), reason] += 1
        self.faults.counts["task_killer"] += 1
        self.trace.add(invocation.name, f"KILLED: {reason}")
        self.scheduler.kill(actor, reason)

    def _landed(self, bucket: str, key: str, before: Stored | None, after: Stored | None) -> None:
        prefix = self.settings.results_prefix
        actor = self.scheduler.current
        writer: Invocation | None = actor.data if actor is not None else None
        at = self.scheduler.now - self.start_ms
        if key.endswith(("/" + SUMMARY_FILE, "/" + MANIFEST_FILE)) and key.startswith(prefix):
            self._completed(key, after, writer, at)
        rows = rows_of(key, prefix)
        if rows is not None and writer is not None and after is not None:
            self.ledger.wrote_rows(rows, key, writer, at)
        chain = chain_of(key, prefix)
        if chain is None:
            return
        resumed = _ended(before) and after is not None and not _ended(after)
        if resumed and writer is not None and writer.event.source in USER_SOURCES:
            self.resumers.setdefault(chain[0], []).append(writer)
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

    def _completed(
        self, key: str, after: Stored | None, writer: Invocation | None, at: int
    ) -> None:
        """A summary or manifest lands only once the run has ended (every chain terminal, no
        range left to create), and never changes."""
        body = after.body if after else None
        if key.endswith(SUMMARY_FILE):
            self.ledger.wrote_summary(key, body)
        else:
            self.ledger.wrote_manifest(key, body)
        if body is None:
            return
        prefix = self.settings.results_prefix
        run_id = key[len(prefix) :].split("/", 1)[0]
        why = unended(self.s3, self.bucket, prefix, run_id)
        if why is not None:
            who = writer.name if writer else "?"
            name = key.rsplit("/", 1)[-1]
            category = "completed_early"
            if any(start.alive for start in self.resumers.get(run_id, [])):
                category = "resume_race"
                self.raced.add(run_id)
            self.ledger.violations.append(
                Violation(category, f"{who} wrote {run_id}'s {name} at +{at}: {why}")
            )

    def _task_started(self, task: Task) -> None:
        """The oracle's view of who works what: a task starts only in its chain's holder."""
        actor = self.scheduler.current
        invocation: Invocation | None = actor.data if actor is not None else None
        run_id = invocation.event.payload.get("run_id") if invocation is not None else None
        if invocation is None or run_id is None:
            return
        at = self.scheduler.now - self.start_ms
        self.ledger.started_task(str(run_id), task.index, invocation, at)

    def _describe(self) -> str:
        p, s = self.params, self.settings
        rates = self.faults.rates
        on = ", ".join(f"{k}={v:.3g}" for k, v in rates.items() if v and k != "recursion_cutoff")
        if self.recursion_cutoff:
            on += ", recursion cutoff after 16 hops"
        what = self.crawl.describe() if self.crawl else f"{p.tasks} tasks on {p.hosts} hosts"
        return (
            f"seed {self.seed}: {what}, timeout {p.timeout_ms} ms, "
            f"margin {s.margin_ms} ms, concurrency {s.concurrency or 'auto'}, "
            f"commit every {p.commit_interval_ms} ms, reserved concurrency "
            f"{p.reserved_concurrency}, event age {p.max_event_age_ms} ms, lease slack "
            f"{s.lease_slack_ms} ms, stall after {s.stall_after_ms} ms, max attempts "
            f"{s.max_task_attempts}, max legs {s.max_legs}, indexed "
            f"{s.index_threshold_bytes < 1_000_000}, calm after {p.calm_after_ms} ms, "
            f"chains {p.chains} by {p.chains_by} (max {s.max_chains})"
            f"{', first run on 0.1' if self.legacy else ''}; faults: {on or 'none'}"
        )


def _prefix_params(params: Params, plan: prefix.PrefixPlan) -> Params:
    """A prefix world's run: its chains asked in the manual payload, small pages and
    segments so the lister works in many blocks."""
    settings = replace(
        params.settings,
        chains=1,
        max_chains=max(params.settings.max_chains, params.chains),
        list_page_size=plan.page_size,
        segment_pages=plan.segment_pages,
    )
    return replace(params, tasks=plan.objects, chains_by="payload", settings=settings)


def _old_row(task: Task) -> dict[str, Any]:
    """A row as 0.1 wrote it for a task it worked."""
    row = task.result_base()
    if task.error is not None:
        row["error"] = task.error
    else:
        row.update(status=200, title=f"page {task.index}", bytes=1000 + task.index)
    return row


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
            crawl = self.world.crawl
            point = crawl.fault_after(faults, op, key, invocation) if crawl else None
            if point is not None:
                self.trace.add(who, f"{what} -> landed, then KILLED ({point})")
                self._notes(who)
                raise Killed(f"killed after {what} ({point})")
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


def _ended(stored: Stored | None) -> bool:
    """Whether a checkpoint as stored is in a terminal status (done, cancelled, ...)."""
    if stored is None:
        return False
    return RunStatus(json.loads(stored.body)["status"]).terminal
