"""Starting a run (from an upload or a manual payload), and resuming one by hand.

A start only sets the run up: it pins the input, writes `run.json` and one
checkpoint per chain (contiguous ranges of the list), and hands each chain's
leg 0 off with an asynchronous invoke. It never works tasks itself, so a
synchronous caller (the CLI) gets its answer, or the function's own refusal, at
once. A start that dies half-way is finished by the next delivery of its event
(it creates the checkpoints still missing and invokes only those); a chain
whose invoke was lost or throttled is resumed by the sweep, like any lost
hand-off.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from itertools import count, pairwise
from typing import Any

from worker.checkpoint import Checkpoint, RunStatus
from worker.completion import try_complete
from worker.config import DEFAULT_PRESIGN_EXPIRES_S, DEFAULT_PROCESSOR, Settings
from worker.container import Container
from worker.cost import pricing_config
from worker.crawl.chainlog import empty_frontier
from worker.crawl.spec import parse_spec_file as parse_crawl_file
from worker.crawl.steps import MAX_CRAWL_CHAINS, STRIDE
from worker.events import FIRST_CHAIN, LegEvent, StartRequest, derive_run_id, quote_etag
from worker.exceptions import BadEventError, RunNotFoundError, TaskListError
from worker.handoff import HandoffError
from worker.leg import LambdaContext
from worker.listing import SPEC_SUFFIX, lister_checkpoint, parse_spec, refuse_loops, waiting
from worker.names import CRAWL_SUFFIX
from worker.prices import architecture, parse_overrides
from worker.s3 import Listed
from worker.schedule import SCHEDULE_ID, SCHEDULE_METADATA, is_scheduled, run_nonce
from worker.store import LAYOUT_VERSION, RunRecord, RunStore
from worker.summary import tally_failures
from worker.tasks import load_task_list
from worker.usage import Meter, Usage, start_meter, with_usage

log = logging.getLogger(__name__)

CHAINS_METADATA = "baton-chains"
"""User metadata of an uploaded list naming its chains (`baton submit --chains`)."""


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
    chains: int = 1
    """Anything the caller should be told: a new run instead of a finished one, a lost hand-off."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def start_run(container: Container, request: StartRequest, context: LambdaContext) -> StartResult:
    """Create the run (once) and hand its leg 0 off."""
    meter = start_meter(container, context)
    store = RunStore(container.s3, request.bucket, container.settings.results_prefix)
    metadata: dict[str, str] = {}
    if request.crawl is not None:
        etag = request.crawl.digest()
    elif request.prefix is not None:
        etag = request.prefix.digest()
    else:
        source = _source_object(container, request.bucket, request.key)
        etag, metadata = request.etag or quote_etag(source.etag), source.metadata
        request = scheduled(request, source)
    if request.run_id is not None:
        return resume_run(container, store, request, context)
    chains, chains_note = _chains(container, request, metadata)
    while True:
        found = _identity(store, request, etag)
        if not isinstance(found, _Fresh) or found.record is not None:
            break
        record = _new_record(
            container, store, request=request, etag=etag, run_id=found.run_id, chains=chains
        )
        # Marked active before run.json exists: a start that dies after writing it is then
        # always seen by the sweep, which makes the checkpoints still missing (a marker whose
        # run.json never landed is tidied away by the sweep).
        store.mark_active(found.run_id, container.clock.now_ms())
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
    note = "; ".join(n for n in (found.note, chains_note) if n) or None
    return _begin(container, store, found.record, context, note, meter=meter)


