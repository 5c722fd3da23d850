"""One leg of a run: claim the checkpoint, work batches, then hand off or finish.

Read `Leg.run()` top to bottom: every way out is a named `Exit`. A leg acts
on a run only while it owns the checkpoint, and it owns it only through a
compare-and-swap (`worker.checkpoint` holds the rules of each move), so
duplicate deliveries, stale retries and a late sweep can never make two legs of
one run work at once.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, Protocol

from worker.checkpoint import Checkpoint, ClaimRefused, RunStatus
from worker.container import Container
from worker.events import LegEvent
from worker.exceptions import ConflictError, InputChangedError, TaskListError, TransientError
from worker.handoff import HandoffError, recursion_allowed
from worker.processor import Outcome, TaskContext, run_tasks
from worker.store import RunRecord, RunStore, Versioned
from worker.summary import summarize, tally_failures
from worker.tasks import Task, TaskList, load_task_list
from worker.telemetry import emit_metrics

log = logging.getLogger(__name__)

MAX_CRASHES = 5
"""Unexpected errors in a row at one position before the run fails (see `Leg.release`)."""


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
        self.owner = f"{context.aws_request_id}/{uuid.uuid4().hex[:8]}"
        self.budget = container.budget
        self.started = self.clock.monotonic()
        self.processed = 0
        self.batches = 0
        self.first_window_ms = 0.0
        self.cancel_seen: bool | None = None
        self.cache_hit: bool | None = None
        self.task_ms = 0.0
        self._failed_in_leg = 0
        self.record: RunRecord | None = None
        self.held: Versioned | None = None
        """The checkpoint as this leg last wrote it; set once the claim succeeds."""

    def run(self) -> LegResult:
        result = self._run()
        self.report(result)
        return result

    def _run(self) -> LegResult:
        first = self.store.load_checkpoint(self.event.run_id)
        try:
            self.record = self._matching_record()
            self.held = self.claim(first)
            self.check_recursion_once()
            tasks = self.load_tasks()
            self.adopt_orphan()
            while True:
                cp = self.held.checkpoint
                if cp.position >= cp.total:
                    return self.finish(RunStatus.DONE)
                if self._cancel_requested(cp.run_id):
                    return self.finish(RunStatus.CANCELLED, "cancel requested")
                if cp.strikes >= self.settings.max_task_attempts:
                    self.skip_killer_task(tasks)
                    continue
                remaining = self.context.get_remaining_time_in_millis()
                if not self.budget.can_start_batch(remaining) or not self.work_batch(
                    tasks, remaining
                ):
                    return self.hand_off()
        except _Quiet as quiet:
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
                plan=self._plan,
            )
        except ClaimRefused as refused:
            raise _Quiet(Exit(refused.exit), refused.reason) from None
        if claimed.strikes > current.checkpoint.strikes:
            log.warning(
                "run %s: leg %s died at position %s (strike %s)",
                claimed.run_id,
                claimed.leg,
                claimed.position,
                claimed.strikes,
            )
        return self.store.swap(current, claimed)

    def _plan(self, position: int, careful_until: int) -> int:
        """Where the next batch ends; written with the CAS before the batch starts."""
        assert self.record is not None, "planned before the run record was read"
        total = self.record.total
        if position < careful_until:
            return min(total, position + 1)
        size = self.budget.next_batch_size(self.context.get_remaining_time_in_millis())
        return min(total, position + size)

    def check_recursion_once(self) -> None:
        if self.c.recursion_checked or not self.settings.check_recursion:
            return
        self.c.recursion_checked = True
        recursion_allowed(self.c.lambda_client, self.context.invoked_function_arn)

    def load_tasks(self) -> TaskList:
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

    def adopt_orphan(self) -> None:
        """Keep a batch a killed leg wrote but did not checkpoint, so it is not done twice."""
        cp = self._checkpoint
        for start, end, key in self.store.result_keys(cp.run_id, start_after=cp.position - 1):
            if start < cp.position:
                continue
            if start > cp.position:
                return
            log.info("run %s: adopting orphan results %s", cp.run_id, key)
            self._swap(self._advanced(cp, end + 1, self.store.read_rows(key), 0.0))
            return

    def work_batch(self, tasks: TaskList, remaining_ms: int) -> bool:
        """Work one batch; False when not even one task fitted in the time left."""
        cp = self._checkpoint
        end = cp.batch_end if cp.batch_end > cp.position else self._plan(cp.position, 0)
        window_ms = self.budget.work_deadline_ms(remaining_ms)
        if self.batches == 0:
            self.first_window_ms = window_ms
        started = self.clock.monotonic()
        batch = list(tasks[cp.position : end])
        context = TaskContext(self.c.fetcher, started + window_ms / 1000)
        outcomes = run_tasks(batch, self.c.processor, context, self.c.pool)
        elapsed_ms = (self.clock.monotonic() - started) * 1000
        rows = self._kept_rows(batch, outcomes)
        if not rows:
            return False
        end = cp.position + len(rows)
        self.budget.record_batch(elapsed_ms, [o.elapsed_ms for o in outcomes[: len(rows)]])
        cancel = self.c.io.submit(self.store.cancel_requested, cp.run_id)
        self.store.put_results(cp.run_id, cp.position, end - 1, rows)
        self.cancel_seen = cancel.result()
        self._swap(self._advanced(cp, end, rows, elapsed_ms))
        self.batches += 1
        self.processed += len(rows)
        self.task_ms += elapsed_ms
        self._log_batch(cp, end, rows, len(batch) - len(rows), elapsed_ms)
        return True

    def _kept_rows(self, batch: Sequence[Task], outcomes: list[Outcome]) -> list[dict[str, Any]]:
        """Rows up to the first task deferred to the next leg, so results stay contiguous.

        A task that ran out of time although it started with a fair share of time
        (a full request timeout, or nearly the whole leg) is recorded as failed:
        deferring it again would not help, and could loop.
        """
        rows: list[dict[str, Any]] = []
        for task, outcome in zip(batch, outcomes, strict=True):
            if outcome.row is not None:
                rows.append(outcome.row)
            elif (
                outcome.deferred is not None
                and outcome.deferred.tried
                and self._had_fair_share(outcome.left_ms)
            ):
                rows.append({**task.result_base(), "error": str(outcome.deferred)})
            else:
                break
        return rows

    def _had_fair_share(self, left_ms: float) -> bool:
        fair_ms = min(self.settings.request_timeout_s * 1000, 0.9 * self.first_window_ms)
        return left_ms >= fair_ms

    def skip_killer_task(self, tasks: TaskList) -> None:
        cp = self._checkpoint
        row = tasks[cp.position].result_base()
        row["error"] = f"task killed its leg {cp.strikes} times; skipped"
        log.error(
            "run %s: %s at position %s",
            cp.run_id,
            row["error"],
            cp.position,
            extra={
                "event": "task_skipped",
                "run_id": cp.run_id,
                "index": cp.position,
                "strikes": cp.strikes,
            },
        )
        self.store.put_results(cp.run_id, cp.position, cp.position, [row])
        self._swap(self._advanced(cp, cp.position + 1, [row], 0.0))

    def hand_off(self) -> LegResult:
        cp = self._checkpoint
        if cp.leg + 1 >= self.settings.max_legs:
            reason = f"reached the maximum of {self.settings.max_legs} legs (BATON_MAX_LEGS)"
            return self.finish(RunStatus.FAILED, reason)
        nxt = self._swap(cp.hand_off(at_ms=self.clock.now_ms(), leg_ms=self._elapsed_ms()))
        payload = LegEvent(
            run_id=cp.run_id,
            bucket=self.event.bucket,
            key=self.event.key,
            etag=self.event.etag,
            position=nxt.position,
            leg=nxt.leg,
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
        return self._result(nxt, Exit.HANDED_OFF)

    def finish(self, status: RunStatus, reason: str | None = None) -> LegResult:
        cp = self._checkpoint
        final = self._swap(
            cp.finish(status, at_ms=self.clock.now_ms(), reason=reason, leg_ms=self._elapsed_ms())
        )
        record = self.record or self.store.load_run(cp.run_id)
        self.store.put_summary(cp.run_id, summarize(final, record, self.store))
        self.store.mark_inactive(cp.run_id)
        log.info("run %s finished %s after %s legs: %s", cp.run_id, status, cp.leg + 1, reason)
        return self._result(final, FINISHING[status], reason)

    def release(self, exc: Exception) -> None:
        """After an unexpected error, give the run back so Lambda's retry can claim it.

        An error that is not transient counts as a crash; a run that crashes
        `MAX_CRASHES` legs in a row at one position fails with that error, so no
        input or bug can leave it `running` while every sweep re-crashes it.
        """
        try:
            current = self.store.load_checkpoint(self.event.run_id)
            if current.checkpoint.owner != self.owner:
                return
            released = current.checkpoint.release(crashed=not isinstance(exc, TransientError))
            self.held = self.store.swap(current, released)
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

    def _swap(self, new: Checkpoint) -> Checkpoint:
        assert self.held is not None
        self.held = self.store.swap(self.held, new)
        return new

    def _advanced(
        self, cp: Checkpoint, end: int, rows: list[dict[str, Any]], elapsed_ms: float
    ) -> Checkpoint:
        kinds = dict(cp.failure_kinds)
        samples = list(cp.failure_samples)
        failed = tally_failures(kinds, samples, rows)
        self._failed_in_leg += failed
        return cp.advance(
            end,
            ok=len(rows) - failed,
            failed=failed,
            failure_kinds=kinds,
            failure_samples=samples,
            task_ms=int(elapsed_ms),
            at_ms=self.clock.now_ms(),
            plan=self._plan,
        )

    def _log_batch(
        self, cp: Checkpoint, end: int, rows: list[dict[str, Any]], deferred: int, ms: float
    ) -> None:
        remaining = self.context.get_remaining_time_in_millis()
        failed = sum(1 for r in rows if r.get("error"))
        log.info(
            "run %s leg %s: batch %s-%s done in %.0f ms (%s failed, %s deferred), remaining %s ms",
            cp.run_id,
            cp.leg,
            cp.position,
            end - 1,
            ms,
            failed,
            deferred,
            remaining,
            extra={
                "event": "batch",
                "run_id": cp.run_id,
                "leg": cp.leg,
                "start": cp.position,
                "end": end - 1,
                "tasks": len(rows),
                "failed": failed,
                "deferred": deferred,
                "batch_ms": round(ms, 1),
                "remaining_ms": remaining,
            },
        )

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
