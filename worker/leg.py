"""One leg of a run: claim the checkpoint, work batches, then hand off or finish.

Read `Leg.run()` top to bottom: every way out is a named `Exit`. A leg acts
on a run only while it owns the checkpoint, and it owns it only through a
compare-and-swap, so duplicate deliveries, stale retries and a late sweep can
never make two legs of one run work at once.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from worker.container import Container
from worker.events import LegEvent
from worker.exceptions import ConflictError, InputChangedError, TaskListError, TransientError
from worker.handoff import HandoffError, recursion_allowed
from worker.processor import Outcome, TaskContext, run_tasks
from worker.s3errors import is_transient
from worker.state import (
    CANCELLED,
    DONE,
    FAILED,
    RUNNING,
    SUPERSEDED,
    Checkpoint,
    RunRecord,
    RunStore,
    Versioned,
    now_ms,
)
from worker.summary import summarize, tally_failures
from worker.tasklist import TaskList, load_task_list
from worker.tasks import Task
from worker.telemetry import emit_metrics

log = logging.getLogger(__name__)


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


MAX_CRASHES = 5
"""Unexpected errors in a row at one position before the run fails (see `Leg.release`)."""

QUIET_EXITS = frozenset({Exit.DUPLICATE, Exit.STALE, Exit.LOST_CAS, Exit.ALREADY_FINISHED})


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


class _Stop(Exception):
    def __init__(self, exit: Exit, reason: str) -> None:
        super().__init__(reason)
        self.exit = exit
        self.reason = reason


class Leg:
    def __init__(self, container: Container, event: LegEvent, context: LambdaContext) -> None:
        self.c = container
        self.settings = container.settings
        self.event = event
        self.context = context
        self.store = RunStore(container.s3, event.bucket, self.settings.results_prefix)
        self.owner = f"{context.aws_request_id}/{uuid.uuid4().hex[:8]}"
        self.budget = container.budget
        self.started = time.monotonic()
        self.processed = 0
        self.batches = 0
        self.first_window_ms = 0.0
        self.cancel_seen: bool | None = None
        self.cache_hit: bool | None = None
        self.task_ms = 0.0
        self._failed_in_leg = 0
        self.record: RunRecord | None = None

    def run(self, current: Versioned | None = None) -> LegResult:
        result = self._run(current)
        self.report(result)
        return result

    def _run(self, current: Versioned | None) -> LegResult:
        first = current or self.store.load_checkpoint(self.event.run_id)
        try:
            self._check_matches_run()
            held = self.claim(first)
            self.check_recursion_once()
            tasks = self.load_tasks(held)
            held = self.adopt_orphan(held)
            while True:
                cp = held.checkpoint
                if cp.position >= cp.total:
                    return self.finish(held, DONE, Exit.DONE)
                if self._cancel_requested(cp.run_id):
                    return self.finish(held, CANCELLED, Exit.CANCELLED, "cancel requested")
                remaining = self.context.get_remaining_time_in_millis()
                if cp.strikes < self.settings.max_task_attempts and not (
                    self.budget.can_start_batch(remaining)
                ):
                    return self.hand_off(held)
                try:
                    if cp.strikes >= self.settings.max_task_attempts:
                        held = self.skip_killer_task(held, tasks)
                        continue
                    worked = self.work_batch(held, tasks, remaining)
                except InputChangedError as exc:  # a window read of an indexed list
                    return self.finish(held, SUPERSEDED, Exit.SUPERSEDED, str(exc))
                if worked is None:
                    return self.hand_off(held)
                held = worked
        except _Stop as stop:
            return self._result(first.checkpoint, stop.exit, stop.reason)
        except ConflictError as exc:
            log.info("leg %s of %s lost the checkpoint: %s", self.event.leg, self.event.run_id, exc)
            return self._result(first.checkpoint, Exit.LOST_CAS, str(exc))
        except Exception as exc:
            self.release(exc)
            raise

    # steps
    def _check_matches_run(self) -> None:
        record = self.store.load_run(self.event.run_id)
        if (record.bucket, record.key, record.etag) != (
            self.event.bucket,
            self.event.key,
            self.event.etag,
        ):
            raise _Stop(Exit.STALE, "payload does not match the run's pinned input")
        self.record = record

    def claim(self, current: Versioned) -> Versioned:
        cp = current.checkpoint
        at = now_ms()
        if cp.status != RUNNING:
            raise _Stop(Exit.ALREADY_FINISHED, f"run is {cp.status}")
        if cp.leg != self.event.leg:
            raise _Stop(
                Exit.STALE, f"payload is leg {self.event.leg}, checkpoint is at leg {cp.leg}"
            )
        if cp.lease_live(at) and cp.owner != self.owner:
            raise _Stop(Exit.DUPLICATE, f"leg {cp.leg} is owned by {cp.owner}")
        changes: dict[str, Any] = {
            "owner": self.owner,
            "lease_until_ms": at
            + self.context.get_remaining_time_in_millis()
            + self.settings.lease_slack_ms,
            "heartbeat_ms": at,
        }
        careful_until = cp.careful_until
        if cp.owner is not None:
            # The previous owner's lease ran out: it was killed while holding the run,
            # working the batch it planned: go one task at a time over all of it.
            changes["strikes"] = cp.strikes + 1
            careful_until = max(careful_until, cp.batch_end, cp.position + 1)
            changes["careful_until"] = careful_until
            log.warning(
                "run %s: leg %s died at position %s (strike %s)",
                cp.run_id,
                cp.leg,
                cp.position,
                cp.strikes + 1,
            )
        if cp.started_ms == 0:
            changes["started_ms"] = at
        changes["batch_end"] = self._plan(cp.position, cp.total, careful_until)
        return self.store.swap(current, cp.evolve(**changes))

    def _plan(self, position: int, total: int, careful_until: int) -> int:
        """Where the next batch ends; written with the CAS before the batch starts."""
        if position < careful_until:
            return min(total, position + 1)
        size = self.budget.next_batch_size(self.context.get_remaining_time_in_millis())
        return min(total, position + size)

    def check_recursion_once(self) -> None:
        if self.c.recursion_checked or not self.settings.check_recursion:
            return
        self.c.recursion_checked = True
        recursion_allowed(self.c.lambda_client, self.context.invoked_function_arn)

    def load_tasks(self, held: Versioned) -> TaskList:
        try:
            tasks, hit = load_task_list(
                self.c.cache,
                self.c.s3,
                self.event.bucket,
                self.event.key,
                self.event.etag,
                settings=self.settings,
            )
        except InputChangedError as exc:
            self.finish(held, SUPERSEDED, Exit.SUPERSEDED, str(exc))
            raise _Stop(Exit.SUPERSEDED, str(exc)) from exc
        except TaskListError as exc:
            self.finish(held, FAILED, Exit.FAILED, str(exc))
            raise _Stop(Exit.FAILED, str(exc)) from exc
        self.cache_hit = hit
        if len(tasks) != held.checkpoint.total:
            reason = f"task list has {len(tasks)} tasks, run expects {held.checkpoint.total}"
            self.finish(held, FAILED, Exit.FAILED, reason)
            raise _Stop(Exit.FAILED, reason)
        return tasks

    def adopt_orphan(self, held: Versioned) -> Versioned:
        """Keep a batch a killed leg wrote but did not checkpoint, so it is not done twice."""
        cp = held.checkpoint
        for start, end, key in self.store.result_keys(cp.run_id, start_after=cp.position - 1):
            if start < cp.position:
                continue
            if start > cp.position:
                break
            rows = self.store.read_rows(key)
            log.info("run %s: adopting orphan results %s", cp.run_id, key)
            return self.store.swap(held, self._advanced(cp, end + 1, rows, 0.0))
        return held

    def work_batch(self, held: Versioned, tasks: TaskList, remaining_ms: int) -> Versioned | None:
        """Work one batch; None when not even one task fitted in the time left."""
        cp = held.checkpoint
        end = cp.batch_end
        if end <= cp.position:
            end = self._plan(cp.position, cp.total, cp.careful_until)
        window_ms = self.budget.work_deadline_ms(remaining_ms)
        if self.batches == 0:
            self.first_window_ms = window_ms
        deadline = time.monotonic() + window_ms / 1000
        started = time.monotonic()
        batch = list(tasks[cp.position : end])
        outcomes = run_tasks(
            batch, self.c.processor, TaskContext(self.c.fetcher, deadline), self.c.pool
        )
        elapsed_ms = (time.monotonic() - started) * 1000
        rows = self._kept_rows(batch, outcomes)
        if not rows:
            return None
        end = cp.position + len(rows)
        self.budget.record_batch(elapsed_ms, [o.elapsed_ms for o in outcomes[: len(rows)]])
        cancel = self.c.io.submit(self.store.cancel_requested, cp.run_id)
        self.store.put_results(cp.run_id, cp.position, end - 1, rows)
        self.cancel_seen = cancel.result()
        held = self.store.swap(held, self._advanced(cp, end, rows, elapsed_ms))
        self.batches += 1
        self.processed += len(rows)
        self.task_ms += elapsed_ms
        remaining = self.context.get_remaining_time_in_millis()
        failed = sum(1 for r in rows if r.get("error"))
        log.info(
            "run %s leg %s: batch %s-%s done in %.0f ms (%s failed, %s deferred), remaining %s ms",
            cp.run_id,
            cp.leg,
            cp.position,
            end - 1,
            elapsed_ms,
            failed,
            len(batch) - len(rows),
            remaining,
            extra={
                "event": "batch",
                "run_id": cp.run_id,
                "leg": cp.leg,
                "start": cp.position,
                "end": end - 1,
                "tasks": len(rows),
                "failed": failed,
                "deferred": len(batch) - len(rows),
                "batch_ms": round(elapsed_ms, 1),
                "remaining_ms": remaining,
            },
        )
        return held

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

    def skip_killer_task(self, held: Versioned, tasks: TaskList) -> Versioned:
        cp = held.checkpoint
        task = tasks[cp.position]
        row = task.result_base()
        row["error"] = f"task killed its leg {cp.strikes} times; skipped"
        log.error("run %s: %s at position %s", cp.run_id, row["error"], cp.position)
        self.store.put_results(cp.run_id, cp.position, cp.position, [row])
        return self.store.swap(held, self._advanced(cp, cp.position + 1, [row], 0.0))

    def hand_off(self, held: Versioned) -> LegResult:
        cp = held.checkpoint
        if cp.leg + 1 >= self.settings.max_legs:
            reason = f"reached the maximum of {self.settings.max_legs} legs (BATON_MAX_LEGS)"
            return self.finish(held, FAILED, Exit.FAILED, reason)
        at = now_ms()
        nxt = cp.evolve(
            leg=cp.leg + 1,
            owner=None,
            lease_until_ms=0,
            handed_off_ms=at,
            heartbeat_ms=at,
            leg_ms_total=cp.leg_ms_total + self._elapsed_ms(),
        )
        held = self.store.swap(held, nxt)
        payload = LegEvent(
            run_id=cp.run_id,
            bucket=self.event.bucket,
            key=self.event.key,
            etag=self.event.etag,
            position=nxt.position,
            leg=nxt.leg,
        ).payload()
        try:
            self.c.invoker.invoke_async(self.context.invoked_function_arn, payload)
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

    def finish(
        self, held: Versioned, status: str, exit: Exit, reason: str | None = None
    ) -> LegResult:
        cp = held.checkpoint
        at = now_ms()
        final = cp.evolve(
            status=status,
            owner=None,
            lease_until_ms=0,
            finished_ms=at,
            heartbeat_ms=at,
            reason=reason,
            leg_ms_total=cp.leg_ms_total + self._elapsed_ms(),
        )
        self.store.swap(held, final)
        record = self.record or self.store.load_run(cp.run_id)
        self.store.put_summary(cp.run_id, summarize(final, record, self.store))
        self.store.mark_inactive(cp.run_id)
        log.info("run %s finished %s after %s legs: %s", cp.run_id, status, cp.leg + 1, reason)
        return self._result(final, exit, reason)

    def release(self, exc: Exception) -> None:
        """After an unexpected error, give the run back so Lambda's retry can claim it.

        An error that is not transient counts as a crash; a run that crashes
        `MAX_CRASHES` legs in a row at one position fails with that error, so no
        input or bug can leave it `running` while every sweep re-crashes it.
        """
        try:
            current = self.store.load_checkpoint(self.event.run_id)
            cp = current.checkpoint
            if cp.owner != self.owner:
                return
            crashes = cp.crashes if _is_transient(exc) else cp.crashes + 1
            released = cp.evolve(owner=None, lease_until_ms=0, crashes=crashes)
            if crashes < MAX_CRASHES:
                self.store.swap(current, released)
                return
            reason = (
                f"legs crashed {crashes} times in a row at position {cp.position}: "
                f"{type(exc).__name__}: {exc}"
            )
            self.finish(Versioned(released, current.etag), FAILED, Exit.FAILED, reason)
        except Exception:
            log.exception("run %s: could not release leg %s", self.event.run_id, self.event.leg)

    def report(self, result: LegResult) -> None:
        """One structured line and one EMF document per leg."""
        remaining = self.context.get_remaining_time_in_millis()
        budget_use = self.task_ms / result.elapsed_ms if result.elapsed_ms else 0.0
        level = (
            logging.INFO
            if result.exit not in (Exit.FAILED, Exit.HANDOFF_FAILED)
            else (logging.ERROR)
        )
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
    def _advanced(
        self,
        cp: Checkpoint,
        end: int,
        rows: list[dict[str, Any]],
        elapsed_ms: float,
    ) -> Checkpoint:
        kinds = dict(cp.failure_kinds)
        samples = list(cp.failure_samples)
        failed = tally_failures(kinds, samples, rows)
        self._failed_in_leg += failed
        return cp.evolve(
            position=end,
            ok=cp.ok + len(rows) - failed,
            failed=cp.failed + failed,
            strikes=0,
            crashes=0,
            heartbeat_ms=now_ms(),
            batch_end=self._plan(end, cp.total, cp.careful_until),
            task_ms_total=cp.task_ms_total + int(elapsed_ms),
            failure_kinds=kinds,
            failure_samples=samples,
        )

    def _cancel_requested(self, run_id: str) -> bool:
        """The marker, read alongside the last batch's results PUT, or now at leg start."""
        if self.cancel_seen is None:
            return self.store.cancel_requested(run_id)
        return self.cancel_seen

    def _elapsed_ms(self) -> int:
        return int((time.monotonic() - self.started) * 1000)

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


def _is_transient(exc: Exception) -> bool:
    """S3 or Lambda having a bad moment: worth retrying forever, never a crash."""
    if isinstance(exc, TransientError | BotoCoreError):
        return True
    return isinstance(exc, ClientError) and is_transient(exc)
