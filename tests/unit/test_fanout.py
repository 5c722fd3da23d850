"""Fan-out: many chains per run, work stealing, and one completion, against moto."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import put_tasks
from tests.unit.harness import Harness, settings
from worker.checkpoint import Checkpoint
from worker.start import ranges
from worker.store import RunRecord

URLS = [f"https://example.com/{i}" for i in range(40)]


@pytest.fixture
def h(s3: Any, bucket: str) -> Harness:
    put_tasks(s3, bucket, "tasks/list.jsonl", URLS, jsonl=True)
    return Harness(s3, bucket, settings(bucket=bucket, stall_after_ms=10_000), timeout_ms=60_000)


def start(h: Harness, chains: int, **extra: Any) -> dict[str, Any]:
    answer = h.invoke({"bucket": h.bucket, "key": "tasks/list.jsonl", "chains": chains, **extra})
    assert answer["ok"], answer
    return dict(answer["results"][0])


def test_fanout_ranges_are_contiguous_and_even() -> None:
    assert ranges(0, 10, 3) == [(0, 4), (4, 7), (7, 10)]
    assert ranges(5, 7, 4) == [(5, 6), (6, 7), (7, 7), (7, 7)]


def test_fanout_start_makes_one_checkpoint_per_chain_and_invokes_each_leg_0(h: Harness) -> None:
    answer = start(h, 4)
    assert (answer["outcome"], answer["chains"]) == ("started", 4)
    legs = [payload for _, payload in h.invoker.calls]
    assert sorted((p["chain"], p["position"], p["leg"]) for p in legs) == [
        ("0000", 0, 0),
        ("0001", 10, 0),
        ("0002", 20, 0),
        ("0003", 30, 0),
    ]
    cp = h.store.load_checkpoint(answer["run_id"], "0002").checkpoint
    assert (cp.start, cp.position, cp.range_end, cp.total) == (20, 20, 30, 40)


def test_fanout_every_index_exactly_once_and_one_summary_manifest_and_notice(h: Harness) -> None:
    answer = start(h, 4)
    h.drive(h.invoker.pop())
    run_id = answer["run_id"]
    assert sorted(h.result_indices(run_id)) == list(range(40))
    summary = h.summary(run_id)
    assert (summary["status"], summary["ok"], summary["chains"]) == ("done", 40, 4)
    manifest = h.store.load_manifest(run_id)
    assert manifest is not None
    assert manifest["results"][0]["first"] == 0
    assert manifest["rows"] == 40
    [notice] = h.notifier.sent
    assert (notice["run_id"], notice["status"], notice["ok"]) == (run_id, "done", 40)
    assert notice["manifest_key"].endswith(f"{run_id}/manifest.json")
    assert "https://" not in json.dumps(notice)  # keys, never presigned URLs
    assert h.store.load_notice(run_id) is not None
    assert run_id not in set(h.store.active_runs())


def test_fanout_no_notice_until_the_last_chain_has_finished(h: Harness) -> None:
    answer = start(h, 2)
    first, second = (payload for _, payload in h.invoker.calls)
    h.invoker.calls.clear()
    h.invoke(first)  # chain 0000 finishes its range; 0001 was never delivered
    assert h.notifier.sent == []
    assert h.store.load_summary(answer["run_id"]) is None
    h.drive(second)
    assert len(h.notifier.sent) == 1


def test_fanout_a_finished_chain_steals_half_of_the_largest_unplanned_range(
    h: Harness,
) -> None:
    answer = start(h, 2)
    first, second = (payload for _, payload in h.invoker.calls)
    h.invoker.calls.clear()
    h.invoke(first)  # 0000 does 0-19, then takes half of 0001's unplanned 20-39, again...
    run_id = answer["run_id"]
    victim = h.store.load_checkpoint(run_id, "0001").checkpoint
    first_split = victim.splits[0]
    assert first_split == {"chain": "0001.1", "start": 30, "end": 40}
    assert victim.range_end <= 21  # ...until too little is left to be worth a steal
    stolen = h.store.load_checkpoint(run_id, "0001.1").checkpoint
    assert (stolen.start, stolen.position, stolen.status) == (30, 40, "done")
    h.drive(second)
    assert sorted(h.result_indices(run_id)) == list(range(40))
    assert h.summary(run_id)["ranges"] == 2 + len(victim.splits)


def test_fanout_the_victims_owner_sees_a_shorter_range_not_a_lost_cas(h: Harness) -> None:
    answer = start(h, 2)
    run_id = answer["run_id"]
    h.invoker.calls.clear()
    # 0001's owner claims, then a thief splits its unplanned tail before its next CAS.
    victim_leg = {
        "v": 2,
        "run_id": run_id,
        "bucket": h.bucket,
        "key": "tasks/list.jsonl",
        "etag": h.store.load_run(run_id).etag,
        "position": 20,
        "leg": 0,
        "chain": "0001",
    }
    calls = 0

    def steal_once(task: Any, ctx: Any) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls == 1:
            held = h.store.load_checkpoint(run_id, "0001")
            cp = held.checkpoint
            h.store.swap(held, cp.split("0001.1", max(cp.position, cp.batch_end) + 1))
        return {}

    h.container.processor = steal_once
    answer = h.invoke(victim_leg)["results"][0]
    assert answer["exit"] == "done"
    cp = h.store.load_checkpoint(run_id, "0001").checkpoint
    assert cp.status == "done"
    assert cp.range_end < 40
    assert cp.position == cp.range_end


def test_fanout_a_thief_that_died_after_its_split_loses_nothing(h: Harness) -> None:
    answer = start(h, 2)
    run_id = answer["run_id"]
    first, second = (payload for _, payload in h.invoker.calls)
    h.invoker.calls.clear()
    held = h.store.load_checkpoint(run_id, "0001")
    h.store.swap(held, held.checkpoint.split("0001.1", 35))  # ...and the thief died here
    h.drive(first)
    h.drive(second)  # 0001 ends at 35, creates 0001.1 for its dead thief, invokes it
    assert h.store.has_checkpoint(run_id, "0001.1")
    assert sorted(h.result_indices(run_id)) == list(range(40))
    assert len(h.notifier.sent) == 1


def test_fanout_cancel_ends_every_chain_and_the_notice_says_cancelled(h: Harness) -> None:
    answer = start(h, 3)
    h.store.request_cancel(answer["run_id"])
    h.drive(h.invoker.pop())
    assert h.summary(answer["run_id"])["status"] == "cancelled"
    assert [n["status"] for n in h.notifier.sent] == ["cancelled"]


def test_fanout_chains_above_the_cap_are_refused(s3: Any, bucket: str) -> None:
    put_tasks(s3, bucket, "tasks/list.jsonl", URLS, jsonl=True)
    h = Harness(s3, bucket, settings(max_chains=8))
    answer = h.invoke({"bucket": bucket, "key": "tasks/list.jsonl", "chains": 9})
    assert answer["ok"] is False
    assert "more than BATON_MAX_CHAINS (8)" in answer["error"]


def test_fanout_the_uploads_metadata_names_the_chains(h: Harness) -> None:
    body = "".join(json.dumps(u) + "\n" for u in URLS).encode()
    etag = h.s3.put_object(
        Bucket=h.bucket, Key="tasks/meta.jsonl", Body=body, Metadata={"baton-chains": "5"}
    )["ETag"]
    answer = h.invoke(h.upload_event("tasks/meta.jsonl", etag))["results"][0]
    assert answer["chains"] == 5


def test_fanout_more_chains_than_tasks_gives_each_chain_one(s3: Any, bucket: str) -> None:
    put_tasks(s3, bucket, "tasks/list.jsonl", URLS[:3], jsonl=True)
    h = Harness(s3, bucket, settings())
    answer = h.invoke({"bucket": bucket, "key": "tasks/list.jsonl", "chains": 50})
    assert answer["results"][0]["chains"] == 3


def test_fanout_a_failed_notice_is_sent_again_by_the_sweep(h: Harness) -> None:
    answer = start(h, 2)
    h.notifier.fail = True
    h.drive(h.invoker.pop())
    run_id = answer["run_id"]
    assert h.summary(run_id)["status"] == "done"
    assert h.store.load_notice(run_id) is None
    assert run_id in set(h.store.active_runs())
    h.notifier.fail = False
    h.clock.advance(10_000)
    h.invoke({"action": "sweep"})
    assert [n["run_id"] for n in h.notifier.sent] == [run_id]
    assert run_id not in set(h.store.active_runs())


def test_fanout_the_sweep_leaves_a_notice_alone_while_its_leg_may_still_send_it(
    h: Harness,
) -> None:
    answer = start(h, 2)
    h.notifier.fail = True
    h.drive(h.invoker.pop())
    h.notifier.fail = False
    h.clock.advance(9_000)
    h.invoke({"action": "sweep"})
    assert h.notifier.sent == []
    assert h.store.load_notice(answer["run_id"]) is None


def test_fanout_the_sweep_resumes_a_chain_whose_leg_was_lost(h: Harness) -> None:
    answer = start(h, 2)
    run_id = answer["run_id"]
    first, _lost = (payload for _, payload in h.invoker.calls)
    h.invoker.calls.clear()
    h.drive(first)
    h.clock.advance(20_000)
    swept = h.invoke({"action": "sweep"})["results"][0]
    assert any(r.startswith(run_id) for r in swept["resumed"])
    h.drive(h.invoker.pop())
    assert sorted(h.result_indices(run_id)) == list(range(40))
    assert len(h.notifier.sent) == 1


def test_fanout_a_version_1_run_in_flight_finishes_under_the_new_code(h: Harness) -> None:
    # A run created before the chain layout: one checkpoint at runs/{id}/checkpoint.json,
    # and a v1 leg payload (no chain) delivered after the deploy.
    etag = h.s3.head_object(Bucket=h.bucket, Key="tasks/list.jsonl")["ETag"]
    record = RunRecord("old-0123456789ab", h.bucket, "tasks/list.jsonl", etag, 40, 0, 0, "s3")
    h.s3.put_object(
        Bucket=h.bucket, Key="runs/old-0123456789ab/run.json", Body=json.dumps(record.__dict__)
    )
    cp = Checkpoint(run_id=record.run_id, total=40, position=10, ok=10)
    h.s3.put_object(
        Bucket=h.bucket,
        Key="runs/old-0123456789ab/checkpoint.json",
        Body=json.dumps(cp.__dict__, default=str),
    )
    rows = "".join(json.dumps({"index": i, "error": None}) + "\n" for i in range(10))
    h.s3.put_object(
        Bucket=h.bucket, Key="runs/old-0123456789ab/results/0000000000-0000000009.jsonl", Body=rows
    )
    leg = {
        "v": 1,
        "run_id": record.run_id,
        "bucket": h.bucket,
        "key": "tasks/list.jsonl",
        "etag": etag,
        "position": 10,
        "leg": 0,
    }
    h.drive(leg)
    assert sorted(h.result_indices(record.run_id)) == list(range(40))
    assert h.summary(record.run_id)["status"] == "done"
    assert [n["run_id"] for n in h.notifier.sent] == [record.run_id]


def test_fanout_adopting_a_dead_legs_results_stops_at_the_chains_range(h: Harness) -> None:
    answer = start(h, 2)
    run_id = answer["run_id"]
    first, second = (payload for _, payload in h.invoker.calls)
    h.invoker.calls.clear()
    # Chain 0000's leg planned its whole range, wrote it, and died before its CAS...
    held = h.store.load_checkpoint(run_id, "0000")
    dead = held.checkpoint.evolve(owner="dead/1", lease_until_ms=h.clock.now_ms() - 1, batch_end=20)
    h.store.swap(held, dead)
    rows = [{"index": i, "url": URLS[i], "error": None} for i in range(20)]
    h.store.put_results(run_id, 0, 19, rows)
    h.drive(second)  # ...while chain 0001 wrote 20-39, right after it
    h.drive(first)  # the retry adopts 0-19, and not 0001's 20-39
    cp = h.store.load_checkpoint(run_id, "0000").checkpoint
    assert (cp.position, cp.ok) == (20, 20)
    summary = h.summary(run_id)
    assert (summary["processed"], summary["ok"]) == (40, 40)
