"""Fan-out: many chains per run, work stealing, and one completion, against moto."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.conftest import put_tasks
from tests.fakes import Killed
from tests.unit.harness import Harness, settings
from worker.checkpoint import Checkpoint
from worker.start import ranges
from worker.store import DONE_DIR, RunRecord, RunStore

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


def test_fanout_a_leg_claiming_at_its_range_end_adopts_nothing_of_the_next_chain(
    h: Harness,
) -> None:
    # Chain 0000 worked its whole range [0, 20), but its leg died before the final CAS (or
    # handed off there): the next leg claims at position 20, its range's end. Chain 0001's
    # first results object starts at 20: it is not an orphan of chain 0000 (the simulator's
    # seed 4 found the leg adopting the next chain's objects and counting them twice).
    answer = start(h, 2)
    run_id = answer["run_id"]
    first, second = (payload for _, payload in h.invoker.calls)
    h.invoker.calls.clear()
    assert (first["chain"], second["chain"]) == ("0000", "0001")
    h.store.put_results(run_id, 0, 19, [{"index": i, "error": None} for i in range(20)])
    current = h.store.load_checkpoint(run_id, "0000")
    h.store.swap(current, current.checkpoint.evolve(position=20, ok=20, leg=1, batch_end=20))
    h.drive(second)
    assert h.store.load_summary(run_id) is None
    h.drive({**first, "position": 20, "leg": 1})
    cp = h.checkpoint(run_id, "0000")
    assert (cp["status"], cp["position"], cp["ok"]) == ("done", 20, 20)
    assert sorted(h.result_indices(run_id)) == list(range(40))
    assert h.summary(run_id)["ok"] == 40


def test_fanout_a_steal_never_takes_a_dead_legs_careful_range(h: Harness) -> None:
    # Chain 0001's leg died somewhere in its plan [20, 38): the next owner counted a strike and
    # works that range one task at a time, its plan one task long. A thief must not split the
    # careful range off into a chain with no strikes, or the killer task in it kills again and
    # again (the simulator found a killer dying 4 times in chains 0003, 0003.1 and 0003.1.1).
    answer = start(h, 2)
    run_id = answer["run_id"]
    first, _ = (payload for _, payload in h.invoker.calls)
    h.invoker.calls.clear()
    current = h.store.load_checkpoint(run_id, "0001")
    struck = current.checkpoint.evolve(strikes=1, careful_until=38, batch_end=21, leg=1)
    h.store.swap(current, struck)
    assert struck.stealable == 2
    h.drive(first)
    splits = h.checkpoint(run_id, "0001")["splits"]
    assert splits
    assert all(split["start"] >= 38 for split in splits)


class _DiesAtTheDoneMarker:
    """S3 whose first done-marker PUT kills the leg: it dies just after its chain's final CAS."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.killed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def put_object(self, **params: Any) -> Any:
        if f"/{DONE_DIR}" in params["Key"] and not self.killed:
            self.killed = True
            raise Killed("the leg died after its chain's final CAS")
        return self._client.put_object(**params)


def test_fanout_lambdas_retry_of_a_leg_that_died_after_its_final_cas_completes_the_run(
    s3: Any, bucket: str
) -> None:
    # Found by the fan-out bench: the retry exited "already finished" and the run waited
    # for the sweep (a minute on AWS) for its summary and notice.
    put_tasks(s3, bucket, "tasks/list.jsonl", URLS, jsonl=True)
    dies = _DiesAtTheDoneMarker(s3)
    h = Harness(dies, bucket, settings(bucket=bucket), timeout_ms=60_000)
    answer = start(h, 1)
    leg = h.invoker.pop()
    with pytest.raises(Killed):
        h.invoke(leg)
    assert dies.killed
    assert h.store.load_summary(answer["run_id"]) is None

    retried = h.invoke(leg)["results"][0]

    assert retried["exit"] == "already_finished"
    assert h.summary(answer["run_id"])["status"] == "done"
    assert [notice["run_id"] for notice in h.notifier.sent] == [answer["run_id"]]


def test_fanout_a_done_marker_on_a_running_chain_is_cleared_and_the_chain_resumed(
    h: Harness,
) -> None:
    # A marker written from a read made before a resume reopened the chain (the simulator,
    # seed 5280) hid the chain from the sweep: the run stalled with no summary, forever.
    answer = start(h, 2)
    run_id = answer["run_id"]
    first, _lost = (payload for _, payload in h.invoker.calls)
    h.invoker.calls.clear()
    h.drive(first)
    h.store.mark_chain_done(run_id, "0001")  # stale: 0001 never ran
    h.clock.advance(20_000)
    h.invoke({"action": "sweep"})
    assert "0001" not in h.store.done_chains(run_id)
    swept = h.invoke({"action": "sweep"})["results"][0]
    assert any(r.startswith(run_id) for r in swept["resumed"])
    h.drive(h.invoker.pop())
    assert sorted(h.result_indices(run_id)) == list(range(40))
    assert h.summary(run_id)["status"] == "done"


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