def resume_run(
    container: Container, store: RunStore, request: StartRequest, context: LambdaContext
) -> StartResult:
    """Restart a run that is not live, each chain from its checkpoint (a one-chain run may
    go back to an earlier `position`; never past the checkpoint).

    Every check comes before the first write, so a refused resume changes nothing.
    """
    assert request.run_id is not None
    record = store.load_run(request.run_id)
    listed = (record.listing or {}).get("prefix")
    if (record.bucket, record.key) != (request.bucket, request.key) and (
        request.prefix is None or (record.bucket, listed) != (request.bucket, request.key)
    ):
        raise BadEventError(
            f"run {request.run_id} is for s3://{record.bucket}/{listed or record.key}, "
            f"not s3://{request.bucket}/{request.key}"
        )
    if record.crawl is not None and request.position is not None:
        raise BadEventError(f"run {record.run_id} is a crawl: it resumes where it stopped")
    at = container.clock.now_ms()
    queued = set(store.queued_chains(record.run_id)) if record.listing else set()
    chains = [store.load_checkpoint(record.run_id, c) for c in store.chain_ids(record.run_id)]
    if all(v.checkpoint.status is RunStatus.DONE for v in chains):
        raise BadEventError(
            f"run {record.run_id} is done: a finished run is never redone; "
            f"start s3://{record.bucket}/{record.key} again for a new run"
        )
    live = [
        v.checkpoint for v in chains if v.checkpoint.live(at, container.settings.stall_after_ms)
    ]
    if live:
        cp = live[0]
        raise BadEventError(
            f"run {record.run_id} is live (chain {cp.chain} at leg {cp.leg}, position "
            f"{cp.position}); cancel it or wait for it to stop before resuming"
        )
    position = request.position
    if position is not None and len(chains) > 1:
        raise BadEventError(
            f"run {record.run_id} has {len(chains)} chains: it resumes each from its "
            "checkpoint (leave out the position)"
        )
    first = chains[0].checkpoint
    if position is not None and position > first.position:
        raise BadEventError(
            f"position {position} is past run {record.run_id}'s checkpoint {first.position}: "
            "tasks in between would never be processed"
        )
    if position is not None and position < record.start_position:
        raise BadEventError(
            f"position {position} is before run {record.run_id}'s start {record.start_position}"
        )
    store.clear_cancel(record.run_id)
    store.clear_completion(record.run_id)
    store.mark_active(record.run_id, at)  # so a resume that dies part-way is swept
    resumed: list[Checkpoint] = []
    for current in chains:
        cp = current.checkpoint
        if cp.status is RunStatus.DONE or (cp.chain in queued and waiting(cp)):
            continue  # a queued chain is started by the queue, within the run's chains
        rewound = cp if position is None else rewind(store, cp, position)
        resumed.append(store.swap(current, rewound.resume(at_ms=at)).checkpoint)
        store.clear_chain_done(record.run_id, cp.chain)
    # Again after the swaps: a leg completing the run meanwhile either read a chain as
    # resumed, or wrote its summary before this clears it; and a marker it read before
    # is not this one, so it leaves it (docs/design.md, completion).
    store.clear_completion(record.run_id)
    store.mark_active(record.run_id, at + 1)
    notes = []
    for cp in resumed:
        log.info(
            "run %s chain %s resumed at %s as leg %s", cp.run_id, cp.chain, cp.position, cp.leg
        )
        note = _hand_off(container, record, cp, context)
        if note:
            notes.append(note)
    return StartResult(
        record.run_id,
        "resumed",
        record.total,
        first.position if position is None else position,
        first.leg + 1,
        "; ".join(notes) or None,
        chains=record.chains,
    )


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
        batch_end=position,  # nothing past it is left to protect: the next leg plans anew
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
        pinned = "" if is_scheduled(nonce) else etag  # every copy of a schedule is one run
        run_id = derive_run_id(request.bucket, request.key, pinned, nonce)
        try:
            record = store.load_run(run_id)
        except RunNotFoundError:
            return _Fresh(run_id, note, None)
        if request.source == "s3":
            log.info(
                "run %s already exists: duplicate S3 notification (or a start that died)", run_id
            )
            return _Fresh(run_id, note, record)
        summary = store.load_summary(run_id)
        if summary is None and _half_made(store, record):
            # A start that died after run.json (or whose answer to it was lost): finish it,
            # as an upload's start does; it is no finished run to refuse.
            return _Fresh(run_id, note, record)
        if summary is None:
            return _Resume(
                StartRequest(request.bucket, request.key, request.position, etag, run_id)
            )
        note = f"run {run_id} of this list is {summary['status']}; this start is a new run"
    raise AssertionError("the manual generations never end")


