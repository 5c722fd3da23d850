"""One leg of a run: claim the checkpoint, work batches, then hand off or finish.

Read `Leg.run()` top to bottom: every way out is a named `Exit`. A leg acts
on a run only while it owns the checkpoint, and it owns it only through a
compare-and-swap (`worker.checkpoint` holds the rules of each move), so
duplicate deliveries, stale retries and a late sweep can never make two legs of
one run work at once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import Future, wait
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from typing import Any, Protocol

from worker.checkpoint import (
    Checkpoint,
    ClaimRefused,
    RunStatus,
    redo_after_split,
    written_under_steals,
)
from worker.completion import try_complete
from worker.container import Container
from worker.crawl.steps import (
    CRAWL_COMMIT_EVERY_S,
    CRAWL_LINGER_S,
    CRAWL_LINGER_STEP_S,
    CrawlSteps,
    Growth,
    Held,
    crawl_checkpoint,
)
from worker.events import LegEvent
from worker.exceptions import (
    ConflictError,
    InputChangedError,
    RunNotFoundError,
    TaskListError,
    TransientError,
)
from worker.fetch import TryAgain
from worker.handoff import HandoffError, recursion_allowed
from worker.hosts import TaskQueue
from worker.inflight import InFlight
from worker.landed import landed
from worker.listing import (
    chain_state,
    dequeue,
    encode_segment,
    list_block,
    load_segment,
    segment_chain,
    segment_checkpoint,
    segment_key,
    waiting,
)
from worker.objects import INLINE
from worker.processor import Outcome, Processor, TaskContext, run_one
from worker.steal import ensure_split_ranges, steal
from worker.store import LAYOUT_VERSION, RunRecord, RunStore, Versioned
from worker.summary import tally_failures
from worker.tasks import Task, TaskList, load_task_list
from worker.telemetry import emit_metrics
from worker.usage import ONE_PUT, Usage, dead_leg, start_meter, with_usage
from worker.window import Commit, Window

log = logging.getLogger(__name__)

MAX_COMMIT_ROWS = 2_000
"""A commit comes early once this many finished rows wait (bounds the leg's memory)."""
MAX_SPLIT_RETRIES = 5
"""Steals a single write may absorb before the leg gives up the checkpoint."""
MAX_CRASHES = 5
"""Unexpected errors in a row at one position before the run fails (see `Leg.release`)."""
QUEUE_TRIES = 3
"""Queued chains a finished leg tries to claim before it looks for a steal instead."""
RECOUNT_S = 5.0
"""How often a lister with every slot busy counts its running work chains again."""


class LambdaContext(Protocol):
    aws_request_id: str
    invoked_function_arn: str

    def get_remaining_time_in_millis(self) -> int: ...


class Exit(StrEnum):
    DONE = "done"
    HANDED_OFF = "handed_off"
    HANDOFF_FAILED = "handoff_failed"
    CANCELLED = "cancelled"
    SUPERSEDED = "superseded"
    FAILED = "failed"
    DUPLICATE = "duplicate"
    STALE = "stale"
    LOST_CAS = "lost_cas"
    ALREADY_FINISHED = "already_finished"


QUIET_EXITS = frozenset({Exit.DUPLICATE, Exit.STALE, Exit.LOST_CAS, Exit.ALREADY_FINISHED})
FINISHING = {
    RunStatus.DONE: Exit.DONE,
    RunStatus.FAILED: Exit.FAILED,
    RunStatus.CANCELLED: Exit.CANCELLED,
    RunStatus.SUPERSEDED: Exit.SUPERSEDED,
}


@dataclass
class LegResult:
    run_id: str
    leg: int
    chain: str
    exit: Exit
    start_position: int
    position: int
    total: int
    processed: int = 0
    batches: int = 0
    cache_hit: bool | None = None
    elapsed_ms: float = 0.0
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["exit"] = str(self.exit)
        return data


class _Quiet(Exception):
    """This leg has nothing to do on the run (a duplicate, a stale retry): exit quietly."""

    def __init__(self, exit: Exit, reason: str) -> None:
        super().__init__(reason)
        self.exit = exit
        self.reason = reason


class Leg:
    def __init__(self, container: Container, event: LegEvent, context: LambdaContext) -> None:
        self.c = container
        self.settings = container.settings
        self.clock = container.clock
        self.event = event
        self.context = context
        self.store = RunStore(container.s3, event.bucket, self.settings.results_prefix)
        self.owner = f"{context.aws_request_id}/{container.next_owner_suffix()}"
        self.budget = container.budget
        self.started = self.clock.monotonic()
        self.meter = start_meter(container, context)
        self.processed = 0
        self.batches = 0
        self.first_window_ms = 0.0
        self.cancel_seen: bool | None = None
        self.cache_hit: bool | None = None
        self.task_ms = 0.0
        self._failed_in_leg = 0
        self.record: RunRecord | None = None
        self._last_commit_at = 0.0
        self._logged_at = self.started
        self.out_of_time = False
        """A task ran out of this leg's time: the rest is for the next leg."""
        self.held: Versioned | None = None
        """The checkpoint as this leg last wrote it; set once the claim succeeds."""
        self._chain_count: tuple[int, list[str]] | None = None
        """A lister's count of running work chains and its queue, as last taken."""
        self._counted_at = 0.0
        self.crawl: CrawlSteps | None = None
        """A crawl run's steps (set when the leg loads its log)."""
        self._unsure: tuple[Checkpoint, Usage] | None = None
        """A write whose call raised and could not be read back, and the usage it carried:
        `release` finds out whether it landed."""

    def run(self) -> LegResult:
        result = self._run()
        self.report(result)
        return result

    def _run(self) -> LegResult:
        first = self.store.load_checkpoint(self.event.run_id, self.event.chain)
        try:
            self.record = self._matching_record()
            self.held = self.claim(first)
            self.check_recursion_once()
            if self._record.crawl is not None:
                tasks = self.load_crawl()
                self.adopt_orphans()
            elif self._checkpoint.listing is not None:
                ended = self.list_prefix()
                if ended is not None:
                    return ended
                if not self.take_another_range():
                    return self.completed(Exit.DONE)
                tasks = self.load_tasks()  # of the range taken, whose orphans it adopted
            else:
                tasks = self.load_tasks()
                self.adopt_orphans()
            self.c.autoscaler.resume_from(self._checkpoint.level)
            while True:
                cp = self._checkpoint
                if cp.exhausted and self.crawl_mail():
                    continue
                if cp.exhausted:
                    self.end_chain(RunStatus.DONE)
                    if self.crawl is not None and self.crawl.mail(self._checkpoint):
                        self.wake(cp.chain)  # links sent while it was ending
                    if self.take_another_range():
                        if self._record.listing is not None:
                            tasks = self.load_tasks()  # another segment's
                        continue
                    return self.completed(Exit.DONE)
                if self._cancel_requested(cp.run_id):
                    return self.finish(RunStatus.CANCELLED, "cancel requested")
                if cp.strikes >= self.settings.max_task_attempts:
                    self.skip_killer_task(tasks)
                    continue
                if not self.budget.can_start(self.context.get_remaining_time_in_millis()):
                    return self.hand_off()
                if not self.work(tasks) or self.out_of_time:
                    return self.hand_off()
        except _Quiet as quiet:
            if quiet.exit is Exit.ALREADY_FINISHED:
                self._finish_what_a_dead_leg_left(first.checkpoint)
            return self._result(first.checkpoint, quiet.exit, quiet.reason)
        except ConflictError as exc:
            log.info("leg %s of %s lost the checkpoint: %s", self.event.leg, self.event.run_id, exc)
            return self._result(first.checkpoint, Exit.LOST_CAS, str(exc))
        except InputChangedError as exc:  # the task list, or a window of an indexed one
            return self.finish(RunStatus.SUPERSEDED, str(exc))
        except TaskListError as exc:
            return self.finish(RunStatus.FAILED, str(exc))
        except Exception as exc:
            self.release(exc)
            raise

    # steps
    def _matching_record(self) -> RunRecord:
        record = self.store.load_run(self.event.run_id)
        pinned = (record.bucket, record.key, record.etag)
        if pinned != (self.event.bucket, self.event.key, self.event.etag):
            raise _Quiet(Exit.STALE, "payload does not match the run's pinned input")
        return record

    def claim(self, current: Versioned) -> Versioned:
        at = self.clock.now_ms()
        try:
            claimed = current.checkpoint.claim(
                leg=self.event.leg,
                owner=self.owner,
                at_ms=at,
                lease_until_ms=at
                + self.context.get_remaining_time_in_millis()
                + self.settings.lease_slack_ms,
                plan=lambda position, careful: self._plan(
                    position, careful, current.checkpoint.range_end, current.checkpoint.chain
                ),
            )
        except ClaimRefused as refused:
            raise _Quiet(Exit(refused.exit), refused.reason) from None
        if current.checkpoint.owner not in (None, self.owner):  # it died: it was billed
            dead = dead_leg(
                current.checkpoint,
                lease_slack_ms=self.settings.lease_slack_ms,
                memory_mb=self.meter.memory_mb,
            )
            claimed = with_usage(claimed, dead, at)
        if claimed.strikes > current.checkpoint.strikes:
            log.warning(
                "run %s: leg %s died at position %s (strike %s)",
                claimed.run_id,
                claimed.leg,
                claimed.position,
                claimed.strikes,
            )
        self.held = current
        self._swap(claimed)
        return self.held

    def _plan(
        self, position: int, careful_until: int, end: int | None = None, chain: str | None = None
    ) -> int:
        """The plan end written with a CAS before any task at or past `position` starts."""
        end = self._checkpoint.range_end if end is None else end
        if position < careful_until:
            return min(end, position + 1)
        remaining = self.context.get_remaining_time_in_millis()
        planned = self.budget.plan_size(remaining, self._level(), self._work_key(chain))
        return min(end, position + planned)

    def _work_key(self, chain: str | None = None) -> str:
        """What the budget's rate is measured on: one chain of one run."""
        return f"{self.event.run_id}/{chain or self._checkpoint.chain}"

    def check_recursion_once(self) -> None:
        if self.c.recursion_checked or not self.settings.check_recursion:
            return
        self.c.recursion_checked = True
        recursion_allowed(self.c.lambda_client, self.context.invoked_function_arn)

    def load_tasks(self) -> TaskList:
        segment = self._checkpoint.segment
        if self._record.listing is not None:
            if segment is None:
                raise TaskListError(
                    f"chain {self._checkpoint.chain} of a prefix run has no segment"
                )
            found, self.cache_hit = load_segment(
                self.c.cache, self.c.s3, self.event.bucket, segment
            )
            if self._checkpoint.range_end > len(found):
                raise TaskListError(
                    f"segment {segment['key']} ends at {len(found)}, "
                    f"chain {self._checkpoint.chain} at {self._checkpoint.range_end}"
                )
            return found
        tasks, self.cache_hit = load_task_list(
            self.c.cache,
            self.c.s3,
            self.event.bucket,
            self.event.key,
            self.event.etag,
            settings=self.settings,
        )
        total = self._checkpoint.total
        if len(tasks) != total:
            raise TaskListError(f"task list has {len(tasks)} tasks, run expects {total}")
        return tasks

    def load_crawl(self) -> TaskList:
        """A crawl chain's log as its task list; a new chain's first leg seeds it first."""
        self.crawl = CrawlSteps(
            self._record.crawl or {},
            chains=self._record.chains,
            store=self.store,
            memory=self.c.crawl,
            fetcher=self.c.fetcher,
            hosts=self.c.hosts,
            io=self.c.io,
            clock=self.clock,
            incarnation=f"{self._record.run_id}@{self._record.created_ms}",
        )
        tasks = self.crawl.load(self._checkpoint)
        if not (self._checkpoint.frontier or {}).get("seeded"):
            growth = self.crawl.seeds(self._checkpoint)
            self._swap(crawl_checkpoint(self._checkpoint, growth))
            self._crawl_committed(self.crawl, growth)
            log.info(
                "run %s chain %s: seeded its log with %s pages",
                self._checkpoint.run_id,
                self._checkpoint.chain,
                len(growth.entries),
            )
        return tasks

    def _crawl_committed(self, steps: CrawlSteps, growth: Growth) -> None:
        """After the CAS that counted a crawl's growth: the inbox objects it took in go,
        and a chain that was sent links but had ended is woken to crawl them."""
        steps.committed(growth)
        if growth.sent_to:
            # A chain ending done writes its marker, then reads its inbox once more: so a
            # chain this commit wrote to either sees the links itself or has its marker
            # listed here (one LIST, not a read of every chain written to).
            ended = self.store.done_chains(self._record.run_id)
            for chain in growth.sent_to:
                if chain in ended:
                    self.wake(chain)

    def wake(self, chain: str) -> None:
        """Resume a crawl chain that ended done (its inbox has links now); one running, or
        ended otherwise (cancelled, failed: the run is ending), is left alone."""
        run_id = self._record.run_id
        try:
            current = self.store.load_checkpoint(run_id, chain)
            if current.checkpoint.status is not RunStatus.DONE:
                return
            woken = self.store.swap(current, current.checkpoint.resume(at_ms=self.clock.now_ms()))
        except (ConflictError, RunNotFoundError):
            return  # it moved: someone else woke it, or it is live
        self.store.clear_chain_done(run_id, chain)
        log.info("run %s: woke crawl chain %s for the links sent to it", run_id, chain)
        self._invoke(woken.checkpoint, within_s=self._handoff_window_s())

    def crawl_mail(self) -> bool:
        """A crawl chain out of pages takes in its inbox before it ends: True if that
        gave it more."""
        steps, cp = self.crawl, self._checkpoint
        if steps is None or self._record.chains < 2:
            return False
        waited = 0.0
        while not (mail := steps.mail(cp)):
            # Other chains are likely still finding links for this one: a short wait
            # here is cheaper than ending and being woken (an invoke and a new leg).
            left = self.context.get_remaining_time_in_millis()
            if waited >= CRAWL_LINGER_S or not self.budget.can_start(left):
                return False
            self.clock.sleep(CRAWL_LINGER_STEP_S)
            waited += CRAWL_LINGER_STEP_S
        growth = steps.grow(cp, [], mail=mail)
        if not growth.entries and not growth.merged:
            return False
        self._swap(crawl_checkpoint(cp, growth))
        self._crawl_committed(steps, growth)
        return bool(growth.entries)

    def adopt_orphans(self) -> None:
        """Keep what a leg wrote but did not checkpoint before it died, so nothing runs twice.

        That is a results object at the position (its missing indices become holes)
        and objects of holes (the holes they hold are done). Only the checkpoint is
        written: the objects are already in place. An object at or past the range's end
        is the next chain's, never an orphan of this one.
        """
        cp = self._checkpoint
        window = Window(cp.position, list(cp.holes))
        adopted: list[dict[str, Any]] = []
        stored: list[Held] = []
        for start, end, key in self.store.result_keys(cp.run_id, start_after=cp.position - 1):
            if start < window.position:  # StartAfter "...{p-1}" still lists "{p-1}-{p-1}"
                continue
            if start > window.position or start >= cp.range_end:
                break  # past the range: the next chain's own results, not an orphan
            rows = self.store.read_rows(key)
            log.info("run %s: adopting results %s written by a leg that died", cp.run_id, key)
            window.adopt_range(start, end, rows)
            adopted.extend(rows)
            stored.append(Held(key, start, end))
        if cp.holes:
            for first, last, key in self.store.hole_keys(cp.run_id, start_after=cp.holes[0] - 1):
                new = [r for r in self.store.read_rows(key) if r["index"] in window.holes]
                if new:
                    log.info("run %s: adopting holes %s written by a leg that died", cp.run_id, key)
                    window.adopt_holes(new)
                    adopted.extend(new)
                    stored.append(Held(key, first, last))
        if adopted:
            commit = Commit(cp.position, window.position, adopted, [], window.holes)
            self._commit_state(commit, 0, write=False, stored=stored)

    def work(self, tasks: TaskList) -> bool:
        """Run tasks until the range is done or the leg must stop; False if nothing was done.

        Sets `out_of_time` when a task ran out of the leg's time (it is left for
        the next leg, as a hole if rows after it finished).

        Tasks flow through a rolling window: as one finishes, the next starts (the
        autoscaler's level, each host's cap), and finished rows are committed as a
        contiguous prefix every commit interval, so one slow task never idles the
        others. When the leg must stop, it stops starting tasks, lets the ones in
        flight finish by the work deadline, and commits everything finished.
        """
        careful = self._checkpoint.careful
        first = [self._checkpoint.next_careful] if careful else self._checkpoint.holes
        if self._checkpoint.batch_end <= self._checkpoint.position and (
            not careful or first == [self._checkpoint.position]
        ):
            self._extend_plan()
        cp = self._checkpoint
        planned = cp.position if careful and cp.holes else cp.batch_end
        window = Window(cp.position, list(cp.holes))
        queue = TaskQueue(self.c.hosts)
        queue.extend(_tasks_at(tasks, first))
        if not careful:
            queue.extend(tasks[cp.position : planned])
        in_flight = self.c.in_flight()
        done_before = self.processed
        started = last_commit = self._last_commit_at = self.clock.monotonic()
        stopping = False
        try:
            while True:
                now = self.clock.monotonic()
                remaining = self.context.get_remaining_time_in_millis()
                if self.cancel_seen or not self.budget.can_start(remaining):
                    stopping = True
                level = 1 if careful else self.c.autoscaler.current
                while not stopping and len(in_flight) < level:
                    task = queue.pop_ready(now)
                    if task is None:
                        break
                    self._start(task, in_flight, now, remaining)
                self.c.autoscaler.tick(now, len(in_flight), waiting=queue.size > 0)
                if (
                    not in_flight
                    and (stopping or careful or planned >= self._checkpoint.range_end)
                    and (stopping or queue.size == 0)
                ):
                    break
                if not in_flight and queue.size == 0:
                    extended = self._commit(window, tasks, queue, planned)
                    if extended == planned:  # every planned task started; some will not finish
                        break
                    planned, last_commit = extended, self.clock.monotonic()
                    continue
                if self._collect(in_flight, window, now, remaining, queue):
                    stopping = self.out_of_time = True
                due = self.clock.monotonic() - last_commit >= self._commit_every_s
                if not careful and not stopping and (due or window.buffered >= MAX_COMMIT_ROWS):
                    planned = self._commit(window, tasks, queue, planned)
                    last_commit = self.clock.monotonic()
        finally:
            for host in in_flight.hosts():  # only when the loop raised
                self.c.hosts.abandoned(host)
        queue.drain()
        busy_ms = self._elapsed_since(started)
        self.task_ms += busy_ms
        self._commit_state(window.commit_all(upto=planned), busy_ms)
        return self.processed > done_before

    def _extend_plan(self) -> None:
        """Write the plan before starting tasks past it (a dead owner's suspect range, and
        the line no steal crosses)."""
        cp = self._checkpoint
        self._swap(cp.evolve(batch_end=self._plan(cp.position, cp.careful_until)))

    def _start(
        self,
        task: Task,
        in_flight: InFlight,
        now: float,
        remaining_ms: int,
    ) -> None:
        host = self.c.hosts.key(task)
        self.c.hosts.started(host, now)
        window_ms = self.budget.work_deadline_ms(remaining_ms)
        if not self.first_window_ms:
            self.first_window_ms = window_ms
        context = TaskContext(
            self.c.fetcher,
            now + window_ms / 1000,
            self.clock,
            s3=self.c.s3,
            presign_s=self._presign_s,
            signer=self.c.signer,
        )
        processor = self._processor
        if processor in INLINE:
            future: Future[Outcome] = Future()
            future.set_result(run_one(task, processor, context))
        else:
            future = self.c.pool.submit(run_one, task, processor, context)
        in_flight.add(future, task, host)

    def _collect(
        self,
        in_flight: InFlight,
        window: Window,
        now: float,
        remaining_ms: int,
        queue: TaskQueue,
    ) -> bool:
        """Wait for some task to finish (or a paused host to reopen); file what finished.

        True when a task ran out of the leg's time: the leg must stop starting tasks. A
        crawl's request to make again (a redirect to another host, a 429 to retry) goes
        back in the queue, in its host's line, the host paused as long as it asked: it
        waits for that host's slot and delay like any request to it.
        """
        if not in_flight:
            wait = min(queue.next_ready_at() - now, remaining_ms / 1000, 0.5)
            self.clock.sleep(max(0.0, wait))
            return False
        timeout = min(self.c.autoscaler.interval_s, self._commit_every_s)
        finished = in_flight.finished(timeout)
        at = self.clock.monotonic()
        out_of_time = False
        for task, host, outcome in finished:
            if outcome.again is not None:
                self._try_again(task, host, outcome.again, window=window, queue=queue, at=at)
                continue
            row = outcome.row
            late = outcome.deferred
            if row is None and late and late.tried and self._had_fair_share(outcome.left_ms):
                row = {**task.result_base(), "error": str(late)}
            self.c.hosts.finished(host, row, at)
            ran = row is not None and not row.get("error") and (row.get("attempts") or 1) == 1
            self.c.autoscaler.task_done(
                timed_out=row is not None and _timed_out(row),
                seconds=outcome.elapsed_ms / 1000 if ran else None,
            )
            if row is not None:
                self.budget.record_task(outcome.elapsed_ms)
                window.finished(task.index, row)
            else:
                out_of_time = True
        return out_of_time

    def _try_again(
        self, task: Task, host: str, again: TryAgain, *, window: Window, queue: TaskQueue, at: float
    ) -> None:
        """A crawl's request to make in its host's turn: queued again on that host (a retry
        backs its host off, as a throttled row would); over chains, a redirect to a host
        another chain owns is the row, its target a link sent to that chain."""
        if again.redirect and not self._owns(again.url):
            self.c.hosts.finished(host, None, at)
            row = task.result_base()
            row.update(status=again.redirect, final_url=again.url, attempts=again.tries + 1)
            row.update(links=[again.url], links_count=1)
            window.finished(task.index, row)
            return
        self.c.hosts.finished(host, {"status": 429} if again.wait_s else None, at)
        moved = {"moved_to": again.url, "hops": again.hops, "tries": again.tries}
        retry = replace(task, options={**task.options, **moved})
        self.c.hosts.pause(self.c.hosts.key(retry), again.wait_s, at)
        queue.extend([retry])

    def _commit(self, window: Window, tasks: TaskList, queue: TaskQueue, planned: int) -> int:
        """Commit the finished prefix and extend the plan; the new plan end."""
        cp = self._checkpoint
        commit = window.commit()
        now = self.clock.monotonic()
        self.budget.record_rate(len(commit.rows), now - self._last_commit_at, self._work_key())
        self._last_commit_at = now
        self._commit_state(commit, 0, planned=planned, replan_from=cp.careful_until)
        plan_end = self._checkpoint.batch_end  # a steal since may have cut it shorter
        if plan_end > planned:
            queue.extend(tasks[planned:plan_end])
        return max(planned, plan_end)

    def _commit_state(
        self,
        commit: Commit,
        task_ms: int,
        planned: int = 0,
        *,
        write: bool = True,
        replan_from: int | None = None,
        stored: Sequence[Held] | None = None,
    ) -> None:
        """Write a commit's rows (range object, holes object), then CAS the checkpoint past it.

        A crawl's commit also writes the links its rows found as the log's next segment
        before the CAS, which then counts them. With `replan_from` (the careful line)
        the plan is extended from the commit's end in the same CAS. `stored` names the
        objects that hold the rows when they are not written here (adopted orphans).
        """
        cp = self._checkpoint
        began = self.clock.monotonic()
        cancel = self.c.io.submit(self.store.cancel_requested, cp.run_id)
        if self.crawl is not None:
            for row in (*commit.rows, *commit.hole_rows):
                self.crawl.annotate(row)
        writes = []  # side by side with a crawl's segment and mail
        if commit.rows and write:
            put = self.store.put_results
            writes.append(
                self.c.io.submit(put, cp.run_id, commit.start, commit.end - 1, commit.rows)
            )
        if commit.hole_rows and write:
            writes.append(self.c.io.submit(self.store.put_holes, cp.run_id, commit.hole_rows))
        rows = [*commit.rows, *commit.hole_rows]
        steps = self.crawl
        try:
            growth = None
            if steps is not None:
                kept = self._stored(commit) if stored is None else stored
                growth = steps.grow(cp, rows, end=commit.end, holes=commit.holes, stored=kept)
        except BaseException:
            wait(writes)  # none may land after the redone batch's write of its key
            raise
        landed(writes)
        self.cancel_seen = cancel.result()
        kinds = dict(cp.failure_kinds)
        samples = list(cp.failure_samples)
        failed = tally_failures(kinds, samples, rows)
        self._failed_in_leg += failed
        self.meter.rows(rows)
        end = growth.end if growth is not None else cp.range_end
        if replan_from is not None:
            planned = max(planned, self._plan(commit.end, replan_from, end))
        advanced = cp.advance(
            commit.end,
            holes=commit.holes,
            level=self.c.autoscaler.current,
            ok=len(rows) - failed,
            failed=failed,
            failure_kinds=kinds,
            failure_samples=samples,
            task_ms=task_ms,
            at_ms=self.clock.now_ms(),
            plan_end=max(planned, commit.end),
        )
        if steps is None or growth is None:
            self._swap(advanced)
        else:
            self._swap(crawl_checkpoint(advanced, growth))
            self._crawl_committed(steps, growth)
        if rows:
            self.batches += 1
            self.processed += len(rows)
            now = self.clock.monotonic()
            self._log_commit(cp, commit, failed, (now - self._logged_at) * 1000, now - began)
            self._logged_at = now

    def _stored(self, commit: Commit) -> list[Held]:
        """The objects a commit writes, for a crawl to read rows from again later."""
        run_id = self._checkpoint.run_id
        found = []
        if commit.rows:
            key = self.store.results_key(run_id, commit.start, commit.end - 1)
            found.append(Held(key, commit.start, commit.end - 1))
        if commit.hole_rows:
            first = min(row["index"] for row in commit.hole_rows)
            last = max(row["index"] for row in commit.hole_rows)
            found.append(Held(self.store.holes_key(run_id, first, last), first, last))
        return found

    def _had_fair_share(self, left_ms: float) -> bool:
        """A task that ran out of time although it started with a full request timeout (or
        nearly the whole leg) is recorded as failed: deferring it again could loop."""
        fair_ms = min(self.settings.request_timeout_s * 1000, 0.9 * self.first_window_ms)
        return left_ms >= fair_ms

    def skip_killer_task(self, tasks: TaskList) -> None:
        cp = self._checkpoint
        index = cp.next_careful
        row = tasks[index].result_base()
        row["error"] = f"task killed its leg {cp.strikes} times; skipped"
        log.error(
            "run %s: %s at position %s",
            cp.run_id,
            row["error"],
            index,
            extra={
                "event": "task_skipped",
                "run_id": cp.run_id,
                "index": index,
                "strikes": cp.strikes,
            },
        )
        window = Window(cp.position, list(cp.holes))
        window.finished(index, row)
        commit = window.commit() if index == cp.position else window.commit_all(upto=cp.position)
        self._commit_state(commit, 0)

    def hand_off(self) -> LegResult:
        cp = self._checkpoint
        if cp.leg + 1 >= self.settings.max_legs:
            reason = f"reached the maximum of {self.settings.max_legs} legs (BATON_MAX_LEGS)"
            return self.finish(RunStatus.FAILED, reason)
        nxt = self._swap(
            cp.hand_off(at_ms=self.clock.now_ms(), leg_ms=self._elapsed_ms()),
            ahead=Usage(invokes=1),  # the invoke below
        )
        payload = LegEvent(
            run_id=cp.run_id,
            bucket=self.event.bucket,
            key=self.event.key,
            etag=self.event.etag,
            position=nxt.position,
            leg=nxt.leg,
            chain=nxt.chain,
        ).payload()
        try:
            self.c.invoker.invoke_async(
                self.context.invoked_function_arn, payload, within_s=self._handoff_window_s()
            )
        except HandoffError as exc:
            log.error(
                "run %s: hand-off to leg %s failed (%s); the sweep will resume it from position %s",
                cp.run_id,
                nxt.leg,
                exc,
                nxt.position,
            )
            return self._result(nxt, Exit.HANDOFF_FAILED, str(exc))
        self.meter.invokes += 1
        return self._result(nxt, Exit.HANDED_OFF)

    def finish(self, status: RunStatus, reason: str | None = None) -> LegResult:
        """End this chain with `status`, and the run with it if it was the last chain."""
        self.end_chain(status, reason)
        if status is RunStatus.CANCELLED and self._record.listing is not None:
            self.cancel_queued(reason)
        return self.completed(FINISHING[status], reason)

    def cancel_queued(self, reason: str | None) -> None:
        """A cancelled prefix run ends its queued chains too (each by a CAS, so a leg that
        claimed one first keeps it and sees the cancel itself), or they would wait for
        slots one sweep at a time before ending."""
        run_id, at = self._record.run_id, self.clock.now_ms()
        for chain in self.store.queued_chains(run_id):
            self.store.unqueue(run_id, chain)
            try:
                current = self.store.load_checkpoint(run_id, chain)
                if waiting(current.checkpoint):
                    ended = current.checkpoint.finish(
                        RunStatus.CANCELLED, at_ms=at, reason=reason, leg_ms=0
                    )
                    self.store.swap(current, ended)
                    self.store.mark_chain_done(run_id, chain)
            except (ConflictError, RunNotFoundError):
                continue

    def end_chain(self, status: RunStatus, reason: str | None = None) -> None:
        """The chain's final CAS, then (layout 2) its done marker: after every range split
        off it has a checkpoint, so a completion check never misses one."""
        cp = self._checkpoint
        final = self._swap(
            cp.finish(status, at_ms=self.clock.now_ms(), reason=reason, leg_ms=self._elapsed_ms()),
            ahead=ONE_PUT if self._record.version >= LAYOUT_VERSION else None,  # done marker
        )
        if self._record.version >= LAYOUT_VERSION:
            for orphan in ensure_split_ranges(self.store, final, self.clock.now_ms()):
                self._invoke(orphan, within_s=self._handoff_window_s())
            self.store.mark_chain_done(final.run_id, final.chain)
        log.info(
            "run %s chain %s finished %s after %s legs: %s",
            cp.run_id,
            cp.chain,
            status,
            cp.leg + 1,
            reason,
            extra={"event": "chain_finished", "run_id": cp.run_id, "chain": cp.chain},
        )

    def _finish_what_a_dead_leg_left(self, cp: Checkpoint) -> None:
        """The chain's last leg died after its final CAS (Lambda retries it into here): its
        split ranges, done marker and the run's completion are each idempotent, so they
        are done now rather than a sweep later."""
        if self.record is None or self.record.version < LAYOUT_VERSION:
            return
        if cp.status is not RunStatus.DONE or self.store.load_summary(cp.run_id) is not None:
            return  # a cancelled or failed chain may be resumed since this leg read it
        for orphan in ensure_split_ranges(self.store, cp, self.clock.now_ms()):
            self._invoke(orphan, within_s=self._handoff_window_s())
        self.store.mark_chain_done(cp.run_id, cp.chain)
        try_complete(
            self.store,
            self.record,
            self.c.notifier,
            self.clock.now_ms(),
            self.settings.presign_s,
            architecture=self.settings.architecture,
            io=self.c.io,
        )

    def completed(self, exit: Exit, reason: str | None = None) -> LegResult:
        """This leg's exit once its chain ended: it completes the run if every chain has."""
        summary = try_complete(
            self.store,
            self._record,
            self.c.notifier,
            self.clock.now_ms(),
            self.c.settings.presign_s,
            architecture=self.c.settings.architecture,
            io=self.c.io,
        )
        if summary is not None and self._record.chains > 1:
            reason = reason or f"completed the run: {summary['status']}"
        return self._result(self._checkpoint, exit, reason)

    def take_another_range(self) -> bool:
        """A finished chain goes on: a prefix run's queued segment first, else a steal.

        A prefix run's lister that has finished listing goes on only into a free slot:
        its chain was never one of the `chains` work chains, so taking a range would
        make one more of them run.
        """
        record = self._record
        if record.crawl is not None:
            return False  # a crawl chain owns its hosts' log: nothing to steal or queue
        lister = self._checkpoint.listing is not None
        if lister and chain_state(self.store, record.run_id).live >= record.chains:
            return False
        return self.take_a_queued_range() or self.take_a_stolen_range()

    def take_a_queued_range(self) -> bool:
        """With time left, claim the first segment chain of a prefix run waiting in its queue
        (the lister queues chains past the run's `chains`); this leg goes on there."""
        record = self._record
        if record.listing is None:
            return False
        if not self.budget.can_start(self.context.get_remaining_time_in_millis()):
            return False
        for chain in self.store.queued_chains(record.run_id)[:QUEUE_TRIES]:
            self.store.unqueue(record.run_id, chain)
            try:
                current = self.store.load_checkpoint(record.run_id, chain)
            except RunNotFoundError:
                continue
            if not waiting(current.checkpoint):
                continue
            before = (self.event, self.held)
            self.event = replace(
                self.event, chain=chain, leg=0, position=current.checkpoint.position
            )
            try:
                self.held = self.claim(current)
            except (_Quiet, ConflictError):
                self.event, self.held = before
                continue
            log.info(
                "run %s: took queued chain %s (%s-%s)",
                record.run_id,
                chain,
                current.checkpoint.position,
                current.checkpoint.range_end,
                extra={"event": "dequeued", "run_id": record.run_id, "chain": chain},
            )
            return True
        return False

    def take_a_stolen_range(self) -> bool:
        """With time left, take half of the largest range another chain has not planned yet.

        The split is a CAS on the victim's checkpoint (never below its plan, so it
        never takes a task the victim may be working), then the new range's
        checkpoint, created owned by this leg: the chain goes on there.
        """
        record = self._record
        if record.version < LAYOUT_VERSION or record.chains < 2:
            return False
        if not self.budget.can_start(self.context.get_remaining_time_in_millis()):
            return False
        stolen = steal(self.store, record, self._checkpoint.chain, self.owner, self.clock)
        if stolen is None:
            return False
        self.event = replace(self.event, chain=stolen.chain, leg=0, position=stolen.position)
        self.held = self.claim(self.store.load_checkpoint(record.run_id, stolen.chain))
        self.adopt_orphans()
        log.info(
            "run %s: took range %s-%s as chain %s",
            record.run_id,
            stolen.position,
            stolen.range_end,
            stolen.chain,
            extra={"event": "stole", "run_id": record.run_id, "chain": stolen.chain},
        )
        return True

    def _invoke(self, cp: Checkpoint, within_s: float) -> bool:
        payload = LegEvent(
            cp.run_id,
            self.event.bucket,
            self.event.key,
            self.event.etag,
            cp.position,
            cp.leg,
            cp.chain,
        ).payload()
        try:
            self.c.invoker.invoke_async(
                self.context.invoked_function_arn, payload, within_s=within_s
            )
        except HandoffError as exc:
            log.error(
                "run %s chain %s: invoke failed (%s); left to the sweep", cp.run_id, cp.chain, exc
            )
            return False
        self.meter.invokes += 1
        return True

    def _owns(self, url: str) -> bool:
        """Whether this chain's log holds `url`'s host (always, but for a crawl over chains)."""
        return self.crawl is None or self.crawl.owns(url, self._checkpoint.chain)

    @property
    def _commit_every_s(self) -> float:
        """The budget's commit interval; a crawl over chains commits more often, since the
        links a commit finds for other chains reach their inboxes only then."""
        every = self.budget.commit_interval_ms / 1000
        if self.crawl is not None and self._record.chains > 1:
            return min(every, CRAWL_COMMIT_EVERY_S)
        return every

    @property
    def _processor(self) -> Processor:
        """The run's processor: a prefix run names its own (pinned in run.json)."""
        name = (self._record.listing or self._record.crawl or {}).get("processor")
        if name is None or name == self.settings.processor:
            return self.c.processor
        return self.c.named_processor(str(name))

    @property
    def _presign_s(self) -> int:
        return int((self._record.listing or {}).get("presign_s") or self.settings.presign_s)

    # prefix runs: the lister
    def list_prefix(self) -> LegResult | None:
        """The lister's leg: list blocks of pages into segments, each with its work chain,
        until the listing ends (None: the chain ended done, this leg may go on working)
        or the leg must stop (its result)."""
        cp = self._checkpoint
        most = self.settings.max_task_attempts
        if cp.strikes <= most:  # what was listed is worked, even when the listing stops here
            self.place_pending()  # (past `most`, placing it is what kills the leg)
        if cp.strikes >= most:
            return self.finish(
                RunStatus.FAILED, f"listing killed its leg {cp.strikes} times; the run stops"
            )
        while not self._listing["done"]:
            if self._cancel_requested(cp.run_id):
                return self.finish(RunStatus.CANCELLED, "cancel requested")
            if not self.budget.can_start(self.context.get_remaining_time_in_millis()):
                return self.hand_off()
            self.list_one_block()
            self.place_pending(recount=bool(self._listing["done"]))
        self.end_chain(RunStatus.DONE)
        return None

    @property
    def _listing(self) -> dict[str, Any]:
        listing = self._checkpoint.listing
        assert listing is not None, "only the lister lists"
        return listing

    def list_one_block(self) -> None:
        """Pages into one segment (written before the CAS that records it as pending)."""
        record, listing = self._record, self._listing
        assert record.listing is not None
        block = list_block(
            self.c.s3,
            record.bucket,
            record.listing,
            listing["after"],
            page_size=self.settings.list_page_size,
            max_pages=self.settings.segment_pages,
            can_go=lambda: self.budget.can_start(self.context.get_remaining_time_in_millis()),
        )
        pending = list(listing["pending"])
        first = int(listing["listed"])
        if block.objects:
            key = segment_key(self.store, record.run_id, first, self.owner)
            etag = self.store.put_segment(key, encode_segment(block.objects))
            pending.append({"key": key, "etag": etag, "first": first, "count": len(block.objects)})
        self._swap(
            self._checkpoint.evolve(
                listing={
                    **listing,
                    "after": block.after,
                    "listed": first + len(block.objects),
                    "done": block.exhausted,
                    "pending": pending,
                    "segments": int(listing["segments"]) + bool(block.objects),
                    "pages": int(listing["pages"]) + block.pages,
                    "too_new": int(listing.get("too_new", 0)) + block.too_new,
                },
                heartbeat_ms=self.clock.now_ms(),
                strikes=0,
                crashes=0,
                careful_until=0,
            )
        )
        log.info(
            "run %s: listed %s keys (%s kept, %s too new) in %s pages, up to %r",
            record.run_id,
            len(block.objects) + block.too_new,
            len(block.objects),
            block.too_new,
            block.pages,
            block.after,
            extra={
                "event": "listed",
                "run_id": record.run_id,
                "listed": first + len(block.objects),
            },
        )

    def place_pending(self, *, recount: bool = False) -> None:
        """Create the work chain of every pending segment (queued past the run's chains),
        start queued chains while there is room, then clear the pending list.

        The count of running work chains (three listings) is taken at the leg's first
        call, then kept: between counts it can only fall (chains end; a steal or a
        taken queued chain replaces the chain that ended), so the kept count does not
        let more than `chains` run (the sweep's start of a queued chain aside: it
        fills a slot it counted free itself, once a minute). It is taken again when it
        says the run is full, at most every `RECOUNT_S`, or when asked (the listing's
        end). On S3 a listing costs the same at any bucket size; on moto's emulator
        it grows with the bucket, which made counting every block the lister's main
        cost.
        """
        record, listing = self._record, self._listing
        now = self.clock.monotonic()
        count = self._chain_count
        if (
            count is None
            or recount
            or (count[0] >= record.chains and now - self._counted_at >= RECOUNT_S)
        ):
            state = chain_state(self.store, record.run_id)
            count, self._counted_at = (state.live, list(state.queued)), now
        live, queue = count
        within = self._handoff_window_s()
        at = self.clock.now_ms()
        for segment in listing["pending"]:
            first = int(segment["first"])
            chain = segment_chain(first)
            ours = segment["key"] == segment_key(self.store, record.run_id, first, self.owner)
            if not ours and self.store.has_checkpoint(record.run_id, chain):
                continue  # made by a leg that died before clearing it (its invoke, or the sweep)
            start_now = live < record.chains and not queue  # first come, first started
            if not start_now:
                self.store.queue_chain(record.run_id, chain)  # before the chain: never lost
            made = self.store.create_checkpoint(segment_checkpoint(record, segment, at))
            if made is None:
                continue
            if start_now:
                self._invoke(made.checkpoint, within_s=within)
                live += 1
            else:
                queue.append(chain)
        room = record.chains - live
        if room > 0 and queue:
            started = dequeue(self.store, record.run_id, queue[:room], at)
            for cp in started:
                self._invoke(cp, within_s=within)
            live, queue = live + len(started), queue[room:]
        self._chain_count = (live, queue)
        if listing["pending"]:
            self._swap(self._checkpoint.evolve(listing={**self._listing, "pending": []}))

    @property
    def _record(self) -> RunRecord:
        assert self.record is not None, "the run record is read before the claim"
        return self.record

    def release(self, exc: Exception) -> None:
        """After an unexpected error, give the run back so Lambda's retry can claim it.

        An error that is not transient counts as a crash; a run that crashes
        `MAX_CRASHES` legs in a row at one position fails with that error, so no
        input or bug can leave it `running` while every sweep re-crashes it.
        """
        try:
            for _ in range(MAX_SPLIT_RETRIES):  # a steal landing meanwhile: give back again
                current = self.store.load_checkpoint(self.event.run_id, self.event.chain)
                if current.checkpoint.owner != self.owner:
                    return
                unsure, self._unsure = self._unsure, None
                if unsure is not None and written_under_steals(unsure[0], current.checkpoint):
                    self.meter.landed(unsure[1])  # the write that raised had landed
                released = current.checkpoint.release(crashed=not isinstance(exc, TransientError))
                delta = self.meter.pending(ONE_PUT)
                released = with_usage(released, delta, self.clock.now_ms())
                try:
                    self.held = self.store.swap(current, released)
                except ConflictError:
                    continue
                self.meter.landed(delta)
                break
            else:
                raise ConflictError(f"chain {self.event.chain} kept changing under us")
            if released.crashes >= MAX_CRASHES:
                self.finish(
                    RunStatus.FAILED,
                    f"legs crashed {released.crashes} times in a row at position "
                    f"{released.position}: {type(exc).__name__}: {exc}",
                )
        except Exception:
            log.exception("run %s: could not release leg %s", self.event.run_id, self.event.leg)

    def report(self, result: LegResult) -> None:
        """One structured line and one EMF document per leg."""
        remaining = self.context.get_remaining_time_in_millis()
        budget_use = self.task_ms / result.elapsed_ms if result.elapsed_ms else 0.0
        level = logging.ERROR if result.exit in (Exit.FAILED, Exit.HANDOFF_FAILED) else logging.INFO
        log.log(
            level,
            "run %s leg %s: %s at %s/%s (%s tasks in %s batches, %.0f ms)",
            result.run_id,
            result.leg,
            result.exit,
            result.position,
            result.total,
            result.processed,
            result.batches,
            result.elapsed_ms,
            extra={
                "event": "leg",
                **result.as_dict(),
                "remaining_ms": remaining,
                "budget_use": round(budget_use, 4),
            },
        )
        if not self.settings.metrics or result.exit in QUIET_EXITS:
            return
        failed = self._failed_in_leg
        emit_metrics(
            {
                "TasksDone": (result.processed - failed, "Count"),
                "TasksFailed": (failed, "Count"),
                "LegDuration": (result.elapsed_ms, "Milliseconds"),
                "BudgetUse": (round(budget_use * 100, 2), "Percent"),
                "RemainingAtExit": (remaining, "Milliseconds"),
            },
            {"Function": self.context.invoked_function_arn.rsplit(":", 1)[-1]},
            {"run_id": result.run_id, "leg": result.leg, "exit": str(result.exit)},
        )

    # helpers
    @property
    def _checkpoint(self) -> Checkpoint:
        assert self.held is not None, "the leg holds no checkpoint before its claim"
        return self.held.checkpoint

    def _swap(self, new: Checkpoint, ahead: Usage | None = None) -> Checkpoint:
        """CAS the chain's checkpoint; a steal that landed first shortens the range and the
        write is redone on top of it, and one that landed on our write (whose answer was
        lost) is taken as it is (anything else: ConflictError, this leg lost it).

        Each write carries this leg's usage not yet recorded, and `ahead` (requests
        that follow it); once it lands, that is recorded (worker.usage)."""
        assert self.held is not None
        delta = self.meter.pending(ONE_PUT + (ahead or Usage()))
        new = with_usage(new, delta, self.clock.now_ms())
        for _ in range(MAX_SPLIT_RETRIES):
            self._unsure = (new, delta)
            try:
                self.held = self.store.swap(self.held, new)
                self.meter.landed(delta)
                self._unsure = None
                return new
            except ConflictError:
                self._unsure = None
                current = self.store.load_checkpoint(new.run_id, new.chain)
                if written_under_steals(new, current.checkpoint):  # its answer lost
                    self.held = current
                    self.meter.landed(delta)
                    return current.checkpoint
                redone = redo_after_split(self.held.checkpoint, current.checkpoint, new)
                if redone is None:
                    raise
                self.held, new = current, redone
        raise ConflictError(f"chain {new.chain} of {new.run_id} kept changing under us")

    def _log_commit(
        self, cp: Checkpoint, commit: Commit, failed: int, since_ms: float, took_s: float
    ) -> None:
        """One line per commit; `batch_ms` is the wall time since the previous one,
        `commit_ms` what the commit itself took of it (its writes and CAS, and for a
        crawl its inbox deletes and wakes)."""
        remaining = self.context.get_remaining_time_in_millis()
        count = len(commit.rows) + len(commit.hole_rows)
        level = self.c.autoscaler.current
        log.info(
            "run %s leg %s: committed %s-%s (%s rows, %s holes done, %s failed, %s holes left), "
            "concurrency %s, remaining %s ms",
            cp.run_id,
            cp.leg,
            commit.start,
            commit.end - 1,
            count,
            len(commit.hole_rows),
            failed,
            len(commit.holes),
            level,
            remaining,
            extra={
                "event": "batch",
                "run_id": cp.run_id,
                "leg": cp.leg,
                "start": commit.start,
                "end": commit.end - 1,
                "tasks": count,
                "failed": failed,
                "holes": len(commit.holes),
                "batch_ms": round(since_ms, 1),
                "commit_ms": round(took_s * 1000, 1),
                "concurrency": level,
                "cpu_use": round(self.c.autoscaler.last_cpu_use, 3),
                "remaining_ms": remaining,
            },
        )

    def _level(self) -> int:
        return self.c.autoscaler.current

    def _elapsed_since(self, started: float) -> int:
        return int((self.clock.monotonic() - started) * 1000)

    def _cancel_requested(self, run_id: str) -> bool:
        """The marker, read alongside the last batch's results PUT, or now at leg start."""
        if self.cancel_seen is None:
            return self.store.cancel_requested(run_id)
        return self.cancel_seen

    def _handoff_window_s(self) -> float:
        """The invoke's retries end half a second before the leg's deadline."""
        return max(0.1, (self.context.get_remaining_time_in_millis() - 500) / 1000)

    def _elapsed_ms(self) -> int:
        return int((self.clock.monotonic() - self.started) * 1000)

    def _result(self, cp: Checkpoint, exit: Exit, reason: str | None = None) -> LegResult:
        return LegResult(
            run_id=self.event.run_id,
            leg=self.event.leg,
            chain=self.event.chain,
            exit=exit,
            start_position=self.event.position,
            position=cp.position,
            total=cp.total,
            processed=self.processed,
            batches=self.batches,
            cache_hit=self.cache_hit,
            elapsed_ms=round(self._elapsed_ms(), 1),
            reason=reason,
        )


def _tasks_at(tasks: TaskList, indices: Sequence[int]) -> list[Task]:
    """The tasks at `indices` (holes): one read of their span when they are close together,
    as an indexed list reads a span with one ranged GET."""
    if not indices:
        return []
    low, high = min(indices), max(indices)
    if high - low < 4 * len(indices) + 64:
        span = tasks[low : high + 1]
        return [span[i - low] for i in sorted(indices)]
    return [tasks[i] for i in sorted(indices)]


def _timed_out(row: dict[str, Any]) -> bool:
    error = str(row.get("error") or "")
    return "Timeout" in error or "not read in time" in error
