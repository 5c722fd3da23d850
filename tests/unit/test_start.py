"""Manual starts and resumes: at a position, never past the checkpoint, never a fork."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import put_tasks
from tests.unit.harness import Harness, settings

URLS = [f"https://example.com/{i}" for i in range(23)]


@pytest.fixture
def h(s3: Any, bucket: str) -> Harness:
    put_tasks(s3, bucket, "tasks/list.jsonl", URLS, jsonl=True)
    return Harness(s3, bucket, settings(stall_after_ms=0), timeout_ms=1_600)


def manual(h: Harness, position: int, **extra: Any) -> dict[str, Any]:
    return h.invoke({"bucket": h.bucket, "key": "tasks/list.jsonl", "position": position, **extra})


def test_start_manual_at_a_position_processes_only_the_rest(h: Harness) -> None:
    answer = manual(h, 15)["results"][0]
    answers = h.drive(h.invoker.pop()) if h.invoker.calls else []
    run_id = answer["run_id"]
    assert answer["start_position"] == 15
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
    h.invoker.pop()  # lost hand-off: the run stalls at position 10
    answer = manual(h, 7, run_id=first["run_id"])["results"][0]
    h.drive(h.invoker.pop())
    assert answer["run_id"] == first["run_id"]
    assert sorted(h.result_indices(first["run_id"])) == list(range(23))
    summary = h.summary(first["run_id"])
    assert (summary["ok"], summary["processed"]) == (23, 23)


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
