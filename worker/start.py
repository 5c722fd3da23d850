"""Starting a run (from an upload or a manual payload), and resuming one by hand."""

from __future__ import annotations

import logging

from botocore.exceptions import ClientError

from worker.container import Container
from worker.events import LegEvent, StartRequest, derive_run_id, quote_etag
from worker.exceptions import BadEventError, RunNotFoundError, TaskListError, TransientError
from worker.leg import Exit, LambdaContext, Leg, LegResult, failure_kind
from worker.s3errors import is_not_found, is_transient
from worker.state import TERMINAL, Checkpoint, RunRecord, RunStore, now_ms
from worker.tasklist import load_task_list

log = logging.getLogger(__name__)


def start_run(container: Container, request: StartRequest, context: LambdaContext) -> LegResult:
    """Create the run (once) and work its first leg in this same invocation."""
    settings = container.settings
    store = RunStore(container.s3, request.bucket, settings.results_prefix)
    etag = request.etag or _current_etag(container, request.bucket, request.key)
    run_id = request.run_id or derive_run_id(request.bucket, request.key, etag, request.nonce)
    if request.run_id is not None:
        return resume_run(container, store, request, context)
    tasks, _ = load_task_list(
        container.cache, container.s3, request.bucket, request.key, etag, settings=settings
    )
    if request.position > len(tasks):
        raise BadEventError(
            f"position {request.position} is past the end of the task list ({len(tasks)} tasks)"
        )
    record = RunRecord(
        run_id=run_id,
        bucket=request.bucket,
        key=request.key,
        etag=etag,
        total=len(tasks),
        start_position=request.position,
        created_ms=now_ms(),
        source=request.source,
        config={
            "batch_size": settings.batch_size,
            "concurrency": settings.concurrency,
            "processor": settings.processor,
            "max_legs": settings.max_legs,
        },
    )
    event = LegEvent(run_id, request.bucket, request.key, etag, request.position, leg=0)
    if not store.create_run(record):
        if _has_checkpoint(store, run_id):
            if request.source == "s3":
                log.info("run %s already exists: duplicate S3 notification, ignored", run_id)
                return _quiet(event, len(tasks), "run already exists (duplicate notification)")
            return resume_run(
                container,
                store,
                StartRequest(request.bucket, request.key, request.position, etag, run_id),
                context,
            )
        # An earlier start wrote run.json and died (or lost the answer to that write, and
        # botocore's retry then failed the IfNoneMatch): finish that start as it was asked.
        record = store.load_run(run_id)
        log.warning("run %s was created but never started: starting it now", run_id)
        event = LegEvent(run_id, request.bucket, request.key, etag, record.start_position, leg=0)
    store.mark_active(run_id)
    store.mark_source(run_id, request.key, etag)
    created = store.create_checkpoint(
        Checkpoint(run_id=run_id, total=len(tasks), position=record.start_position)
    )
    if created is None:
        return _quiet(event, len(tasks), "checkpoint already exists")
    log.info(
        "run %s started: %s tasks from s3://%s/%s at position %s",
        run_id,
        len(tasks),
        request.bucket,
        request.key,
        record.start_position,
    )
    return Leg(container, event, context).run(created)


def resume_run(
    container: Container, store: RunStore, request: StartRequest, context: LambdaContext
) -> LegResult:
    """Restart a run that is not live, at or before its checkpoint (never past it)."""
    assert request.run_id is not None
    record = store.load_run(request.run_id)
    if (record.bucket, record.key) != (request.bucket, request.key):
        raise BadEventError(
            f"run {request.run_id} is for s3://{record.bucket}/{record.key}, "
            f"not s3://{request.bucket}/{request.key}"
        )
    current = store.load_checkpoint(request.run_id)
    cp = current.checkpoint
    at = now_ms()
    if cp.status not in TERMINAL and (cp.lease_live(at) or _handoff_pending(cp, at, container)):
        raise BadEventError(
            f"run {cp.run_id} is live (leg {cp.leg}, position {cp.position}); "
            "cancel it or wait for it to stop before resuming"
        )
    if request.position > cp.position:
        raise BadEventError(
            f"position {request.position} is past run {cp.run_id}'s checkpoint {cp.position}: "
            "tasks in between would never be processed"
        )
    if request.position < record.start_position:
        raise BadEventError(
            f"position {request.position} is before run {cp.run_id}'s start {record.start_position}"
        )
    rewound = rewind(store, cp, request.position)
    leg = cp.leg + 1
    resumed = store.swap(
        current,
        rewound.evolve(
            status="running",
            leg=leg,
            owner=None,
            lease_until_ms=0,
            reason=None,
            finished_ms=0,
            strikes=0,
            handed_off_ms=at,
        ),
    )
    store.mark_active(cp.run_id)
    log.info("run %s resumed at position %s as leg %s", cp.run_id, request.position, leg)
    event = LegEvent(cp.run_id, record.bucket, record.key, record.etag, request.position, leg)
    return Leg(container, event, context).run(resumed)


def rewind(store: RunStore, cp: Checkpoint, position: int) -> Checkpoint:
    """Drop results at or past `position` and recount, so every index stays exactly once."""
    if position == cp.position:
        return cp
    ok = failed = 0
    kinds: dict[str, int] = {}
    for start, end, key in list(store.result_keys(cp.run_id)):
        if start >= position:
            store.delete(key)
            continue
        rows = store.read_rows(key)
        if end >= position:
            kept = [r for r in rows if r["index"] < position]
            store.put_results(cp.run_id, start, position - 1, kept)
            store.delete(key)
            rows = kept
        errors = [str(r["error"]) for r in rows if r.get("error")]
        for error in errors:
            kinds[failure_kind(error)] = kinds.get(failure_kind(error), 0) + 1
        failed += len(errors)
        ok += len(rows) - len(errors)
    return cp.evolve(
        position=position,
        ok=ok,
        failed=failed,
        careful_until=0,
        failure_kinds=kinds,
        failure_samples=[s for s in cp.failure_samples if s["index"] < position],
    )


def _has_checkpoint(store: RunStore, run_id: str) -> bool:
    try:
        store.load_checkpoint(run_id)
    except RunNotFoundError:
        return False
    return True


def _handoff_pending(cp: Checkpoint, at: int, container: Container) -> bool:
    """A leg was handed off recently and may still be on its way."""
    return cp.owner is None and at - cp.handed_off_ms < container.settings.stall_after_ms


def _current_etag(container: Container, bucket: str, key: str) -> str:
    try:
        head = container.s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if is_not_found(exc):
            raise TaskListError(f"task list s3://{bucket}/{key} does not exist") from exc
        if is_transient(exc):
            raise TransientError(str(exc)) from exc
        raise
    return quote_etag(str(head["ETag"]))


def _quiet(event: LegEvent, total: int, reason: str) -> LegResult:
    return LegResult(
        run_id=event.run_id,
        leg=event.leg,
        exit=Exit.DUPLICATE,
        start_position=event.position,
        position=event.position,
        total=total,
        reason=reason,
    )