def _half_made(store: RunStore, record: RunRecord) -> bool:
    """Whether the run's start died (or lost an answer) before it made every checkpoint."""
    if record.version < LAYOUT_VERSION:
        return not store.has_checkpoint(record.run_id, FIRST_CHAIN)
    made = set(store.chain_ids(record.run_id))
    first = ranges(record.start_position, record.total, record.chains)
    return not {f"{number:04d}" for number in range(len(first))} <= made


def _manual_nonces() -> Iterator[str]:
    yield ""
    for generation in count(2):
        yield f"#{generation}"


def _new_record(
    container: Container,
    store: RunStore,
    *,
    request: StartRequest,
    etag: str,
    run_id: str,
    chains: int,
) -> RunRecord:
    settings = container.settings
    if request.crawl is not None or request.key.endswith(CRAWL_SUFFIX):
        return _new_crawl_record(
            container, store, request=request, etag=etag, run_id=run_id, chains=chains
        )
    if request.prefix is not None or request.key.endswith(SPEC_SUFFIX):
        return _new_prefix_record(
            container, store, request=request, etag=etag, run_id=run_id, chains=chains
        )
    try:
        tasks, _ = load_task_list(
            container.cache, container.s3, request.bucket, request.key, etag, settings=settings
        )
    except TaskListError as exc:
        _record_unreadable(container, store, request=request, etag=etag, run_id=run_id, exc=exc)
        raise
    position = request.position or 0
    if position > len(tasks):
        raise BadEventError(
            f"position {position} is past the end of the task list ({len(tasks)} tasks)"
        )
    return RunRecord(
        run_id=run_id,
        bucket=request.bucket,
        key=request.key,
        etag=etag,
        total=len(tasks),
        start_position=position,
        created_ms=container.clock.now_ms(),
        source=request.source,
        config=_config(settings, settings.processor),
        version=LAYOUT_VERSION,
        chains=max(1, min(chains, len(tasks) - position)),
    )


def _config(settings: Settings, processor: str) -> dict[str, Any]:
    """What a run pins at its start, whatever its source: its settings, and the prices its
    cost is reported at (a run priced at a later deploy's prices would be a guess)."""
    return {
        "batch_size": settings.batch_size,
        "concurrency": settings.concurrency,
        "processor": processor,
        "max_legs": settings.max_legs,
        "stall_after_ms": settings.stall_after_ms,
        "pricing": pricing_config(
            architecture(settings.architecture), parse_overrides(settings.prices)
        ),
    }


def _new_prefix_record(
    container: Container,
    store: RunStore,
    *,
    request: StartRequest,
    etag: str,
    run_id: str,
    chains: int,
) -> RunRecord:
    """A prefix run's record: what it lists, pinned to this moment (objects modified later
    are not in it). A spec that cannot be used still gets a run, failed with the reason."""
    settings = container.settings
    source = request.prefix
    if request.position:
        raise BadEventError(f"{request.key} is a prefix spec: a prefix run has no position")
    try:
        if source is None:
            body = container.s3.get(request.bucket, request.key, if_match=etag).body
            source = parse_spec(body, request.key)
        refuse_loops(source.prefix, settings.tasks_prefix, settings.results_prefix)
    except ValueError as exc:
        error = TaskListError(str(exc))
        _record_unreadable(container, store, request=request, etag=etag, run_id=run_id, exc=error)
        raise error from None
    at = container.clock.now_ms()
    processor = source.processor
    if processor is None:
        processor = settings.processor if settings.processor != DEFAULT_PROCESSOR else "presign"
    return RunRecord(
        run_id=run_id,
        bucket=request.bucket,
        key=request.key,
        etag=etag,
        total=0,
        start_position=0,
        created_ms=at,
        source=request.source,
        config=_config(settings, processor),
        version=LAYOUT_VERSION,
        chains=max(1, chains),
        listing={
            **source.as_dict(),
            "processor": processor,
            "presign_s": source.presign_s or settings.presign_s or DEFAULT_PRESIGN_EXPIRES_S,
            "cutoff_ms": at,
        },
    )


