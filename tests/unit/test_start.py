"""Manual starts and resumes: at a position, never past the checkpoint, never a fork."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import put_tasks
from tests.unit.harness import Harness, settings
from worker.store import RunRecord, RunStore

URLS = [f"https://example.com/{i}" for i in range(23)]


@pytest.fixture
def h(s3: Any, bucket: str) -> Harness:
    put_tasks(s3, bucket, "tasks/list.jsonl", URLS, jsonl=True)
    return Harness(s3, bucket, settings(stall_after_ms=0), timeout_ms=1_600)


def manual(h: Harness, position: int, **extra: Any) -> dict[str, Any]:
    return h.invoke({"bucket": h.bucket, "key": "tasks/list.jsonl", "position": position, **extra})


def test_start_manual_at_a_position_processes_only_the_rest(h: Harness) -> None:
    answer = manual(h, 15)["results"][0]
    answers = h.drive(h.invoker.pop())
    run_id = answer["run_id"]
    assert answer["position"] == 15
    assert sorted(h.result_indices(run_id)) == list(range(15, 23))
    summary = h.summary(run_id)
    assert (summary["start_position"], summary["processed"], summary["status"]) == (15, 8, "done")
    assert all(a["ok"] for a in answers)


def test_start_manual_past_the_end_is_refused(h: Harness) -> None:
    answer = manual(h, 24)
    assert answer["ok"] is False
    assert "past the end of the task list (23 tasks)" in answer["error"]
    assert list(h.store.run_ids()) == []


def test_start_manual_of_a_missing_list_is_refused(h: Harness) -> None:
    answer = h.invoke({"bucket": h.bucket, "key": "tasks/nope.json", "position": 0})
    assert answer == {
        "ok": False,
        "error_type": "TaskListError",
        "error": f"task list s3://{h.bucket}/tasks/nope.json does not exist",
    }


def test_start_manual_again_while_the_run_is_live_is_refused(s3: Any, bucket: str) -> None:
    put_tasks(s3, bucket, "tasks/list.jsonl", URLS, jsonl=True)
    h = Harness(s3, bucket, settings(stall_after_ms=60_000), timeout_ms=1_600)
    manual(h, 0)
    answer = manual(h, 0)
    assert answer["ok"] is False
    assert "is live" in answer["error"]
    assert len(h.invoker.calls) == 1


def test_resume_a_stalled_run_rewinds_without_duplicates(h: Harness) -> None:
    first = manual(h, 0)["results"][0]
    h.invoke(h.invoker.pop())
    h.invoker.pop()  # lost hand-off: the run stalls at position 10
    answer = manual(h, 7, run_id=first["run_id"])["results"][0]
    h.drive(h.invoker.pop())
    assert answer["run_id"] == first["run_id"]
    assert sorted(h.result_indices(first["run_id"])) == list(range(23))
    summary = h.summary(first["run_id"])
    assert (summary["ok"], summary["processed"]) == (23, 23)


def test_resume_rewound_plans_anew_from_its_position(h: Harness) -> None:
    """The plan of the leg before the rewind protects nothing (its results past the position
    are gone): kept, the next leg would start it all at once, and a death of that leg would
    put all of it in one-at-a-time careful mode."""
    first = manual(h, 0)["results"][0]
    h.invoke(h.invoker.pop())
    h.invoker.pop()  # lost hand-off: the run stalls past position 3
    assert h.checkpoint(first["run_id"])["batch_end"] > 3
    manual(h, 3, run_id=first["run_id"])
    cp = h.checkpoint(first["run_id"])
    assert (cp["position"], cp["batch_end"]) == (3, 3)


def test_resume_past_the_checkpoint_is_refused(h: Harness) -> None:
    first = manual(h, 0)["results"][0]
    h.invoker.pop()
    answer = manual(h, 20, run_id=first["run_id"])
    assert answer["ok"] is False
    assert "past run" in answer["error"]
    assert "would never be processed" in answer["error"]


def test_resume_with_a_run_id_of_another_list_is_refused(h: Harness) -> None:
    first = manual(h, 0)["results"][0]
    put_tasks(h.s3, h.bucket, "tasks/other.json", URLS)
    answer = h.invoke(
        {"bucket": h.bucket, "key": "tasks/other.json", "position": 0, "run_id": first["run_id"]}
    )
    assert answer["ok"] is False
    assert "is for s3://" in answer["error"]


def test_resume_an_unknown_run_is_refused(h: Harness) -> None:
    answer = manual(h, 0, run_id="nope-000000000000")
    assert answer == {
        "ok": False,
        "error_type": "RunNotFoundError",
        "error": f"no run 'nope-000000000000' in s3://{h.bucket}/runs/",
    }


def test_start_manual_of_a_finished_list_starts_a_new_run_and_says_so(h: Harness) -> None:
    first = manual(h, 0)["results"][0]
    h.drive(h.invoker.pop())
    done_results = sorted(h.store.result_keys(first["run_id"]))

    again = manual(h, 0)["results"][0]
    h.drive(h.invoker.pop())

    assert again["outcome"] == "started"
    assert again["run_id"] != first["run_id"]
    assert f"run {first['run_id']} of this list is done" in again["note"]
    assert sorted(h.store.result_keys(first["run_id"])) == done_results
    assert h.summary(again["run_id"])["ok"] == 23


def test_resume_of_a_done_run_is_refused_and_changes_nothing(h: Harness) -> None:
    first = manual(h, 0)["results"][0]
    h.drive(h.invoker.pop())
    before = sorted(h.store.result_keys(first["run_id"]))

    answer = manual(h, 5, run_id=first["run_id"])

    assert answer["ok"] is False
    assert "is done: a finished run is never redone" in answer["error"]
    assert sorted(h.store.result_keys(first["run_id"])) == before


def test_resume_of_a_cancelled_run_clears_the_marker_and_finishes(h: Harness) -> None:
    first = manual(h, 0)["results"][0]
    h.store.request_cancel(first["run_id"])
    h.drive(h.invoker.pop())
    assert h.checkpoint(first["run_id"])["status"] == "cancelled"

    answer = manual(h, 0, run_id=first["run_id"])["results"][0]
    h.drive(h.invoker.pop())

    assert answer["outcome"] == "resumed"
    assert not h.store.cancel_requested(first["run_id"])
    assert h.summary(first["run_id"])["status"] == "done"
    assert sorted(h.result_indices(first["run_id"])) == list(range(23))


def test_resume_refused_keeps_results_and_the_cancel_marker(h: Harness) -> None:
    first = manual(h, 0)["results"][0]
    h.invoke(h.invoker.pop())
    h.invoker.pop()  # lost hand-off: the run stalls at position 10
    h.store.request_cancel(first["run_id"])
    before = sorted(h.store.result_keys(first["run_id"]))

    answer = manual(h, 12, run_id=first["run_id"])

    assert answer["ok"] is False
    assert sorted(h.store.result_keys(first["run_id"])) == before
    assert h.store.cancel_requested(first["run_id"])


def test_start_answers_at_once_and_hands_leg_0_off(h: Harness) -> None:
    answer = manual(h, 0)["results"][0]
    assert (answer["action"], answer["outcome"], answer["total"], answer["leg"]) == (
        "started",
        "started",
        23,
        0,
    )
    [(_, leg)] = h.invoker.calls
    assert (leg["run_id"], leg["leg"], leg["position"]) == (answer["run_id"], 0, 0)
    assert list(h.store.result_keys(answer["run_id"])) == []


def _dies_after_run_json(monkeypatch: pytest.MonkeyPatch) -> None:
    create = RunStore.create_run

    def dies(self: RunStore, record: RunRecord) -> bool:
        create(self, record)
        raise RuntimeError("killed after run.json")

    monkeypatch.setattr(RunStore, "create_run", dies)


def test_start_manual_that_died_after_run_json_is_finished_by_its_retry(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The start wrote run.json and died before its checkpoints (or run.json's answer was
    # lost and botocore's retry got a 412): Lambda's retry of the same payload must finish
    # the start, as an upload's does, not take the run for a finished one (the simulator's
    # manual-start worlds found it refused "run ... is done" and the run stranded).
    with monkeypatch.context() as patched:
        _dies_after_run_json(patched)
        with pytest.raises(RuntimeError):
            h.invoke({"bucket": h.bucket, "key": "tasks/list.jsonl", "chains": 3})
    run_id = next(h.store.run_ids())
    assert h.store.chain_ids(run_id) == []
    answer = h.invoke({"bucket": h.bucket, "key": "tasks/list.jsonl", "chains": 3})
    assert answer["ok"], answer
    assert (answer["results"][0]["outcome"], answer["results"][0]["run_id"]) == ("started", run_id)
    assert len(h.store.chain_ids(run_id)) == 3
    assert run_id in set(h.store.active_runs())
    while h.invoker.calls:
        h.drive(h.invoker.pop())
    assert sorted(h.result_indices(run_id)) == list(range(23))


def test_start_that_died_after_run_json_is_finished_by_the_sweep_without_a_retry(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No retry ever comes (its event aged out in Lambda's queue): the run is marked active
    # before run.json is written, so the sweep finds it and makes its checkpoints.
    h = Harness(h.s3, h.bucket, settings(bucket=h.bucket, stall_after_ms=0), timeout_ms=1_600)
    with monkeypatch.context() as patched:
        _dies_after_run_json(patched)
        with pytest.raises(RuntimeError):
            h.invoke({"bucket": h.bucket, "key": "tasks/list.jsonl", "chains": 3})
    run_id = next(h.store.run_ids())
    assert run_id in set(h.store.active_runs())
    h.clock.advance(1_000)
    h.invoke({"action": "sweep"})
    assert len(h.store.chain_ids(run_id)) == 3
    h.invoke({"action": "sweep"})
    while h.invoker.calls:
        h.drive(h.invoker.pop())
    assert sorted(h.result_indices(run_id)) == list(range(23))
    assert h.summary(run_id)["status"] == "done"
