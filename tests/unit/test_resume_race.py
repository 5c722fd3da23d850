"""A start resuming a stopped run while a leg completes it: the run ends once, and stays
watched. (The simulator found the race at seed 5672; these pin each side of the fix.)"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import put_tasks
from tests.fakes import Killed
from tests.unit.harness import Harness, settings
from worker.checkpoint import Checkpoint, RunStatus
from worker.completion import try_complete
from worker.events import StartRequest, parse_event
from worker.start import resume_run
from worker.store import RunStore, Versioned

URLS = [f"https://example.com/{i}" for i in range(23)]
KEY = "tasks/list.jsonl"


@pytest.fixture
def h(s3: Any, bucket: str) -> Harness:
    put_tasks(s3, bucket, KEY, URLS, jsonl=True)
    return Harness(s3, bucket, settings(stall_after_ms=0), timeout_ms=1_600)


def stopped_before_completion(h: Harness) -> str:
    """A run cancelled in its first leg, caught just before a leg writes its summary: its
    one chain has ended, and the run is still marked active."""
    run_id = h.invoke({"bucket": h.bucket, "key": KEY})["results"][0]["run_id"]
    h.store.request_cancel(run_id)
    h.drive(h.invoker.pop())
    assert h.store.load_checkpoint(run_id).checkpoint.status is RunStatus.CANCELLED
    h.store.clear_completion(run_id)
    h.store.mark_active(run_id, h.clock.now_ms())
    h.notifier.sent.clear()
    h.invoker.calls.clear()
    return run_id


class ResumedAsTheSummaryLands(RunStore):
    """A start resumes the chain, and marks the run active, right after the summary lands."""

    def create_summary(self, run_id: str, summary: dict[str, Any]) -> bool:
        won = super().create_summary(run_id, summary)
        current = self.load_checkpoint(run_id)
        self.swap(current, current.checkpoint.resume(at_ms=current.checkpoint.started_ms + 1))
        self.mark_active(run_id, 1)
        return won


class CompletedAsAChainIsSwapped(RunStore):
    """A leg that read the chains just before writes the summary right after a swap."""

    def swap(self, current: Versioned, new: Checkpoint) -> Versioned:
        swapped = super().swap(current, new)
        self.create_summary(new.run_id, {"status": "cancelled"})
        return swapped


def test_a_completion_that_finds_a_chain_resumed_after_its_summary_takes_it_back(
    h: Harness,
) -> None:
    run_id = stopped_before_completion(h)
    racing = ResumedAsTheSummaryLands(h.store.objects, h.bucket, h.store.prefix)
    record = h.store.load_run(run_id)
    assert try_complete(racing, record, h.notifier, h.clock.now_ms()) is None
    assert h.store.load_summary(run_id) is None
    assert h.notifier.sent == []


def test_a_completion_keeps_the_active_marker_a_resume_wrote_since_it_read_it(
    h: Harness,
) -> None:
    run_id = stopped_before_completion(h)
    racing = ResumedAsTheSummaryLands(h.store.objects, h.bucket, h.store.prefix)
    try_complete(racing, h.store.load_run(run_id), h.notifier, h.clock.now_ms())
    assert list(h.store.active_runs()) == [run_id]


def test_a_completion_with_no_resume_meanwhile_drops_the_active_marker(h: Harness) -> None:
    run_id = stopped_before_completion(h)
    summary = try_complete(h.store, h.store.load_run(run_id), h.notifier, h.clock.now_ms())
    assert summary is not None
    assert summary["status"] == "cancelled"
    assert list(h.store.active_runs()) == []


def test_a_resume_clears_a_summary_written_after_its_swaps(h: Harness) -> None:
    run_id = stopped_before_completion(h)
    racing = CompletedAsAChainIsSwapped(h.store.objects, h.bucket, h.store.prefix)
    payload = {"bucket": h.bucket, "key": KEY, "run_id": run_id}
    (request,) = parse_event(payload, h.settings.tasks_prefix, h.settings.results_prefix)
    assert isinstance(request, StartRequest)
    resume_run(h.container, racing, request, h.context())
    assert h.store.load_summary(run_id) is None
    assert list(h.store.active_runs()) == [run_id]
    h.drive(h.invoker.pop())
    assert h.summary(run_id)["status"] == "done"


class DiesAfterItsFirstSwap(RunStore):
    """A start that dies (its process killed) right after swapping its first chain."""

    def clear_chain_done(self, run_id: str, chain: str) -> None:
        raise Killed("the start died after its first swap")


def test_a_resume_that_dies_after_its_swaps_leaves_the_run_watched(h: Harness) -> None:
    run_id = stopped_before_completion(h)
    h.store.mark_inactive(run_id, h.store.active_since(run_id))  # as after a completion
    dying = DiesAfterItsFirstSwap(h.store.objects, h.bucket, h.store.prefix)
    payload = {"bucket": h.bucket, "key": KEY, "run_id": run_id}
    (request,) = parse_event(payload, h.settings.tasks_prefix, h.settings.results_prefix)
    assert isinstance(request, StartRequest)
    with pytest.raises(Killed):
        resume_run(h.container, dying, request, h.context())
    assert h.store.load_checkpoint(run_id).checkpoint.status is RunStatus.RUNNING
    assert list(h.store.active_runs()) == [run_id]


def test_a_summary_left_by_a_completion_that_died_before_taking_it_back_is_replaced(
    h: Harness,
) -> None:
    """The resume cleared the completion; a leg that had read the chains before wrote its
    summary (cancelled) after, then died. The resumed run's own completion replaces it."""
    run_id = stopped_before_completion(h)
    stale = {"run_id": run_id, "status": "cancelled", "processed": 0, "ok": 0, "failed": 0}
    h.invoke({"bucket": h.bucket, "key": KEY, "run_id": run_id})
    h.store.create_summary(run_id, stale)
    h.drive(h.invoker.pop())
    summary = h.summary(run_id)
    assert (summary["status"], summary["processed"]) == ("done", len(URLS))
    assert [n["status"] for n in h.notifier.sent] == ["done"]