def _new_crawl_record(
    container: Container,
    store: RunStore,
    *,
    request: StartRequest,
    etag: str,
    run_id: str,
    chains: int,
) -> RunRecord:
    """A crawl's record: its spec, pinned. A spec that cannot be used still gets a run,
    failed with the reason, as an unreadable list does."""
    settings = container.settings
    spec = request.crawl
    if request.position:
        raise BadEventError(f"{request.key} is a crawl spec: a crawl has no position")
    if spec is None:
        try:
            body = container.s3.get(request.bucket, request.key, if_match=etag).body
            spec = parse_crawl_file(body, request.key)
        except ValueError as exc:
            error = TaskListError(str(exc))
            _record_unreadable(
                container, store, request=request, etag=etag, run_id=run_id, exc=error
            )
            raise error from None
    return RunRecord(
        run_id=run_id,
        bucket=request.bucket,
        key=request.key,
        etag=etag,
        total=0,
        start_position=0,
        created_ms=container.clock.now_ms(),
        source=request.source,
        config=_config(settings, spec.processor or settings.processor),
        version=LAYOUT_VERSION,
        chains=max(1, min(chains, MAX_CRAWL_CHAINS)),
        crawl=spec.as_dict(),
    )


def first_checkpoints(record: RunRecord, at_ms: int) -> list[Checkpoint]:
    """What a start creates: a checkpoint per chain over contiguous ranges of a list, or a
    prefix run's lister (its work chains come with the listing)."""
    if record.listing is not None:
        return [lister_checkpoint(record, at_ms)]
    if record.crawl is not None:
        return [
            Checkpoint(
                run_id=record.run_id,
                total=0,
                position=number * STRIDE,
                chain=f"{number:04d}",
                start=number * STRIDE,
                end=number * STRIDE,
                handed_off_ms=at_ms,
                heartbeat_ms=at_ms,
                frontier=empty_frontier(),
            )
            for number in range(record.chains)
        ]
    return [
        Checkpoint(
            run_id=record.run_id,
            total=record.total,
            position=first,
            chain=f"{number:04d}" if record.version >= LAYOUT_VERSION else FIRST_CHAIN,
            start=first,
            end=end if record.chains > 1 else -1,
            handed_off_ms=at_ms,
            heartbeat_ms=at_ms,
        )
        for number, (first, end) in enumerate(
            ranges(record.start_position, record.total, record.chains)
        )
    ]


def ranges(start: int, total: int, chains: int) -> list[tuple[int, int]]:
    """[start, total) in `chains` contiguous ranges whose sizes differ by at most one."""
    size, extra = divmod(total - start, chains)
    bounds = [start]
    for chain in range(chains):
        bounds.append(bounds[-1] + size + (chain < extra))
    return list(pairwise(bounds))


def _begin(
    container: Container,
    store: RunStore,
    record: RunRecord,
    context: LambdaContext,
    note: str | None,
    *,
    meter: Meter,
) -> StartResult:
    """Create each chain's checkpoint (the missing ones, after a start that died), then
    invoke the leg 0 of each chain this start created.

    The start's own usage goes in chain 0000's first checkpoint, with the creates, the
    source marker and the invokes that follow it counted ahead (a start whose chain
    0000 already exists, a duplicate, records nothing)."""
    at = container.clock.now_ms()
    store.mark_active(record.run_id, at)
    fresh = first_checkpoints(record, at)
    ahead = Usage(s3_put=len(fresh) + 1, invokes=len(fresh))
    fresh[0] = with_usage(fresh[0], meter.pending(ahead), at)
    created = [v.checkpoint for v in container.io.map(store.create_checkpoint, fresh) if v]
    # Only now is the run whole: `baton submit` finds it by this marker.
    store.mark_source(record.run_id, record.key, record.etag)
    if not created:
        return StartResult(
            record.run_id, "duplicate", record.total, record.start_position, 0, chains=record.chains
        )
    if record.crawl is not None:
        log.info(
            "run %s started: crawling from %s",
            record.run_id,
            ", ".join(record.crawl["seeds"][:3]),
        )
    elif record.listing is not None:
        log.info(
            "run %s started: listing s3://%s/%s, %s chains",
            record.run_id,
            record.bucket,
            record.listing["prefix"],
            record.chains,
        )
    else:
        log.info(
            "run %s started: %s tasks from s3://%s/%s at position %s, %s chains",
            record.run_id,
            record.total,
            record.bucket,
            record.key,
            record.start_position,
            record.chains,
        )
    invoked = container.io.map(lambda cp: _hand_off(container, record, cp, context), created)
    lost = [note for note in invoked if note]
    handoff_note = None
    if lost:
        handoff_note = (
            lost[0]
            if len(lost) == 1
            else f"{len(lost)} legs could not be invoked; the sweep starts them"
        )
    return StartResult(
        record.run_id,
        "started",
        record.total,
        record.start_position,
        0,
        "; ".join(n for n in (note, handoff_note) if n) or None,
        chains=record.chains,
    )


