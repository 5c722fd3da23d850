"""A leg that dies: its lease runs out, the next delivery takes over, nothing is lost."""

from __future__ import annotations

from typing import Any

from tests.conftest import put_tasks
from tests.fakes import Killed, ticking_processor
from tests.unit.harness import Harness, settings

URLS = [f"https://example.com/{i}" for i in range(12)]


def _kill_mid_leg(h: Harness, payload: dict[str, Any], write_orphan: bool) -> None:
    """Leave the state a SIGKILLed leg leaves: claimed, maybe one batch written, no CAS."""
    held = h.store.load_checkpoint(payload["run_id"])
    cp = held.checkpoint
    h.store.swap(
        held,
        cp.evolve(owner="dead/1", lease_until_ms=h.clock.now_ms() - 1, batch_end=cp.position + 5),
    )
    if write_orphan:
        end = min(len(URLS), cp.position + 5)
        rows = [{"index": i, "url": URLS[i], "error": None} for i in range(cp.position, end)]
        h.store.put_results(cp.run_id, cp.position, end - 1, rows)


def test_takeover_after_a_killed_leg_adopts_its_orphan_batch(s3: Any, bucket: str) -> None:
    h = Harness(s3, bucket, settings(), timeout_ms=1_600)
    etag = put_tasks(s3, bucket, "tasks/list.json", URLS)
    h.begin(h.upload_event("tasks/list.json", etag))
    payload = h.invoker.pop()
    _kill_mid_leg(h, payload, write_orphan=True)
    answers = h.drive(payload)  # Lambda's retry of the killed leg
    assert answers[-1]["results"][0]["exit"] == "done"
    assert sorted(h.result_indices(payload["run_id"])) == list(range(12))


def test_takeover_after_a_killed_leg_counts_a_strike_and_goes_one_task_at_a_time(
    s3: Any, bucket: str
) -> None:
    h = Harness(s3, bucket, settings(), timeout_ms=1_600)
    etag = put_tasks(s3, bucket, "tasks/list.json", URLS)
    h.begin(h.upload_event("tasks/list.json", etag))
    payload = h.invoker.pop()
    _kill_mid_leg(h, payload, write_orphan=False)
    h.invoke(payload)
    keys = [(start, end) for start, end, _ in h.store.result_keys(payload["run_id"])]
    # After the strike the suspect batch 10-14 (only 10, 11 exist) runs task by task.
    assert keys[-2:] == [(10, 10), (11, 11)]
    assert h.checkpoint(payload["run_id"])["status"] == "done"


def test_task_that_kills_its_leg_repeatedly_is_recorded_failed_and_skipped(
    s3: Any, bucket: str
) -> None:
    h = Harness(s3, bucket, settings(max_task_attempts=3), timeout_ms=1_600)
    etag = put_tasks(s3, bucket, "tasks/list.json", URLS)
    h.begin(h.upload_event("tasks/list.json", etag))
    payload = h.invoker.pop()
    h.container.processor = ticking_processor(h.clock, 100, kill_on=lambda t: t.index == 10)
    deaths = 0
    while True:  # each death's lease runs out, and Lambda's retry delivers the leg again
        try:
            answers = h.drive(payload)
        except Killed:
            deaths += 1
            held = h.store.load_checkpoint(payload["run_id"])
            h.store.swap(held, held.checkpoint.evolve(lease_until_ms=h.clock.now_ms() - 1))
            continue
        break
    # Three deaths at the killer, plus one where the leg's suspect range began before it.
    assert 3 <= deaths <= 4
    assert answers[-1]["results"][0]["exit"] == "done"
    rows = {r["index"]: r for r in h.store.rows(payload["run_id"])}
    assert sorted(rows) == list(range(12))
    assert rows[10]["error"] == "task killed its leg 3 times; skipped"
    assert rows[11]["error"] is None
    summary = h.summary(payload["run_id"])
    assert (summary["ok"], summary["failed"]) == (11, 1)


def test_leg_that_raises_releases_the_run_for_lambdas_retry(s3: Any, bucket: str) -> None:
    h = Harness(s3, bucket, settings(), timeout_ms=1_600)
    etag = put_tasks(s3, bucket, "tasks/list.json", URLS)
    h.begin(h.upload_event("tasks/list.json", etag))
    payload = h.invoker.pop()
    original = h.store.put_results

    def broken_put(*args: Any, **kwargs: Any) -> str:
        raise ConnectionError("S3 went away")

    h.store.__class__.put_results = broken_put  # type: ignore[method-assign]
    try:
        try:
            h.invoke(payload)
        except ConnectionError:
            pass
        else:
            raise AssertionError("the leg should have raised for Lambda to retry it")
    finally:
        h.store.__class__.put_results = original.__func__  # type: ignore[attr-defined]
    assert h.checkpoint(payload["run_id"])["owner"] is None
    h.container.processor = ticking_processor(h.clock, 100)
    answers = h.drive(payload)
    assert answers[-1]["results"][0]["exit"] == "done"
    assert sorted(h.result_indices(payload["run_id"])) == list(range(12))


def test_careful_range_is_exactly_the_batch_the_dead_owner_planned(s3: Any, bucket: str) -> None:
    h = Harness(s3, bucket, settings(), timeout_ms=60_000)
    etag = put_tasks(s3, bucket, "tasks/list.json", [f"https://e.example/{i}" for i in range(30)])
    h.timeout_ms = 1_600
    h.begin(h.upload_event("tasks/list.json", etag))
    payload = h.invoker.pop()
    held = h.store.load_checkpoint(payload["run_id"])
    # Unowned, the run has no plan past its position (all of it is stealable); its next
    # owner plans before it starts a task, and here dies with three tasks planned.
    assert held.checkpoint.batch_end == held.checkpoint.position
    cp = held.checkpoint
    h.store.swap(
        held,
        cp.evolve(owner="dead/1", lease_until_ms=h.clock.now_ms() - 1, batch_end=cp.position + 3),
    )
    h.timeout_ms = 60_000
    h.drive(payload)
    keys = [(s, e) for s, e, _ in h.store.result_keys(payload["run_id"]) if s >= cp.position]
    p = cp.position
    # Then the window again, committing plans of five (BATON_BATCH_SIZE, no adaptive plan).
    assert keys[:4] == [(p, p), (p + 1, p + 1), (p + 2, p + 2), (p + 3, p + 7)]


def test_takeover_adopts_an_orphan_behind_a_one_task_object_just_below_it(
    s3: Any, bucket: str
) -> None:
    # The object of task p-1 alone ("…{p-1}-{p-1}.jsonl") sorts after StartAfter "…{p-1}":
    # the orphan at p must still be found behind it, not redone one task at a time.
    h = Harness(s3, bucket, settings(), timeout_ms=60_000)
    etag = put_tasks(s3, bucket, "tasks/list.json", URLS)
    h.invoke(h.upload_event("tasks/list.json", etag))
    payload = h.invoker.pop()
    held = h.store.load_checkpoint(payload["run_id"])
    row = {"index": 0, "url": URLS[0], "error": None}
    h.store.put_results(payload["run_id"], 0, 0, [row])
    held = h.store.swap(held, held.checkpoint.evolve(position=1, ok=1))
    _kill_mid_leg(h, payload, write_orphan=True)  # the dead leg wrote tasks 1 to 5
    calls: list[int] = []

    def count(task: Any, ctx: Any) -> dict[str, Any]:
        calls.append(task.index)
        return {}

    h.container.processor = count
    h.drive(payload)
    assert sorted(h.result_indices(payload["run_id"])) == list(range(12))
    assert sorted(calls) == list(range(6, 12))
