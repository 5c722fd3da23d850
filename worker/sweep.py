"""The sweep tick: find chains that stopped without finishing, and resume them.

A chain stops silently when a hand-off is lost, a leg dies after Lambda's
retries ran out, or an invoke waited in Lambda's queue past its maximum age.
The sweep re-sends the leg payload the checkpoint asks for; it claims nothing
itself, so a late original and the re-sent leg still race through the same
checkpoint CAS and only one of them continues. It also finishes what a dead leg
left half done: a range split off but never created, a chain finished but not
marked, a run complete but without its summary, manifest or notice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from worker.checkpoint import Checkpoint, RunStatus
from worker.completion import repair
from worker.container import Container
from worker.events import FIRST_CHAIN, LegEvent
from worker.exceptions import ConflictError, RunNotFoundError
from worker.handoff import HandoffError
from worker.listing import chain_state, dequeue, waiting
from worker.start import first_checkpoints
from worker.steal import ensure_split_ranges
from worker.store import LAYOUT_VERSION, RunRecord, RunStore

log = logging.getLogger(__name__)


@dataclass
class SweepResult:
    checked: int = 0
    resumed: list[str] = field(default_factory=list)
    tidied: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def sweep(container: Container, bucket: str, function: str) -> SweepResult:
    settings = container.settings
    store = RunStore(container.s3, bucket, settings.results_prefix)
    result = SweepResult()
    at = container.clock.now_ms()
    for run_id in list(store.active_runs()):
        result.checked += 1
        try:
            record = store.load_run(run_id)
        except RunNotFoundError:
            since = store.active_since(run_id)
            if since and at - since < settings.stall_after_ms:
                continue  # a start under way marks the run before it writes run.json
            store.mark_inactive(run_id, since)
            result.tidied.append(run_id)
            continue
        chains = store.chain_ids(run_id)
        if not _started(store, record, chains, at, settings.stall_after_ms):
            continue
        done = store.done_chains(run_id) if record.version >= LAYOUT_VERSION else set()
        queued = set(store.queued_chains(run_id)) if record.listing else set()
        finished = 0
        for chain in chains:
            if chain in done:
                finished += 1
                continue
            finished += _sweep_chain(
                container,
                store,
                record=record,
                chain=chain,
                function=function,
                at=at,
                result=result,
                queued=chain in queued,
            )
        if queued:
            _start_queued(container, store, record, function=function, at=at, result=result)
        if finished == len(chains) and record.crawl is not None and len(chains) > 1:
            finished -= _wake_crawl_chains(
                container, store, record, function=function, at=at, result=result
            )
        if finished == len(chains):
            outcome = repair(
                store,
                record,
                container.notifier,
                at,
                presign_s=settings.presign_s,
                resend_after_ms=settings.stall_after_ms,
                architecture=settings.architecture,
                io=container.io,
            )
            if outcome is not None:
                result.tidied.append(run_id)
                log.info("sweep: run %s %s", run_id, outcome)
    return result


def _sweep_chain(
    container: Container,
    store: RunStore,
    *,
    record: RunRecord,
    chain: str,
    function: str,
    at: int,
    result: SweepResult,
    queued: bool = False,
) -> int:
    """Resume one chain if it stalled; 1 if it has finished. A queued chain of a prefix
    run is not resumed here: it waits for a free slot (`_start_queued`)."""
    try:
        current = store.load_checkpoint(record.run_id, chain)
    except RunNotFoundError:
        return 0
    cp = current.checkpoint
    for orphan in ensure_split_ranges(store, cp, at):
        _invoke(container, record, orphan, function, result)
    if cp.finished:
        if record.version >= LAYOUT_VERSION:
            store.mark_chain_done(record.run_id, chain)  # its leg died between CAS and marker
        return 1
    if (queued and waiting(cp)) or not cp.stalled(at, container.settings.stall_after_ms):
        return 0
    try:
        store.swap(current, cp.swept(at_ms=at))
    except ConflictError:
        return 0  # the chain moved on while we looked: it is alive
    if _invoke(container, record, cp, function, result):
        log.warning(
            "sweep resumed run %s chain %s at leg %s, position %s",
            record.run_id,
            chain,
            cp.leg,
            cp.position,
        )
    return 0


def _wake_crawl_chains(
    container: Container,
    store: RunStore,
    record: RunRecord,
    *,
    function: str,
    at: int,
    result: SweepResult,
) -> int:
    """Every chain of a crawl ended done, yet links wait in some inboxes (their sender died
    between its CAS and waking the chain): resume those chains. How many were woken. A
    crawl that was cancelled (or failed) ends as it is."""
    ended = store.load_chains(record.run_id)
    if any(cp.status is not RunStatus.DONE for cp in ended):
        return 0
    woken = 0
    for chain in sorted(store.chains_with_mail(record.run_id)):
        try:
            current = store.load_checkpoint(record.run_id, chain)
        except RunNotFoundError:
            continue
        if current.checkpoint.status is not RunStatus.DONE:
            continue
        try:
            resumed = store.swap(current, current.checkpoint.resume(at_ms=at))
        except ConflictError:
            continue
        store.clear_chain_done(record.run_id, chain)
        if _invoke(container, record, resumed.checkpoint, function, result):
            log.warning("sweep woke crawl chain %s of run %s for its inbox", chain, record.run_id)
        woken += 1
    return woken


def _invoke(
    container: Container, record: RunRecord, cp: Checkpoint, function: str, result: SweepResult
) -> bool:
    event = LegEvent(
        record.run_id, record.bucket, record.key, record.etag, cp.position, cp.leg, cp.chain
    )
    try:
        container.invoker.invoke_async(function, event.payload())
    except HandoffError as exc:
        result.errors.append(f"{record.run_id}/{cp.chain}: {exc}")
        return False
    result.resumed.append(
        record.run_id if cp.chain == FIRST_CHAIN else f"{record.run_id}/{cp.chain}"
    )
    return True


def _start_queued(
    container: Container,
    store: RunStore,
    record: RunRecord,
    *,
    function: str,
    at: int,
    result: SweepResult,
) -> None:
    """Start queued chains of a prefix run while fewer than its `chains` run: the last
    resort when every work chain ended before a chain was queued."""
    state = chain_state(store, record.run_id)
    room = record.chains - state.live
    if room <= 0 or not state.queued:
        return
    for cp in dequeue(store, record.run_id, state.queued[:room], at):
        if _invoke(container, record, cp, function, result):
            log.warning("sweep started queued chain %s of run %s", cp.chain, record.run_id)


def _started(
    store: RunStore, record: RunRecord, chains: list[str], at: int, stall_after_ms: int
) -> bool:
    """Whether the run's start made its checkpoints; one that died half-way long ago is
    finished here (the missing checkpoints are created; the next tick resumes them)."""
    expected = len(first_checkpoints(record, 0))
    if record.version < LAYOUT_VERSION:
        chains = [c for c in chains if store.has_checkpoint(record.run_id, c)]
        expected = 1
    if len(chains) >= expected:
        return True
    if at - record.created_ms <= stall_after_ms:
        return False  # a start under way
    log.warning("run %s was created but not all its chains: creating them", record.run_id)
    for checkpoint in first_checkpoints(record, 0):
        store.create_checkpoint(checkpoint)
    return False
