"""The leg loop against moto: batches, hand-off, finish, and every quiet exit."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest

from tests.conftest import put_tasks
from tests.unit.harness import Harness, settings
from worker.exceptions import OutOfTimeError
from worker.leg import MAX_CRASHES
from worker.tasks.model import RESULT_FIELDS

URLS = [f"https://example.com/{i}" for i in range(23)]


@pytest.fixture
def h(s3: Any, bucket: str) -> Harness:
    return Harness(s3, bucket, settings())


def start(h: Harness, tasks: list[Any] = URLS, key: str = "tasks/list.json") -> dict[str, Any]:
    etag = put_tasks(h.s3, h.bucket, key, tasks)
    answer = h.begin(h.upload_event(key, etag))
    assert answer["ok"], answer
    return dict(answer["results"][0])


def test_leg_starts_tasks_until_the_margin_then_hands_off(s3: Any, bucket: str) -> None:
    # 1.6 s to live, 1 s margin, tasks of 100 ms: seven start while more than 1 s is left.
    h = Harness(s3, bucket, settings(), timeout_ms=1_600)
    etag = put_tasks(s3, bucket, "tasks/list.json", URLS)
    answer = h.begin(h.upload_event("tasks/list.json", etag))["results"][0]
    assert (answer["exit"], answer["position"], answer["batches"]) == ("handed_off", 7, 2)
    ((function, payload),) = h.invoker.calls
    assert function.endswith(":function:baton")
    assert payload == {
        "v": 2,
        "chain": "0000",
        "run_id": answer["run_id"],
        "bucket": bucket,
        "key": "tasks/list.json",
        "etag": etag,
        "position": 7,
        "leg": 1,
    }


def test_leg_finishes_in_one_leg_when_the_list_fits(h: Harness) -> None:
    answer = start(h)
    assert (answer["exit"], answer["position"], answer["total"]) == ("done", 23, 23)
    assert h.invoker.calls == []


def test_leg_chain_of_several_legs_writes_every_index_exactly_once(s3: Any, bucket: str) -> None:
    h = Harness(s3, bucket, settings(), timeout_ms=1_600)
    etag = put_tasks(s3, bucket, "tasks/list.json", URLS)
    answers = h.drive(h.upload_event("tasks/list.json", etag))
    exits = [a["results"][0]["exit"] for a in answers]
    assert exits == ["handed_off", "handed_off", "handed_off", "done"]
    run_id = answers[0]["results"][0]["run_id"]
    assert sorted(h.result_indices(run_id)) == list(range(len(URLS)))
    summary = h.summary(run_id)
    assert (summary["status"], summary["ok"], summary["failed"], summary["legs"]) == (
        "done",
        23,
        0,
        4,
    )


def test_leg_warm_container_revalidates_task_list_with_a_304(s3: Any, bucket: str) -> None:
    h = Harness(s3, bucket, settings(), timeout_ms=1_600)
    etag = put_tasks(s3, bucket, "tasks/list.json", URLS)
    answers = h.drive(h.upload_event("tasks/list.json", etag))
    hits = [a["results"][0]["cache_hit"] for a in answers]
    assert hits == [True] * 4  # the start itself loaded the list: every leg is a hit
    assert h.container.cache.stats.misses == 1
    assert h.container.cache.stats.hits == 4


def test_leg_superseded_when_task_list_changes_mid_run(s3: Any, bucket: str) -> None:
    h = Harness(s3, bucket, settings(), timeout_ms=1_600)
    etag = put_tasks(s3, bucket, "tasks/list.json", URLS)
    first = h.begin(h.upload_event("tasks/list.json", etag))["results"][0]
    put_tasks(s3, bucket, "tasks/list.json", URLS[:3])
    second = h.invoke(h.invoker.pop())["results"][0]
    assert second["exit"] == "superseded"
    assert h.summary(first["run_id"])["status"] == "superseded"
    assert h.invoker.calls == []


def test_leg_duplicate_delivery_exits_quietly_while_first_owns_the_run(
    s3: Any, bucket: str
) -> None:
    h = Harness(s3, bucket, settings(lease_slack_ms=60_000), timeout_ms=1_600)
    etag = put_tasks(s3, bucket, "tasks/list.json", URLS)
    h.begin(h.upload_event("tasks/list.json", etag))
    payload = h.invoker.pop()
    run_id = payload["run_id"]
    store = h.store
    held = store.load_checkpoint(run_id)
    # The first delivery has claimed leg 1 (its lease is live) when the duplicate arrives.
    store.swap(held, held.checkpoint.evolve(owner="first/1", lease_until_ms=2**62))
    answer = h.invoke(payload)["results"][0]
    assert answer["exit"] == "duplicate"
    assert h.checkpoint(run_id)["position"] == 7
    assert h.invoker.calls == []


def test_leg_duplicate_delivery_loses_the_claim_cas_and_does_no_work(
    s3: Any, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = Harness(s3, bucket, settings(), timeout_ms=1_600)
    etag = put_tasks(s3, bucket, "tasks/list.json", URLS)
    h.begin(h.upload_event("tasks/list.json", etag))
    payload = h.invoker.pop()
    store = h.store
    stale = store.load_checkpoint(payload["run_id"])
    # Another delivery claims between our read and our CAS: our IfMatch must fail.
    store.swap(stale, stale.checkpoint.evolve(owner="other/1", lease_until_ms=2**62))
    monkeypatch.setattr(
        store.__class__, "load_checkpoint", lambda self, run_id, chain="0000": stale
    )
    answer = h.invoke(payload)["results"][0]
    assert answer["exit"] == "lost_cas"
    assert answer["processed"] == 0
    assert sorted(h.result_indices(payload["run_id"])) == list(range(7))


def test_leg_stale_retry_of_an_earlier_leg_exits_quietly(s3: Any, bucket: str) -> None:
    h = Harness(s3, bucket, settings(), timeout_ms=1_600)
    etag = put_tasks(s3, bucket, "tasks/list.json", URLS)
    h.begin(h.upload_event("tasks/list.json", etag))
    payload = h.invoker.pop()
    h.invoke(payload)
    answer = h.invoke(payload)["results"][0]  # leg 1 again, after it handed off to leg 2
    assert answer["exit"] == "stale"
    assert len(h.invoker.calls) == 1


def test_leg_duplicate_upload_notification_starts_one_run(s3: Any, bucket: str) -> None:
    h = Harness(s3, bucket, settings(), timeout_ms=1_600)
    etag = put_tasks(s3, bucket, "tasks/list.json", URLS)
    event = h.upload_event("tasks/list.json", etag)
    first = h.invoke(event)["results"][0]
    again = h.invoke(event)["results"][0]
    assert again["outcome"] == "duplicate"
    assert again["run_id"] == first["run_id"]
    assert len(h.invoker.calls) == 1


def test_leg_cancel_marker_stops_the_chain_at_the_next_batch(s3: Any, bucket: str) -> None:
    h = Harness(s3, bucket, settings(), timeout_ms=1_600)
    etag = put_tasks(s3, bucket, "tasks/list.json", URLS)
    run_id = h.begin(h.upload_event("tasks/list.json", etag))["results"][0]["run_id"]
    h.store.request_cancel(run_id)
    answer = h.invoke(h.invoker.pop())["results"][0]
    assert answer["exit"] == "cancelled"
    assert h.summary(run_id)["status"] == "cancelled"
    assert h.invoker.calls == []


def test_leg_max_legs_ends_a_runaway_chain_as_failed(s3: Any, bucket: str) -> None:
    h = Harness(s3, bucket, settings(max_legs=2), timeout_ms=1_600)
    etag = put_tasks(s3, bucket, "tasks/list.json", URLS)
    answers = h.drive(h.upload_event("tasks/list.json", etag))
    assert [a["results"][0]["exit"] for a in answers] == ["handed_off", "failed"]
    summary = h.summary(answers[0]["results"][0]["run_id"])
    assert summary["status"] == "failed"
    assert "maximum of 2 legs" in summary["reason"]


def test_leg_failed_handoff_leaves_the_run_resumable(s3: Any, bucket: str) -> None:
    h = Harness(s3, bucket, settings(), timeout_ms=1_600)
    etag = put_tasks(s3, bucket, "tasks/list.json", URLS)
    h.invoke(h.upload_event("tasks/list.json", etag))
    h.invoker.fail = True
    answer = h.invoke(h.invoker.pop())["results"][0]
    assert answer["exit"] == "handoff_failed"
    cp = h.checkpoint(answer["run_id"])
    assert (cp["status"], cp["leg"], cp["position"], cp["owner"]) == ("running", 1, 7, None)
    assert answer["run_id"] in set(h.store.active_runs())


def test_leg_task_errors_are_recorded_per_task_not_raised(s3: Any, bucket: str) -> None:
    h = Harness(s3, bucket, settings())
    h.container.processor = _failing_odd
    tasks: list[Any] = ["https://example.com/0", 42, {"url": "https://example.com/2"}]
    etag = put_tasks(s3, bucket, "tasks/list.json", tasks)
    answer = h.begin(h.upload_event("tasks/list.json", etag))["results"][0]
    assert answer["exit"] == "done"
    rows = {r["index"]: r for r in h.store.rows(answer["run_id"])}
    assert rows[0]["error"] is None
    assert "must be a URL string or an object" in rows[1]["error"]
    assert rows[2]["error"] == "processor raised ValueError: odd one out"
    assert h.summary(answer["run_id"])["failed"] == 2


def _failing_odd(task: Any, ctx: Any) -> dict[str, Any]:
    if task.index == 2:
        raise ValueError("odd one out")
    return {}


def _defer_from(index: int, tried: bool) -> Any:
    def process(task: Any, ctx: Any) -> dict[str, Any]:
        if task.index >= index:
            raise OutOfTimeError("no time left in the leg for this request", tried=tried)
        return {}

    return process


def test_leg_stops_at_the_first_deferred_task_and_hands_off(s3: Any, bucket: str) -> None:
    h = Harness(s3, bucket, settings(), timeout_ms=60_000)
    h.container.processor = _defer_from(3, tried=False)
    etag = put_tasks(s3, bucket, "tasks/list.json", URLS)
    answer = h.begin(h.upload_event("tasks/list.json", etag))["results"][0]
    assert (answer["exit"], answer["position"]) == ("handed_off", 3)
    assert [(s, e) for s, e, _ in h.store.result_keys(answer["run_id"])] == [(0, 2)]
    h.container.processor = _failing_odd
    assert h.drive(h.invoker.pop())[-1]["results"][0]["exit"] == "done"
    assert sorted(h.result_indices(answer["run_id"])) == list(range(23))


def test_leg_records_a_task_that_ran_out_of_time_with_a_whole_leg_as_failed(
    s3: Any, bucket: str
) -> None:
    h = Harness(s3, bucket, settings(batch_size=5), timeout_ms=60_000)
    h.container.processor = _defer_from(0, tried=True)
    etag = put_tasks(s3, bucket, "tasks/list.json", URLS[:2])
    answer = h.begin(h.upload_event("tasks/list.json", etag))["results"][0]
    assert answer["exit"] == "done"
    rows = list(h.store.rows(answer["run_id"]))
    assert [r["error"] for r in rows] == ["no time left in the leg for this request"] * 2
    assert all(tuple(row) == RESULT_FIELDS for row in rows)  # the leg's own rows, one schema


def test_leg_chain_over_an_indexed_list_reads_windows_exactly_once(s3: Any, bucket: str) -> None:
    h = Harness(s3, bucket, settings(index_threshold_bytes=0), timeout_ms=1_600)
    etag = put_tasks(s3, bucket, "tasks/list.jsonl", URLS, jsonl=True)
    answers = h.drive(h.upload_event("tasks/list.jsonl", etag))
    assert [a["results"][0]["exit"] for a in answers][-1] == "done"
    assert all(a["results"][0]["cache_hit"] for a in answers)
    assert sorted(h.result_indices(answers[0]["results"][0]["run_id"])) == list(range(23))


def test_leg_indexed_list_replaced_between_windows_supersedes_the_run(s3: Any, bucket: str) -> None:
    h = Harness(s3, bucket, settings(index_threshold_bytes=0), timeout_ms=60_000)
    etag = put_tasks(s3, bucket, "tasks/list.jsonl", URLS, jsonl=True)

    def replace_list_after_first_batch(task: Any, ctx: Any) -> dict[str, Any]:
        if task.index == 4:
            put_tasks(s3, bucket, "tasks/list.jsonl", URLS[:3], jsonl=True)
        return {}

    h.container.processor = replace_list_after_first_batch
    answer = h.begin(h.upload_event("tasks/list.jsonl", etag))["results"][0]
    assert (answer["exit"], answer["position"]) == ("superseded", 5)
    assert h.summary(answer["run_id"])["status"] == "superseded"


class _Crashing:
    """A container cache that fails the way a bug would: not transient, every time."""

    def load(self, *args: Any, **kwargs: Any) -> Any:
        raise RecursionError("maximum recursion depth exceeded")


def test_leg_run_that_crashes_every_leg_fails_with_the_error_instead_of_running_forever(
    s3: Any, bucket: str
) -> None:
    h = Harness(s3, bucket, settings(), timeout_ms=1_600)
    etag = put_tasks(s3, bucket, "tasks/list.json", URLS)
    h.invoke(h.upload_event("tasks/list.json", etag))
    payload = h.invoker.pop()
    h.container.cache = _Crashing()  # type: ignore[assignment]
    crashes = 0
    while h.checkpoint(payload["run_id"])["status"] == "running":
        with pytest.raises(RecursionError):
            h.invoke(payload)  # Lambda's retries and the sweep deliver the same leg again
        crashes += 1
        assert crashes <= MAX_CRASHES
    cp = h.checkpoint(payload["run_id"])
    assert crashes == MAX_CRASHES
    assert cp["status"] == "failed"
    assert f"crashed {MAX_CRASHES} times in a row at position 0: RecursionError" in cp["reason"]
    assert h.summary(payload["run_id"])["status"] == "failed"
    assert payload["run_id"] not in set(h.store.active_runs())


def test_leg_a_slow_task_does_not_hold_back_the_tasks_after_it(s3: Any, bucket: str) -> None:
    # Task 2 finishes only once task 10 has: with a batch barrier the leg would never get
    # there (both slots would wait on task 2's batch); in a rolling window it does.
    tenth_done = threading.Event()

    def process(task: Any, ctx: Any) -> dict[str, Any]:
        if task.index == 2:
            assert tenth_done.wait(timeout=10), "task 10 never ran while task 2 was in flight"
        if task.index == 10:
            tenth_done.set()
        return {}

    h = Harness(s3, bucket, settings(batch_size=20, concurrency=2), timeout_ms=60_000)
    h.container.processor = process
    answer = start(h)
    assert answer["exit"] == "done"
    assert sorted(h.result_indices(answer["run_id"])) == list(range(len(URLS)))


def test_leg_deferral_at_the_end_keeps_the_finished_rows_after_it(s3: Any, bucket: str) -> None:
    # Task 3 runs out of the leg's time after tasks 4 to 6 finished: their rows are
    # committed now, and only task 3 (a hole) is done again by the next leg.
    calls: Counter[int] = Counter()
    later_done = threading.Barrier(2)

    def first_leg(task: Any, ctx: Any) -> dict[str, Any]:
        calls[task.index] += 1
        if task.index == 3:
            later_done.wait(timeout=10)
            raise OutOfTimeError("no time left in the leg for this request", tried=False)
        if task.index == 6:
            later_done.wait(timeout=10)
        return {}

    h = Harness(s3, bucket, settings(batch_size=7, concurrency=2), timeout_ms=60_000)
    h.container.processor = first_leg
    answer = start(h)
    cp = h.checkpoint(answer["run_id"])
    assert (answer["exit"], cp["position"], cp["holes"]) == ("handed_off", 7, [3])
    assert [(s, e) for s, e, _ in h.store.result_keys(answer["run_id"])] == [(0, 6)]

    def later_legs(task: Any, ctx: Any) -> dict[str, Any]:
        calls[task.index] += 1
        return {}

    h.container.processor = later_legs
    assert h.drive(h.invoker.pop())[-1]["results"][0]["exit"] == "done"
    assert sorted(h.result_indices(answer["run_id"])) == list(range(len(URLS)))
    assert calls[3] == 2
    assert all(calls[i] == 1 for i in range(len(URLS)) if i != 3)
    assert [(s, e) for s, e, _ in h.store.hole_keys(answer["run_id"])] == [(3, 3)]


def test_leg_records_the_concurrency_it_reached_in_the_checkpoint(h: Harness) -> None:
    answer = start(h)
    assert h.checkpoint(answer["run_id"])["level"] == h.container.autoscaler.current == 2


def test_leg_autoscaler_grows_while_every_slot_is_busy_and_tasks_wait(s3: Any, bucket: str) -> None:
    # The bench found the level stuck at its start on a 100-300 ms origin: the leg sampled
    # its slots just after taking the finished tasks out, so it never saw them all busy.
    h = Harness(s3, bucket, settings(batch_size=50, concurrency=0), timeout_ms=600_000)
    start_level = h.container.autoscaler.current
    answer = start(h, [f"https://site{i % 100}.example/{i}" for i in range(400)])
    assert answer["exit"] == "done"
    assert h.checkpoint(answer["run_id"])["level"] > 2 * start_level


class _ResultsPutFails:
    """An S3 client whose results PUTs fail: a leg that raises mid-window."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def put_object(self, **params: Any) -> Any:
        if "/results/" in params["Key"]:
            raise RuntimeError("results PUT failed")
        return self._client.put_object(**params)


def test_leg_that_raises_mid_window_frees_the_host_slots_of_its_tasks_in_flight(
    s3: Any, bucket: str
) -> None:
    # Found by the simulator (seed 48): the next leg in this container found the slow
    # host full forever and spun until its deadline.
    release = threading.Event()
    h = Harness(_ResultsPutFails(s3), bucket, settings(concurrency=2, per_host_concurrency=1))
    h.container.budget.commit_interval_ms = 300

    def process(task: Any, ctx: Any) -> dict[str, Any]:
        if task.index == 1:
            release.wait(timeout=10)
        else:
            h.clock.advance(100)
        return {}

    h.container.processor = process
    urls = [f"https://{'slow' if i == 1 else 'fast'}.example/{i}" for i in range(12)]
    etag = put_tasks(s3, bucket, "tasks/list.json", urls)
    h.invoke(h.upload_event("tasks/list.json", etag))
    try:
        with pytest.raises(RuntimeError, match="results PUT failed"):
            h.invoke(h.invoker.pop())
        assert h.container.hosts.can_start("slow.example", h.clock.monotonic())
    finally:
        release.set()