class StealUnderTheClaim:
    """The first claim of `chain` lands but its answer is lost, and a thief's split lands on
    top before the claimer reads the checkpoint back: botocore's retry then fails its
    IfMatch, and the object no longer holds the claim's bytes. (The thief dies after its
    split: the victim's owner makes the range and invokes it.)"""

    def __init__(self, client: Any, bucket: str, chain: str) -> None:
        self._client = client
        self._store = RunStore.over(client, bucket)
        self._chain = chain
        self.stolen: Checkpoint | None = None

    def put_object(self, **params: Any) -> Any:
        answer = self._client.put_object(**params)
        if (
            self.stolen is None
            and "IfMatch" in params
            and params["Key"].endswith(f"/chains/{self._chain}/checkpoint.json")
        ):
            victim = self._store.load_checkpoint(json.loads(params["Body"])["run_id"], self._chain)
            cp = victim.checkpoint
            at = cp.steal_line + cp.stealable // 2
            self.stolen = self._store.swap(victim, cp.split(f"{cp.chain}.1", at)).checkpoint
            raise ClientError(
                {"Error": {"Code": "PreconditionFailed"}, "ResponseMetadata": {}}, "PutObject"
            )
        return answer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_fanout_a_claim_whose_answer_was_lost_under_a_steal_holds_the_chain(
    s3: Any, bucket: str
) -> None:
    """The claim landed, so the chain is this leg's: reading it back as lost left the chain
    owned by a leg that had returned, and the next owner counted a strike for it."""
    put_tasks(s3, bucket, "tasks/list.jsonl", URLS, jsonl=True)
    lossy = StealUnderTheClaim(s3, bucket, "0000")
    h = Harness(lossy, bucket, settings(bucket=bucket, stall_after_ms=10_000), timeout_ms=60_000)
    run_id = start(h, 1)["run_id"]
    h.drive(h.invoker.pop())
    assert lossy.stolen is not None
    assert h.store.load_checkpoint(run_id, "0000").checkpoint.strikes == 0
    assert sorted(h.result_indices(run_id)) == list(range(40))
    assert len(h.notifier.sent) == 1


def test_fanout_a_claim_after_a_give_back_keeps_the_plan_no_steal_splits_below() -> None:
    """Seed 21151: a leg wrote results 10-13 (its plan) and gave the chain back when its CAS
    failed; the next claim planned only to 13, a thief split at 13, and index 13 was in the
    orphan the chain then adopted and in the thief's range too."""
    given_back = Checkpoint(run_id="r", total=40, position=10, end=20, batch_end=14)
    claimed = given_back.claim(
        leg=0, owner="next", at_ms=1, lease_until_ms=2, plan=lambda position, _: position + 3
    )
    assert claimed.batch_end == 14
    assert claimed.steal_line == 14


def test_fanout_a_claim_plans_past_the_given_back_plan_when_it_can() -> None:
    given_back = Checkpoint(run_id="r", total=40, position=10, end=20, batch_end=14)
    claimed = given_back.claim(
        leg=0, owner="next", at_ms=1, lease_until_ms=2, plan=lambda position, _: position + 8
    )
    assert claimed.batch_end == 18


class StealBeforeTheGiveBack:
    """Just before a leg's give-back (a write with no owner and a crash counted) lands, a
    thief splits the chain: the give-back's IfMatch then fails on the thief's write."""

    def __init__(self, client: Any, bucket: str) -> None:
        self._client = client
        self._store = RunStore.over(client, bucket)
        self.stolen = False

    def put_object(self, **params: Any) -> Any:
        if not self.stolen and params["Key"].endswith("/chains/0000/checkpoint.json"):
            written = json.loads(params["Body"])
            if written["owner"] is None and written["crashes"] == 1:
                victim = self._store.load_checkpoint(written["run_id"], "0000")
                cp = victim.checkpoint
                self._store.swap(victim, cp.split("0000.1", cp.steal_line + cp.stealable // 2))
                self.stolen = True
        return self._client.put_object(**params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_fanout_a_give_back_raced_by_a_steal_still_gives_the_chain_back(
    s3: Any, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kept by a leg that has gone, the chain would wait out its lease and the next owner
    would count a strike for a leg that never died."""
    put_tasks(s3, bucket, "tasks/list.jsonl", URLS, jsonl=True)
    racing = StealBeforeTheGiveBack(s3, bucket)
    h = Harness(racing, bucket, settings(bucket=bucket, stall_after_ms=10_000), timeout_ms=60_000)
    run_id = start(h, 1)["run_id"]
    real = RunStore.put_results
    crashed: list[int] = []

    def crashing(self: RunStore, *args: Any) -> Any:
        if not crashed:
            crashed.append(1)
            raise RuntimeError("a bug in the leg")
        return real(self, *args)

    monkeypatch.setattr(RunStore, "put_results", crashing)
    with pytest.raises(RuntimeError, match="a bug in the leg"):
        h.invoke(h.invoker.pop())
    assert racing.stolen
    cp = h.store.load_checkpoint(run_id, "0000").checkpoint
    assert (cp.owner, cp.crashes) == (None, 1)