def _hand_off(
    container: Container, record: RunRecord, cp: Checkpoint, context: LambdaContext
) -> str | None:
    event = LegEvent(
        record.run_id, record.bucket, record.key, record.etag, cp.position, cp.leg, cp.chain
    )
    try:
        container.invoker.invoke_async(context.invoked_function_arn, event.payload())
    except HandoffError as exc:
        log.error(
            "run %s chain %s: invoking leg %s failed (%s); left to the sweep",
            cp.run_id,
            cp.chain,
            cp.leg,
            exc,
        )
        return f"leg {cp.leg} of chain {cp.chain} could not be invoked ({exc}); the sweep starts it"
    return None


def scheduled(request: StartRequest, source: Listed) -> StartRequest:
    """An upload the schedule tick made is named by its schedule, not its S3 sequencer: a
    second copy of one schedule is this same run's start (a duplicate), never a second run.

    The metadata is read from the object at the key now: if that is not the notified
    version (its ETag differs), it is another upload's, and this upload is its own run."""
    schedule_id = source.metadata.get(SCHEDULE_METADATA)
    if request.source != "s3" or schedule_id is None:
        return request
    if request.etag and quote_etag(source.etag) != quote_etag(request.etag):
        log.info(
            "s3://%s/%s was replaced since this notification (ETag %s, now %s): its "
            "%s=%s is the newer object's; this upload is a run of its own",
            request.bucket,
            request.key,
            request.etag,
            source.etag,
            SCHEDULE_METADATA,
            schedule_id,
        )
        return request
    if not SCHEDULE_ID.match(schedule_id):
        log.warning("ignoring metadata %s=%r: not a schedule id", SCHEDULE_METADATA, schedule_id)
        return request
    return replace(request, nonce=run_nonce(schedule_id))


def _chains(
    container: Container, request: StartRequest, metadata: dict[str, str]
) -> tuple[int, str | None]:
    """How many chains: the payload's, else the upload's metadata, else the setting (for a
    prefix run: how many work chains run at once)."""
    limit = container.settings.max_chains
    if request.chains is not None:
        if request.chains > limit:
            raise BadEventError(
                f"chains {request.chains} is more than BATON_MAX_CHAINS ({limit}); "
                "raise it with the function's reserved concurrency"
            )
        return request.chains, None
    raw = metadata.get(CHAINS_METADATA)
    if raw is None:
        return container.settings.chains, None
    try:
        asked = int(raw)
    except ValueError:
        return container.settings.chains, f"ignored metadata {CHAINS_METADATA}={raw!r}"
    if asked > limit:
        return limit, f"{CHAINS_METADATA}={asked} capped at BATON_MAX_CHAINS ({limit})"
    return max(1, asked), None


def _record_unreadable(
    container: Container,
    store: RunStore,
    *,
    request: StartRequest,
    etag: str,
    run_id: str,
    exc: TaskListError,
) -> None:
    """A list that cannot be read still gets a run, `failed` with the reason (and its
    completion notice), so `baton runs` shows what happened to the upload."""
    at = container.clock.now_ms()
    record = RunRecord(
        run_id, request.bucket, request.key, etag, 0, 0, at, request.source, version=LAYOUT_VERSION
    )
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
        store.mark_chain_done(run_id, final.chain)
        try_complete(
            store,
            record,
            container.notifier,
            at,
            container.settings.presign_s,
            architecture=container.settings.architecture,
        )
    store.mark_source(run_id, request.key, etag)
    log.error("run %s failed: %s", run_id, exc)


def _source_object(container: Container, bucket: str, key: str) -> Listed:
    head = container.s3.head(bucket, key)
    if head is None:
        raise TaskListError(f"task list s3://{bucket}/{key} does not exist")
    return head
