"""The sweep tick: find runs whose chain stopped without finishing, and resume them.

A chain stops silently when a hand-off is lost or a leg dies after Lambda's
retries ran out. The sweep re-sends the leg payload the checkpoint asks for;
it claims nothing itself, so a late original and the re-sent leg still race
through the same checkpoint CAS and only one of them continues.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from worker.container import Container
from worker.events import LegEvent
from worker.exceptions import ConflictError, RunNotFoundError
from worker.handoff import HandoffError
from worker.store import RunStore
from worker.summary import summarize

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
            current = store.load_checkpoint(run_id)
        except RunNotFoundError:
            if _starting(store, run_id, at, settings.stall_after_ms):
                continue  # marked active before its checkpoint exists: a start under way
            store.mark_inactive(run_id)
            result.tidied.append(run_id)
            continue
        cp = current.checkpoint
        if cp.finished:
            if store.load_summary(run_id) is None:
                # The finishing leg lost the answer to its last CAS, or died before writing
                # the summary: the run still gets one, from its final checkpoint.
                store.put_summary(run_id, summarize(cp, store.load_run(run_id), store))
                log.warning("sweep wrote the missing summary of %s run %s", cp.status, run_id)
            store.mark_inactive(run_id)
            result.tidied.append(run_id)
            continue
        if not cp.stalled(at, settings.stall_after_ms):
            continue
        try:
            store.swap(current, cp.swept(at_ms=at))
        except ConflictError:
            continue  # the run moved on while we looked: it is alive
        record = store.load_run(run_id)
        event = LegEvent(run_id, record.bucket, record.key, record.etag, cp.position, cp.leg)
        try:
            container.invoker.invoke_async(function, event.payload())
        except HandoffError as exc:
            result.errors.append(f"{run_id}: {exc}")
            continue
        log.warning("sweep resumed run %s at leg %s, position %s", run_id, cp.leg, cp.position)
        result.resumed.append(run_id)
    return result


def _starting(store: RunStore, run_id: str, at: int, stall_after_ms: int) -> bool:
    """A run with run.json but no checkpoint yet: leave it, or its chain has no sweep."""
    try:
        record = store.load_run(run_id)
    except RunNotFoundError:
        return False
    if at - record.created_ms > stall_after_ms:
        log.warning(
            "run %s was created %s ms ago and never started: redeliver its start event",
            run_id,
            at - record.created_ms,
        )
    return True
