"""Starting a run (from an upload or a manual payload), and resuming one by hand.

A start only sets the run up: it pins the input, writes `run.json` and the
checkpoint, and hands leg 0 off with an asynchronous invoke. It never works
tasks itself, so a synchronous caller (the CLI) gets its answer, or the
function's own refusal, at once. A start that dies half-way is finished by the
next delivery of its event; one that dies after the checkpoint is resumed by
the sweep, like any lost hand-off.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from itertools import count
from typing import Any

from worker.checkpoint import Checkpoint, RunStatus
from worker.container import Container
from worker.events import LegEvent, StartRequest, derive_run_id, quote_etag
from worker.exceptions import BadEventError, RunNotFoundError, TaskListError
from worker.handoff import HandoffError
from worker.leg import LambdaContext
from worker.store import RunRecord, RunStore, Versioned
from worker.summary import summarize, tally_failures
from worker.tasks import load_task_list

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StartResult:
    """What a start or resume did; the handler's answer, read by the CLI."""

    run_id: str
    outcome: str
    """`started`, `resumed`, or `duplicate` (this start had already happened)."""
    total: int
    position: int
    leg: int
    note: str | None = None
    """Anything the caller should be told: a new run instead of a finished one, a lost hand-off."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def start_run(container: Container, request: StartRequest, context: LambdaContext) -> StartResult:
    """Create the run (once) and hand its leg 0 off."""
    store = RunStore(container.s3, request.bucket, container.settings.results_prefix)
    etag = request.etag or _current_etag(container, request.bucket, request.key)
    if request.run_id is not None:
        return resume_run(container, store, request, context)
    while True:
        found = _identity(store, request, etag)
        if not isinstance(found, _Fresh) or found.record is not None:
            break
        record = _new_record(container, store, request, etag, found.run_id)
        if store.create_run(record):
            found = _Fresh(found.run_id, found.note, record)
            break
        # Another delivery of this start got here first, or our own write's answer was
        # lost and botocore's retry then failed the IfNoneMatch: look again.
    if isinstance(found, StartResult):
        return found
    if isinstance(found, _Resume):
        return resume_run(container, store, found.request, context)
    assert found.record is not None
    return _begin(container, store, found.record, context, found.note)


def resume_run(
    container: Container, store: RunStore, request: StartRequest, context: LambdaContext
) -> StartResult:
    """Restart a run that is not live, at or before its checkpoint (never past it).

    Every check comes before the first write, so a refused resume changes nothing.
    """
    assert request.run_id is not None
    record = store.load_run(request.run_id)
    if (record.bucket, record.key) != (request.bucket, request.key):
        raise BadEventError(
            f"run {request.run_id} is for s3://{record.bucket}/{record.key}, "
            f"not s3://{request.bucket}/{request.key}"
        )
    current = store.load_checkpoint(request.run_id)
    cp = current.checkpoint
    at = container.clock.now_ms()
    if cp.status is RunStatus.DONE:
        raise BadEventError(
            f"run {cp.run_id} is done: a finished run is never redone; "
            f"start s3://{record.bucket}/{record.key} again for a new run"
        )
    if cp.live(at, container.settings.stall_after_ms):
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
    store.clear_cancel(cp.run_id)
    rewound = rewind(store, cp, request.position)
    leg = cp.leg + 1
    resumed = store.swap(current, rewound.resume(at_ms=at))
    store.mark_active(cp.run_id)
    log.info("run %s resumed at position %s as leg %s", cp.run_id, request.position, leg)
    note = _hand_off(container, record, resumed, context)
    return StartResult(cp.run_id, "resumed", cp.total, request.position, leg, note)


def rewind(store: RunStore, cp: Checkpoint, position: int) -> Checkpoint:
    """Drop results at or past `position` and recount, so every index stays exactly once."""
    if position == cp.position:
        return cp
    kept: list[dict[str, Any]] = []
    for start, end, key in list(store.result_keys(cp.run_id)):
        rows = [] if start >= position else store.read_rows(key)
        if end >= position:
            store.delete(key)
            rows = [r for r in rows if r["index"] < position]
            if rows:
                store.put_results(cp.run_id, start, position - 1, rows)
        kept.extend(rows)
    for start, end, key in list(store.hole_keys(cp.run_id)):
        rows = [] if start >= position else store.read_rows(key)
        if end >= position:
            store.delete(key)
            rows = [r for r in rows if r["index"] < position]
            if rows:
                store.put_holes(cp.run_id, rows)
        kept.extend(rows)
    kinds: dict[str, int] = {}
    samples: list[dict[str, Any]] = []
    failed = tally_failures(kinds, samples, sorted(kept, key=lambda r: r["index"]))
    return cp.evolve(
        position=position,
        holes=[h for h in cp.holes if h < position],
        ok=len(kept) - failed,
        failed=failed,
        careful_until=0,
        failure_kinds=kinds,
        failure_samples=samples,
    )


@dataclass(frozen=True)
class _Fresh:
    """A run to begin: new (no record yet), or half-made (run.json, no checkpoint)."""

    run_id: str
    note: str | None
    record: RunRecord | None


@dataclass(frozen=True)
class _Resume:
    """A manual start of a list whose run stopped without finishing: resume that run."""

    request: StartRequest


def _identity(store: RunStore, request: StartRequest, etag: str) -> _Fresh | _Resume | StartResult:
    """Which run this start is, or what became of it already.

    An upload is its own run (its id carries the event's sequencer), so finding it
    again means a duplicate notification. A manual start names no run: it takes the
    list's first run that is not finished, and a finished run is never redone, so
    after one the start moves on to a new run (`#2`, `#3`, ... in the id's hash)
    and says so.
    """
    note = None
    nonces = (request.nonce,) if request.source == "s3" else _manual_nonces()
    for nonce in nonces:
        run_id = derive_run_id(request.bucket, request.key, etag, nonce)
        try:
            record = store.load_run(run_id)
        except RunNotFoundError:
            return _Fresh(run_id, note, None)
        try:
            cp = store.load_checkpoint(run_id).checkpoint
        except RunNotFoundError:
            log.warning("run %s was created but never started: starting it now", run_id)
            return _Fresh(run_id, note, record)
        if request.source == "s3":
            log.info("run %s already exists: duplicate S3 notification, ignored", run_id)
            store.mark_source(run_id, request.key, etag)  # in case its first start died here
            return StartResult(run_id, "duplicate", cp.total, cp.position, cp.leg)
        if not cp.finished:
            return _Resume(
                StartRequest(request.bucket, request.key, request.position, etag, run_id)
            )
        note = f"run {run_id} of this list is {cp.status}; this start is a new run"
    raise AssertionError("the manual generations never end")


def _manual_nonces() -> Iterator[str]:
    yield ""
    for generation in count(2):
        yield f"#{generation}"


def _new_record(
    container: Container, store: RunStore, request: StartRequest, etag: str, run_id: str
) -> RunRecord:
    settings = container.settings
    try:
        tasks, _ = load_task_list(
            container.cache, container.s3, request.bucket, request.key, etag, settings=settings
        )
    except TaskListError as exc:
        _record_unreadable(store, request, etag, run_id, exc, at=container.clock.now_ms())
        raise
    if request.position > len(tasks):
        raise BadEventError(
            f"position {request.position} is past the end of the task list ({len(tasks)} tasks)"
        )
    return RunRecord(
        run_id=run_id,
        bucket=request.bucket,
        key=request.key,
        etag=etag,
        total=len(tasks),
        start_position=request.position,
        created_ms=container.clock.now_ms(),
        source=request.source,
        config={
            "batch_size": settings.batch_size,
            "concurrency": settings.concurrency,
            "processor": settings.processor,
            "max_legs": settings.max_legs,
            "stall_after_ms": settings.stall_after_ms,
        },
    )


def _begin(
    container: Container,
    store: RunStore,
    record: RunRecord,
    context: LambdaContext,
    note: str | None,
) -> StartResult:
    store.mark_active(record.run_id)
    created = store.create_checkpoint(
        Checkpoint(
            run_id=record.run_id,
            total=record.total,
            position=record.start_position,
            handed_off_ms=container.clock.now_ms(),
        )
    )
    # Only now is the run whole: `baton submit` finds it by this marker.
    store.mark_source(record.run_id, record.key, record.etag)
    if created is None:
        cp = store.load_checkpoint(record.run_id).checkpoint
        return StartResult(record.run_id, "duplicate", cp.total, cp.position, cp.leg)
    log.info(
        "run %s started: %s tasks from s3://%s/%s at position %s",
        record.run_id,
        record.total,
        record.bucket,
        record.key,
        record.start_position,
    )
    handoff_note = _hand_off(container, record, created, context)
    return StartResult(
        record.run_id,
        "started",
        record.total,
        record.start_position,
        0,
        "; ".join(n for n in (note, handoff_note) if n) or None,
    )


def _hand_off(
    container: Container, record: RunRecord, held: Versioned, context: LambdaContext
) -> str | None:
    cp = held.checkpoint
    event = LegEvent(record.run_id, record.bucket, record.key, record.etag, cp.position, cp.leg)
    try:
        container.invoker.invoke_async(context.invoked_function_arn, event.payload())
    except HandoffError as exc:
        log.error("run %s: invoking leg %s failed (%s); left to the sweep", cp.run_id, cp.leg, exc)
        return f"leg {cp.leg} could not be invoked ({exc}); the sweep will start it"
    return None


def _record_unreadable(
    store: RunStore, request: StartRequest, etag: str, run_id: str, exc: TaskListError, *, at: int
) -> None:
    """A list that cannot be read still gets a run, `failed` with the reason, so
    `baton runs` and `baton status` show what happened to the upload."""
    record = RunRecord(run_id, request.bucket, request.key, etag, 0, 0, at, request.source)
    if not store.create_run(record):
        return
    final = Checkpoint(
        run_id=run_id,
        total=0,
        position=0,
        status=RunStatus.FAILED,
        reason=str(exc),
        started_ms=at,
        finished_ms=at,
    )
    if store.create_checkpoint(final) is not None:
        store.put_summary(run_id, summarize(final, record, store))
    store.mark_source(run_id, request.key, etag)
    log.error("run %s failed: %s", run_id, exc)


def _current_etag(container: Container, bucket: str, key: str) -> str:
    head = container.s3.head(bucket, key)
    if head is None:
        raise TaskListError(f"task list s3://{bucket}/{key} does not exist")
    return quote_etag(head.etag)
